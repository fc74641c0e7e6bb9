"""boto3 clients for code that runs outside Airflow hooks (Lambda handler, CLIs, local runtime).

The endpoint is botocore's own business: ``AWS_ENDPOINT_URL`` (set by ``make up`` for the embedded
AWS, unset on real AWS) redirects every client, so this module never forks on the environment.
Airflow tasks use the Amazon provider's hooks and the ``aws_default`` connection instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from storepulse.config import settings

# Standard retry mode with a few attempts: throttling and 5xx are retried with backoff.
DEFAULT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 5})
# For tests: unimplemented embedded-AWS calls answer HTTP 500, which must fail at once.
# (`max_attempts` would count retries only: 1 means two requests.)
FAIL_FAST_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1})


def client(service: str, *, config: Config | None = None, **kwargs: Any) -> Any:
    """A boto3 client for ``service`` in the configured region."""
    return boto3.client(
        service, region_name=settings().region, config=config or DEFAULT_CONFIG, **kwargs
    )


def is_condition_failure(exc: ClientError) -> bool:
    """Whether a DynamoDB write was refused by its ``ConditionExpression`` (a replay, an older
    value, a cooldown still running): the expected outcome of a conditional write, not an error."""
    return exc.response["Error"]["Code"] == "ConditionalCheckFailedException"


def query_items(table: Any, **query: Any) -> Iterator[dict[str, Any]]:
    """Every item a DynamoDB ``Table`` resource's ``query`` matches, page after page. A loop,
    not a paginator: boto3's paginators belong to clients, whose items come back as DynamoDB
    JSON; the Table resource gives them as Python values (Decimal) directly."""
    return _every_page(table.query, query)


def scan_items(table: Any, **scan: Any) -> Iterator[dict[str, Any]]:
    """Every item of a DynamoDB ``Table`` resource's ``scan``, page after page."""
    return _every_page(table.scan, scan)


def _every_page(call: Any, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    while True:
        page = call(**request)
        yield from page["Items"]
        if "LastEvaluatedKey" not in page:
            return
        request = {**request, "ExclusiveStartKey": page["LastEvaluatedKey"]}
