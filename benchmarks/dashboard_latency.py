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
whole page), ``GET /api/live/staffing`` (one store's hours against 4 weeks), and
``GET /api/history/trend?days=365`` warm (target p95 < 150 ms) and cold: each
cold sample gets a new ``Lake`` (empty caches), reading the yearly rollups the export keeps
(target < 500 ms) and, as the baseline of the same run, the day files only (what history did
before the rollups); also the first history request of a freshly started process (imports,
connections: target < 500 ms). Baselines: a bare DynamoDB GetItem and a bare S3 ListObjectsV2
of the dataset's partitions. ``--check`` exits 1 when a target is missed. ``--small``: a
hundredth of the traffic rate, a quarter of the writes, 30 days of history and 10 requests each,
for ``make test``.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import subprocess
import sys
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
from storepulse import stock_levels
from storepulse.clock import Clock, fixed_clock
from storepulse.config import REPO_ROOT, settings
from storepulse.dashboard.history import PERIODS
from storepulse.export.datasets import DATASETS
from storepulse.layout import COUNTERS, MINUTE_TTL, Table, bucket_keys, expires_at, table_name
from storepulse.settings import SettingsStore, load_catalog
from storepulse.simulator.engine import Simulator
from storepulse.simulator.model import BusinessModel
from storepulse.simulator.seed import seed_settings
from storepulse.stream.aggregate import Located, aggregate
from storepulse_local.provision import create_tables

LIVE_TARGET_MS, HISTORY_TARGET_MS = 100, 150  # p95, warm
COLD_TARGET_MS = 500  # the first history request after a start (fresh process, fresh caches)
METRICS = DATASETS["daily_store_metrics"]
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
            levels = {p.sku: stock_levels.Level(rng.randrange(0, 200)) for p in model.catalogue}
            for item in stock_levels.store_items(store.store_id, levels):
                writer.put_item(Item=item)
    return len(events)


def seed_lake(bucket: str, stores: list[str], end: date, days: int = 365) -> None:
    """One ``daily_store_metrics`` file per day, as the nightly export writes them, and the
    yearly rollups its rollup task keeps (written once per year here, same bytes)."""
    from storepulse.export.rollup import rollup_path, write_rollup
    from storepulse.lake.filesystem import open_filesystem

    s3, rng = boto3.client("s3"), random.Random(11)
    s3.create_bucket(Bucket=bucket)
    schema = METRICS.schema
    years: dict[int, list[pa.Table]] = {}
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
        table = pa.Table.from_pylist(rows, schema=schema)
        years.setdefault(day.year, []).append(table)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        key = f"curated/daily_store_metrics/dt={day.isoformat()}/part-00000.parquet"
        s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
    fs, root = open_filesystem(f"s3://{bucket}/curated")
    for year, tables in years.items():
        year_days = {d for t in tables for d in t["business_date"].to_pylist()}
        path = rollup_path(root, METRICS, year)
        write_rollup(fs, path, pa.concat_tables(tables), year_days, METRICS)


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
            # The store's buckets only: the business's are their sums on read.
            for grain, key in bucket_keys(store.store_id, now, store.timezone).items():
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


SMALL = {"requests": 10, "rate": 0.002, "history_days": 30, "writes": 0.5}


def first_request_worker(bucket: str, days: int, end: date) -> None:
    """In a fresh process: build the app as the api-server does and let its start-up warm-up
    finish, then time its first history request (connections, caches: cold); print ms, and
    the ms from the process's start to that answer."""
    started = time.perf_counter()
    from fastapi.testclient import TestClient

    from storepulse.dashboard import history
    from storepulse.dashboard.app import Services, Viewer, create_app, current_viewer

    services = Services.connect(clock=fixed_clock(NOW))
    services.lake_factory = lambda: history.Lake(bucket)
    app = create_app(services)
    app.dependency_overrides[current_viewer] = lambda: Viewer("bench", can_edit=True)
    with TestClient(app) as client:
        app.state.warmed.wait(timeout=60)  # what the app does at start (an api-server's boot)
        started_app = time.perf_counter()
        _get(client, history_path(days, end))()
        done = time.perf_counter()
    print(
        json.dumps({"first_ms": (done - started_app) * 1000, "start_ms": (done - started) * 1000})
    )


def first_request_in_fresh_process(bucket: str, days: int, end: date) -> dict[str, float]:
    command = [sys.executable, "-m", "benchmarks.dashboard_latency", "--first-request-worker"]
    command += [bucket, str(days), end.isoformat()]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"first request worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def missed_targets(operations: dict[str, dict[str, float]], fresh: dict[str, float]) -> list[str]:
    missed = [
        f"{name}: p95 {summary['p95_ms']:.0f} ms >= {target} ms"
        for name, summary in operations.items()
        if (target := target_ms(name)) is not None and summary["p95_ms"] >= target
    ]
    if fresh["first_ms"] >= COLD_TARGET_MS:
        missed.append(f"first history request of a fresh process {fresh['first_ms']:.0f} ms")
    return missed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    if argv is None and sys.argv[1:2] == ["--first-request-worker"]:
        bucket, days, end = sys.argv[2:5]
        first_request_worker(bucket, int(days), date.fromisoformat(end))
        raise SystemExit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--days", type=int, default=9, help="days of live traffic to seed")
    parser.add_argument("--rate", type=float, default=0.2, help="peak simulated events/s")
    parser.add_argument("--history-days", type=int, default=365, choices=PERIODS)
    parser.add_argument("--writes", type=float, default=2.0, help="events per second meanwhile")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parse_args(parser, argv, SMALL)
    clock = fixed_clock(NOW)
    end = clock().date() - timedelta(days=1)
    with embedded_aws():
        model, bucket, events = seed(args, clock())
        operations, first_ms = serve(model, bucket, args, clock)
        fresh = first_request_in_fresh_process(bucket, args.history_days, end)
    report(operations)
    print(
        f"fresh process: first {args.history_days}-day history request {fresh['first_ms']:.0f} ms "
        f"(target < {COLD_TARGET_MS} ms), {fresh['start_ms']:.0f} ms with the app's start"
    )
    missed = missed_targets(operations, fresh)
    for miss in missed:
        print(f"TARGET MISSED: {miss}")
    if args.check and missed:
        raise SystemExit(1)
    return {
        "events": events,
        "first_history_ms": first_ms,
        "fresh_process": fresh,
        "operations": operations,
        "missed": missed,
    }


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
    from storepulse.dashboard.app import Services, Viewer, create_app, current_viewer
    from storepulse.settings import StoreAccess

    services = Services.connect(clock=clock)  # the live view and the history window alike
    # Grants fail closed: the benchmark's user sees every store only once granted.
    services.access.put(StoreAccess(username="bench", all_stores=True), known_stores=())
    rollups = {"on": True}
    services.lake_factory = lambda: history.Lake(bucket, rollups=rollups["on"])

    def fresh_lake(use_rollups: bool) -> None:
        """The next request finds the lake again: a new ``Lake``, empty caches."""
        rollups["on"] = use_rollups
        services._lake = None

    app = create_app(services)
    app.dependency_overrides[current_viewer] = lambda: Viewer("bench", can_edit=True)
    writer = Writer(model, args.writes, clock)
    end = clock().date() - timedelta(days=1)
    with TestClient(app) as client:
        writer.start()
        try:
            store_id = model.stores[0].store_id
            return run_all(
                client, bucket, args.requests, end, args.history_days, fresh_lake, store_id
            )
        finally:
            writer.stop.set()
            writer.join(timeout=5)


def history_path(days: int, end: date) -> str:
    return f"/api/history/trend?days={days}&end={end.isoformat()}"


def cold(client: Any, path: str, fresh_lake: Callable[[bool], None], rollups: bool) -> float:
    fresh_lake(rollups)
    started = time.perf_counter()
    _get(client, path)()
    return time.perf_counter() - started


def run_all(
    client: Any,
    bucket: str,
    requests: int,
    end: date,
    days: int,
    fresh_lake: Callable[[bool], None],
    store_id: str,
) -> tuple[dict[str, dict[str, float]], float]:
    """Latencies per operation, and the first history request's in ms (fresh caches)."""
    metrics = boto3.resource("dynamodb").Table(table_name(Table.METRICS))
    day_key = {"pk": f"S#{store_id}#DAY#{end.year}", "sk": end.isoformat()}
    s3 = boto3.client("s3")
    path = history_path(days, end)
    first_ms = cold(client, path, fresh_lake, rollups=True) * 1000
    print(f"first {days}-day history request (fresh caches, rollups): {first_ms:.0f} ms")
    samples = max(3, requests // 20)
    latencies = {
        f"cold history, {days} days: day files only (before)": [
            cold(client, path, fresh_lake, rollups=False) for _ in range(max(2, samples // 2))
        ],
        f"cold history, {days} days: rollups": [
            cold(client, path, fresh_lake, rollups=True) for _ in range(samples)
        ],
    }
    fresh_lake(True)
    latencies |= {
        "baseline: DynamoDB GetItem": measure(lambda: metrics.get_item(Key=day_key), requests),
        "GET /api/live/kpis (all stores)": measure(_get(client, "/api/live/kpis"), requests),
        "GET /api/live/kpis?store=s-001": measure(
            _get(client, "/api/live/kpis?store=s-001"), requests
        ),
        "GET /api/live (whole page)": measure(_get(client, "/api/live"), requests),
        "GET /api/live/staffing?store=s-001": measure(
            _get(client, "/api/live/staffing?store=s-001"), requests
        ),
        f"baseline: S3 ListObjectsV2 ({days} partitions)": measure(
            lambda: s3.list_objects_v2(Bucket=bucket, Prefix="curated/daily_store_metrics/"),
            max(20, requests // 4),
        ),
        f"GET /api/history/trend?days={days}": measure(_get(client, path), max(20, requests // 4)),
    }
    return {name: latency_summary(values) for name, values in latencies.items()}, first_ms


def target_ms(operation: str) -> int | None:
    if operation.startswith("GET /api/live/kpis"):
        return LIVE_TARGET_MS
    if operation.startswith("cold history") and operation.endswith("rollups"):
        return COLD_TARGET_MS
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
