"""What every benchmark shares: an embedded AWS of its own, request counting, a results table."""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.client

WRITE_OPERATIONS = frozenset(
    {"UpdateItem", "PutItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
)


@contextmanager
def embedded_aws() -> Iterator[Any]:
    """A fresh moto server on a free loopback port; boto3 clients in this process use it."""
    from storepulse.config import settings
    from storepulse.local.embedded_aws import EmbeddedAws

    server = EmbeddedAws(port=0).start()
    server.reset()  # moto's state is per process, not per server
    saved = {
        k: os.environ.get(k)
        for k in (
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
        )
    }
    os.environ.update(
        AWS_ENDPOINT_URL=server.url,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION=saved["AWS_DEFAULT_REGION"] or "us-east-1",
    )
    settings.cache_clear()
    boto3.setup_default_session()  # the default session caches the endpoint it first saw
    try:
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        settings.cache_clear()


@dataclass
class RequestCounter:
    """Counts AWS API calls made by this process (all clients), by operation."""

    calls: collections.Counter[str] = field(default_factory=collections.Counter)

    @contextmanager
    def counting(self) -> Iterator[RequestCounter]:
        original = botocore.client.BaseClient._make_api_call
        counter = self

        def counted(client: Any, operation: str, params: dict[str, Any]) -> Any:
            counter.calls[operation] += 1
            return original(client, operation, params)

        botocore.client.BaseClient._make_api_call = counted  # type: ignore[method-assign]
        try:
            yield self
        finally:
            botocore.client.BaseClient._make_api_call = original  # type: ignore[method-assign]

    @property
    def dynamodb_writes(self) -> int:
        return sum(n for op, n in self.calls.items() if op in WRITE_OPERATIONS)


def timed(work: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=True)]
    for row in (headers, *rows):
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths, strict=True)))
