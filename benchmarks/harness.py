"""What every benchmark shares: an embedded AWS of its own, request counting, a results table,
the ``--small`` sizes and a fixed "now"."""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.client

WRITE_OPERATIONS = frozenset(
    {"UpdateItem", "PutItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
)

# The benchmarks' "now": a Saturday afternoon (16:00 in Paris, where the simulated stores are),
# so no result depends on the date or the hour a benchmark runs at, nor crosses a local midnight.
NOW = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, small: Mapping[str, Any]
) -> argparse.Namespace:
    """Adds ``--small``: the same run with the ``small`` sizes, in seconds (``make test`` runs
    it); options given on the command line still win over them."""
    parser.add_argument(
        "--small", action="store_true", help="small sizes: the same code path in seconds"
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    if parser.parse_known_args(argv)[0].small:
        parser.set_defaults(**small)
    return parser.parse_args(argv)


@contextmanager
def embedded_aws(state_dir: Path | None = None) -> Iterator[Any]:
    """A fresh moto server on a free loopback port; boto3 clients in this process use it.
    With ``state_dir``, it keeps its state there (snapshots)."""
    from storepulse.config import settings
    from storepulse_local.embedded_aws import EmbeddedAws
    from storepulse_local.iam import ADMIN

    server = EmbeddedAws(port=0, state_dir=state_dir).start()
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
        **ADMIN.environment(),
        AWS_DEFAULT_REGION=saved["AWS_DEFAULT_REGION"] or "us-east-1",
    )
    settings.cache_clear()
    boto3.setup_default_session()  # the default session keeps the credentials it first found
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
        boto3.setup_default_session()  # and whatever runs next (a test) must not keep ours


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


def latency_summary(values: list[float]) -> dict[str, float]:
    """Sample count, p50 and p95 in milliseconds of latencies in seconds."""
    return {
        "n": len(values),
        "p50_ms": percentile(values, 0.5) * 1000,
        "p95_ms": percentile(values, 0.95) * 1000,
    }


def latency_cells(summary: Mapping[str, float], digits: int = 0) -> list[Any]:
    """The n, p50 ms and p95 ms cells of a :func:`latency_summary`, for a results table."""
    return [summary["n"], *(f"{summary[k]:.{digits}f}" for k in ("p50_ms", "p95_ms"))]


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=True)]
    for row in (headers, *rows):
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths, strict=True)))
