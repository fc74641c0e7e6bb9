"""Lambda entry point for the DynamoDB Streams event source mappings of the lake's tables
(ReportBatchItemFailures enabled, bisect on error).

In: DynamoDB Streams records (NEW_AND_OLD_IMAGES) of the facts, metrics and inventory tables.
Out: ``{"batchItemFailures": [{"itemIdentifier": <sequence number>}]}``: empty when every change
is in ``s3://<lake>/changes/`` (or quarantined with its reason); otherwise the first record of
the hour whose objects could not be written, where Lambda resumes. Objects are keyed by the
stream and sequence range (``storepulse.capture.sink``): a retry overwrites, never duplicates.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger

from storepulse.aws import DEFAULT_CONFIG
from storepulse.capture.changes import decode_record
from storepulse.capture.sink import ChangeSink
from storepulse.config import ConfigError, settings

logger = Logger(service="change-capture")


@cache
def sink() -> ChangeSink:
    """Built once per container: the S3 client is reused. The stack sets the bucket on the
    function (``STOREPULSE_LAKE_BUCKET``, read by ``storepulse.config``)."""
    bucket = settings().lake_bucket
    if not bucket:
        raise ConfigError("STOREPULSE_LAKE_BUCKET is not set (the real-time stack sets it)")
    return ChangeSink(boto3.client("s3", config=DEFAULT_CONFIG), bucket)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    report = sink().write(event.get("Records") or [], decode_record)
    logger.info(
        "batch done",
        extra={
            "records": report.records,
            "rows": report.rows,
            "files": len(report.files),
            "quarantined": report.quarantined,
            "failed": report.failed_sequence_numbers,
        },
    )
    return {
        "batchItemFailures": [{"itemIdentifier": seq} for seq in report.failed_sequence_numbers]
    }
