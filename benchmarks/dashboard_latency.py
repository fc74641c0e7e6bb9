"""Benchmark: latency of the dashboard's live KPI endpoint and its 365-day history endpoint.

    .venv/bin/python -m benchmarks.dashboard_latency [--requests 200] [--days 9] [--small]

On a fresh embedded AWS: the demo business (2 stores), ``--days`` days of simulated traffic
(``--rate``: the business's peak events per second) aggregated with the stream processor's own
code into DynamoDB buckets (today up to now, yesterday and last week for the comparisons, the
week behind stock cover), and ``--history-days`` (365) days of ``daily_store_metrics`` Parquet
in the lake. "Now" is fixed (``harness.NOW``, a Saturday afternoon in the stores' Paris) and is
the clock of the dashboard and of the writer: no result depends on when the benchmark runs.
The dashboard app runs in-process (FastAPI's TestClient, Airflow's login replaced by a fixed
user) while a writer thread keeps adding events to the current minute (``--writes`` per
second), as the Lambda would: every refresh then has a changed hour to read again.

Printed: p50 and p95 of ``GET /api/live/kpis`` (target p95 < 100 ms), ``GET /api/live`` (the
whole page), and ``GET /api/history/trend?days=365`` (target p95 < 500 ms, after the first
request has filled the file cache), beside baselines measured in the same run: a bare DynamoDB
GetItem and a bare S3 ListObjectsV2 of the dataset's partitions. ``--small``: a twentieth of
the traffic rate, 30 days of history and 10 requests each, for ``make test``.
"""

from __future__ import annotations

import argparse
import io
import random
import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.harness import (
    NOW,
    embedded_aws,
    latency_cells,
    latency_summary,
    parse_args,
    print_table,
)
from storepulse.clock import Clock, fixed_clock
from storepulse.config import settings
from storepulse.dashboard.history import PERIODS
from storepulse.layout import COUNTERS, MINUTE_TTL, Table, bucket_keys, expires_at, table_name
from storepulse.settings_store import SettingsStore
from storepulse.simulator.engine import Simulator
from storepulse.simulator.model import BusinessModel
from storepulse.simulator.seed import seed_settings
from storepulse.stream.aggregate import Located, aggregate
from storepulse.stream.catalog import load_catalog
from storepulse_local.provision import create_tables

LIVE_TARGET_MS, HISTORY_TARGET_MS = 100, 500
SHARD = "shardId-000000000000"


def seed_business() -> BusinessModel:
    create_tables(boto3.client("dynamodb"))
    model = BusinessModel.generate(seed=7, stores=2)
    store = SettingsStore(boto3.resource("dynamodb").Table(table_name(Table.SETTINGS)))
    seed_settings(store, model)
    store.seed_defaults()
    return model


def seed_traffic(model: BusinessModel, days: int, now: datetime, rate: float = 0.2) -> int:
    """``days`` days of simulated events up to ``now``, aggregated as the Lambda does."""
    settings_table = boto3.resource("dynamodb").Table(table_name(Table.SETTINGS))
    catalog = load_catalog(settings_table)
    start = now - timedelta(days=days)
    simulator = Simulator(model, seed=7, start=start, rate=rate)
    events = list(simulator.events_between(start, now))
    sessions: set[str] = set()
    located, new_sessions = [], set()
    for n, event in enumerate(events):
        position = f"{n:064d}"
        located.append(Located(event, SHARD, position))
        session = getattr(event, "session_id", None)
        if session and session not in sessions:
            sessions.add(session)
            new_sessions.add(position)
    batch = aggregate(located, catalog, new_sessions)
    metrics = boto3.resource("dynamodb").Table(table_name(Table.METRICS))
    with metrics.batch_writer() as writer:
        for key, write in batch.counters.items():
            writer.put_item(Item={**key.as_item(), **write.total(), **write.attributes})
    inventory = boto3.resource("dynamodb").Table(table_name(Table.INVENTORY))
    rng = random.Random(7)
    with inventory.batch_writer() as writer:
        for store in model.stores:
            for product in model.catalogue:
                item = {"pk": f"S#{store.store_id}", "sk": product.sku}
                writer.put_item(Item=item | {"on_hand": rng.randrange(0, 200)})
    return len(events)


def seed_lake(bucket: str, stores: list[str], end: date, days: int = 365) -> None:
    """One ``daily_store_metrics`` file per day, as the nightly export writes them."""
    s3, rng = boto3.client("s3"), random.Random(11)
    s3.create_bucket(Bucket=bucket)
    schema = pa.schema(
        [
            pa.field("store_id", pa.string(), nullable=False),
            pa.field("business_date", pa.date32(), nullable=False),
            pa.field("revenue", pa.decimal128(18, 2), nullable=False),
            pa.field("refund_amount", pa.decimal128(18, 2), nullable=False),
            *(pa.field(c, pa.int64(), nullable=False) for c in COUNTERS[2:]),
        ]
    )
    for back in range(days):
        day = end - timedelta(days=back)
        rows = [
            {c: rng.randrange(10, 500) for c in COUNTERS[2:]}
            | {
                "store_id": store,
                "business_date": day,
                "revenue": Decimal(rng.randrange(10_000, 900_000)) / 100,
                "refund_amount": Decimal(rng.randrange(0, 5_000)) / 100,
            }
            for store in stores
        ]
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), buffer, compression="zstd")
        key = f"curated/daily_store_metrics/dt={day.isoformat()}/part-00000.parquet"
        s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


class Writer(threading.Thread):
    """Adds a page view and a sale's counters to the current minute, like the Lambda."""

    def __init__(self, model: BusinessModel, per_second: float, clock: Clock) -> None:
        super().__init__(daemon=True)
        self.model, self.per_second, self.stop = model, per_second, threading.Event()
        self.clock = clock
        self.table = boto3.resource("dynamodb").Table(table_name(Table.METRICS))

    def run(self) -> None:
        store = self.model.stores[0]
        while self.per_second > 0 and not self.stop.wait(1 / self.per_second):
            now = self.clock()
            for store_id in (store.store_id, None):
                for grain, key in bucket_keys(store_id, now, store.timezone).items():
                    self.table.update_item(
                        Key=key.as_item(),
                        UpdateExpression="ADD revenue :r, orders :o, page_views :p",
                        ExpressionAttributeValues={
                            ":r": Decimal("4.50"),
                            ":o": 1,
                            ":p": 3,
                        },
                    )
                    if grain.value == "MIN":
                        self.table.update_item(
                            Key=key.as_item(),
                            UpdateExpression="SET expires_at = :t",
                            ExpressionAttributeValues={":t": expires_at(now, MINUTE_TTL)},
                        )


def measure(call: Callable[[], Any], requests: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        call()
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - started)
    return latencies


def _get(client: Any, path: str) -> Callable[[], Any]:
    def call() -> Any:
        response = client.get(path)
        assert response.status_code == 200, response.text
        return response

    return call


SMALL = {"requests": 10, "rate": 0.01, "history_days": 30}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--days", type=int, default=9, help="days of live traffic to seed")
    parser.add_argument("--rate", type=float, default=0.2, help="peak simulated events/s")
    parser.add_argument("--history-days", type=int, default=365, choices=PERIODS)
    parser.add_argument("--writes", type=float, default=2.0, help="events per second meanwhile")
    args = parse_args(parser, argv, SMALL)
    clock = fixed_clock(NOW)
    with embedded_aws():
        model, bucket, events = seed(args, clock())
        operations, first_ms = serve(model, bucket, args, clock)
    report(operations)
    return {"events": events, "first_history_ms": first_ms, "operations": operations}


def seed(args: argparse.Namespace, now: datetime) -> tuple[BusinessModel, str, int]:
    model = seed_business()
    started = time.perf_counter()
    events = seed_traffic(model, args.days, now, args.rate)
    bucket = settings().resource_name("lake")
    stores = [s.store_id for s in model.stores]
    seed_lake(bucket, stores, now.date() - timedelta(days=1), args.history_days)
    print(
        f"seeded {events} events over {args.days} days and {args.history_days} days of Parquet "
        f"in {time.perf_counter() - started:.0f} s"
    )
    return model, bucket, events


def serve(
    model: BusinessModel, bucket: str, args: argparse.Namespace, clock: Clock
) -> tuple[dict[str, dict[str, float]], float]:
    """The app in-process, on ``clock``, while the writer adds to the current minute."""
    from fastapi.testclient import TestClient

    from storepulse.dashboard import history
    from storepulse.dashboard.access import StoreAccess
    from storepulse.dashboard.app import Services, Viewer, create_app, current_viewer

    services = Services.connect(clock=clock)  # the live view and the history window alike
    # Grants fail closed: the benchmark's user sees every store only once granted.
    services.access.put(StoreAccess(username="bench", all_stores=True), known_stores=())
    services.lake_factory = lambda: history.Lake(bucket)
    app = create_app(services)
    app.dependency_overrides[current_viewer] = lambda: Viewer("bench", can_edit=True)
    writer = Writer(model, args.writes, clock)
    end = clock().date() - timedelta(days=1)
    with TestClient(app) as client:
        writer.start()
        try:
            return run_all(client, bucket, args.requests, end, args.history_days)
        finally:
            writer.stop.set()
            writer.join(timeout=5)


def run_all(
    client: Any, bucket: str, requests: int, end: date, days: int
) -> tuple[dict[str, dict[str, float]], float]:
    """Latencies per operation, and the first history request's (it reads every file) in ms."""
    metrics = boto3.resource("dynamodb").Table(table_name(Table.METRICS))
    day_key = {"pk": f"ALL#DAY#{end.year}", "sk": end.isoformat()}
    s3 = boto3.client("s3")
    history_path = f"/api/history/trend?days={days}&end={end.isoformat()}"
    first_history = time.perf_counter()
    _get(client, history_path)()
    first_ms = (time.perf_counter() - first_history) * 1000
    print(f"first {days}-day history request (reads every file): {first_ms:.0f} ms")
    latencies = {
        "baseline: DynamoDB GetItem": measure(lambda: metrics.get_item(Key=day_key), requests),
        "GET /api/live/kpis (all stores)": measure(_get(client, "/api/live/kpis"), requests),
        "GET /api/live/kpis?store=s-001": measure(
            _get(client, "/api/live/kpis?store=s-001"), requests
        ),
        "GET /api/live (whole page)": measure(_get(client, "/api/live"), requests),
        f"baseline: S3 ListObjectsV2 ({days} partitions)": measure(
            lambda: s3.list_objects_v2(Bucket=bucket, Prefix="curated/daily_store_metrics/"),
            max(20, requests // 4),
        ),
        f"GET /api/history/trend?days={days}": measure(
            _get(client, history_path), max(20, requests // 4)
        ),
    }
    return {name: latency_summary(values) for name, values in latencies.items()}, first_ms


def target_ms(operation: str) -> int | None:
    if operation.startswith("GET /api/live/kpis"):
        return LIVE_TARGET_MS
    return HISTORY_TARGET_MS if operation.startswith("GET /api/history") else None


def report(operations: dict[str, dict[str, float]]) -> None:
    rows = []
    for name, summary in operations.items():
        target = target_ms(name)
        verdict = "" if target is None else ("ok" if summary["p95_ms"] < target else "MISSED")
        rows.append(
            [name, *latency_cells(summary, 1), "" if target is None else f"< {target}", verdict]
        )
    print_table(["operation", "n", "p50 ms", "p95 ms", "target p95", ""], rows)


if __name__ == "__main__":
    main()
