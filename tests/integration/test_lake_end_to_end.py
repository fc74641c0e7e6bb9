"""Issue 18's lake end to end, through `make up` as a user runs it (deployed stack, local Lambda
runtime, Airflow): sales put on Kinesis become rows in `changes/` once the aggregates changed,
the compaction DAG publishes them in the curated "today so far" partitions (a late sale
republishes its own day alone), and the nightly export of the day gives the same partitions
byte for byte whether it rebuilds the day from its changes (`incremental`) or reads the whole
table (`pitr`).

The incremental export needs a recovery history older than the day: the platform is first
started with every process's clock two days back (tests/clock_shift: the stack, and the tables'
point-in-time recovery, are made "two days ago"), stopped, and started again on the same state
at the real time. Slow (two platform starts, five DAG runs): `make test-slow`.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
import pytest

from storepulse import events as ev
from storepulse.capture.reader import change_keys, read_changes
from storepulse.config import REPO_ROOT, settings
from storepulse.deploy.stack import deployed_outputs, stack_name
from storepulse.export.datasets import DATASETS
from storepulse.export.incremental import logical_date_of
from storepulse.lake.bucket import OUTPUT as LAKE_BUCKET
from storepulse.lake.freshness import FRESHNESS_KEY
from storepulse.lake.manifest import get_manifest
from storepulse.lake.paths import CURATED, STAGING, export_prefix, partition_prefix, run_folder
from storepulse.layout import Table, order_key, table_name
from storepulse.producer import KinesisProducer
from storepulse.settings.catalog import load_catalog
from storepulse.simulator.model import BusinessModel
from storepulse_local.platform import realtime
from storepulse_local.platform.airflow_local import AirflowClient
from tests.platform_process import READY_SECONDS, Platform

pytestmark = pytest.mark.slow

STORE = "s-001"
HISTORY_DAYS = 2  # how far back the first start's clock is: older than any business day's window
EXPORT_DAG, COMPACT_DAG = "nightly_export", "compact_changes"
SOURCE_TABLES = ("facts", "metrics", "inventory")  # the nightly export's export_<table> tasks


@pytest.fixture(scope="module")
def lake_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, str]]:
    """A platform whose tables have two days of recovery history, and its admin password."""
    state = tmp_path_factory.mktemp("lake-platform")
    shift = float(os.environ.get("STOREPULSE_CLOCK_SHIFT_SECONDS", 0)) - HISTORY_DAYS * 86400
    path = os.environ.get("PYTHONPATH")
    past = Platform(
        state,
        env={
            "STOREPULSE_CLOCK_SHIFT_SECONDS": str(shift),
            "PYTHONPATH": str(REPO_ROOT / "tests" / "clock_shift") + (f":{path}" if path else ""),
        },
    )
    try:
        past.wait_ready(timeout=READY_SECONDS)
    finally:
        past.stop()
    now = Platform(state, ports=(past.aws_port, past.airflow_port))
    try:
        yield now, now.wait_ready(timeout=READY_SECONDS)
    finally:
        now.stop()


def test_kinesis_sales_reach_changes_the_compacted_day_and_both_nightly_strategies_agree(
    lake_platform: tuple[Platform, str],
) -> None:
    platform, password = lake_platform
    airflow = AirflowClient(platform.url, "admin", password)
    airflow.login()
    s3 = platform.client("s3")
    bucket = deployed_outputs(platform.client("cloudformation"), stack_name(settings().env))[
        LAKE_BUCKET
    ]
    catalog = load_catalog(platform.table(table_name(Table.SETTINGS)), rules=False)
    store = catalog.stores[STORE]
    # The start's own runs first (the deploy's compaction, yesterday's scheduled export, which
    # publishes the snapshots tonight's incremental export starts from).
    _wait_for(lambda: _exported_yesterday(airflow), 900, "yesterday's scheduled export")
    _wait_idle(airflow, (EXPORT_DAG, COMPACT_DAG))
    platform.pause_traffic()  # the tables hold still while the two strategies read them
    try:
        # Catch up first: changes of the first start's history that no compaction took yet
        # (e.g. a week-old demo day) would otherwise be republished beside the late sale's day.
        caught_up = airflow.trigger(COMPACT_DAG)
        assert airflow.wait_for_run(COMPACT_DAG, caught_up, timeout=900) == "success"
        today = datetime.now(ZoneInfo(store.timezone)).date()
        orders = _capture_sales(platform, bucket, store.currency, today)
        _compact(airflow, platform, bucket, orders, today)
        _wait_until_counted(platform)
        airflow.set_paused(COMPACT_DAG, True)  # no hourly run between the two exports
        _both_strategies_agree(airflow, s3, bucket, today, catalog.business_timezone)
    finally:
        airflow.set_paused(COMPACT_DAG, False)
        platform.resume_traffic()


# --- Kinesis to changes/ -----------------------------------------------------------------------


def _capture_sales(platform: Platform, bucket: str, currency: str, today: date) -> dict[str, date]:
    """Two sales of today and one of yesterday (a POS syncing late) on Kinesis: each a row of
    `changes/` once its order is in the facts table. Returns order id -> business day."""
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:8]
    sales = {
        f"e2e-{run}-1": now,
        f"e2e-{run}-2": now,
        f"e2e-{run}-late": now - timedelta(days=1),
    }
    KinesisProducer(
        stream_name=settings().resource_name("events"), client=platform.client("kinesis")
    ).send([_sale(order, at, currency) for order, at in sales.items()])

    facts = platform.table(table_name(Table.FACTS))
    counted = _wait_for(lambda: all(_order_item(facts, o) for o in sales), 240, "orders counted")
    s3 = platform.client("s3")
    captured = _wait_for(lambda: set(sales) <= _captured_orders(s3, bucket), 240, "changes rows")
    print(f"orders in the facts table after {counted:.1f} s; in changes/ {captured:.1f} s later")
    days = {order: _order_item(facts, order)["business_date"] for order in sales}
    assert days == {
        order: (today if at == now else today - timedelta(days=1)).isoformat()
        for order, at in sales.items()
    }
    return {order: date.fromisoformat(day) for order, day in days.items()}


def _sale(order: str, at: datetime, currency: str) -> ev.PosSaleV1:
    product = BusinessModel.generate(seed=realtime.DEMO_SEED, stores=2).catalogue[0]
    return ev.PosSaleV1(
        event_id=str(uuid.uuid4()),
        store_id=STORE,
        occurred_at=at,
        order_id=order,
        channel="in_store",
        currency=currency,
        lines=[
            ev.SaleLine(
                sku=product.sku,
                category=product.category,
                quantity=1,
                unit_price=Decimal("4.20"),
            )
        ],
    )


def _order_item(facts: Any, order: str) -> dict[str, Any] | None:
    return facts.get_item(Key=order_key(order).as_item(), ConsistentRead=True).get("Item")


def _captured_orders(s3: Any, bucket: str) -> set[str]:
    """Order ids of the `changes/` rows of the last and the current UTC hour."""
    now = datetime.now(UTC)
    hours = [((now + timedelta(hours=h)).date(), (now + timedelta(hours=h)).hour) for h in (-1, 0)]
    keys = change_keys(s3, bucket, DATASETS["orders"], hours)
    return set(read_changes(s3, bucket, DATASETS["orders"], keys).column("order_id").to_pylist())


# --- the compaction DAG ------------------------------------------------------------------------


def _compact(
    airflow: AirflowClient, platform: Platform, bucket: str, orders: dict[str, date], today: date
) -> None:
    """compact_changes through the REST API: today's and yesterday's partitions hold the sales;
    no other day's object changed."""
    s3 = platform.client("s3")
    before = _objects(s3, bucket, f"{CURATED}/", "changes/_state/")
    run_id = airflow.trigger(COMPACT_DAG)
    assert airflow.wait_for_run(COMPACT_DAG, run_id, timeout=900) == "success"
    after = _objects(s3, bucket, f"{CURATED}/", "changes/_state/")

    for order, day in orders.items():
        assert order in {r["order_id"] for r in _partition_rows(s3, bucket, "orders", day)}
    yesterday = today - timedelta(days=1)
    for objects in (before, after):  # the lake's newest change: rewritten by every publish
        objects.pop(FRESHNESS_KEY, None)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert any(f"/dt={yesterday}/" in key for key in changed), "the late sale's day unchanged"
    elsewhere = [k for k in changed if not any(f"/dt={d}/" in k for d in (today, yesterday))]
    assert elsewhere == [], elsewhere


def _objects(s3: Any, bucket: str, *prefixes: str) -> dict[str, str]:
    """Key -> ETag of every object under the prefixes (what a publish would change)."""
    return {
        o["Key"]: o["ETag"]
        for prefix in prefixes
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    }


def _partition_rows(s3: Any, bucket: str, dataset: str, day: date) -> list[dict[str, Any]]:
    """A published partition's rows, read through its manifest as a lake reader does."""
    folder = partition_prefix(CURATED, dataset, day)
    manifest = get_manifest(s3, bucket, folder)
    assert manifest is not None, f"{folder} not published"
    return [
        row
        for name in manifest.files
        for row in pq.read_table(io.BytesIO(_body(s3, bucket, f"{folder}/{name}"))).to_pylist()
    ]


# --- the nightly export, incremental and full --------------------------------------------------


def _both_strategies_agree(
    airflow: AirflowClient, s3: Any, bucket: str, day: date, business_timezone: str
) -> None:
    """The day exported with strategy incremental (from its changes), then pitr (the whole
    table): every data set's staged partition is the same bytes, and so is what each published."""
    # Today's interval given explicitly: a logical date inside it would be in the future (Airflow
    # 3 never starts such a run). Each run's logical date is a past minute no scheduled run has.
    start = logical_date_of(day, business_timezone)
    staged, published = {}, {}
    for minute, strategy in enumerate(("incremental", "pitr"), start=1):
        run_id = airflow.trigger(
            EXPORT_DAG,
            conf={"strategy": strategy},
            logical_date=start - timedelta(minutes=minute),
            data_interval=(start, start + timedelta(days=1)),
        )
        assert airflow.wait_for_run(EXPORT_DAG, run_id, timeout=1200) == "success", run_id
        windows = {
            t: _keys(s3, bucket, f"{export_prefix(run_id, t, 1)}/window-0/") for t in SOURCE_TABLES
        }
        used = {t: "incremental" if keys else "full" for t, keys in windows.items()}
        assert used == dict.fromkeys(SOURCE_TABLES, strategy.replace("pitr", "full")), used
        staged[strategy] = _staged(s3, bucket, run_id, day)
        published[strategy] = {
            name: getattr(
                get_manifest(s3, bucket, partition_prefix(CURATED, name, day)), "token", None
            )
            for name in DATASETS
        }
    assert staged["incremental"]["orders"], "no orders staged"
    assert staged["incremental"] == staged["pitr"]
    assert published["incremental"] == published["pitr"]


def _staged(s3: Any, bucket: str, run_id: str, day: date) -> dict[str, dict[str, str]]:
    """Per data set, the run's staged files of ``day``: name -> SHA-256 of its bytes."""
    root = f"{STAGING}/{run_folder(run_id)}"
    return {
        name: {
            key.rsplit("/", 1)[-1]: hashlib.sha256(_body(s3, bucket, key)).hexdigest()
            for key in _keys(s3, bucket, partition_prefix(root, name, day) + "/")
            if key.endswith(".parquet")
        }
        for name in DATASETS
    }


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    return sorted(_objects(s3, bucket, prefix))


def _body(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


# --- waiting -----------------------------------------------------------------------------------


def _wait_for(condition: Any, timeout: float, what: str) -> float:
    """Seconds until ``condition()`` holds; fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(1)
    return time.monotonic() - started


def _wait_idle(airflow: AirflowClient, dag_ids: tuple[str, ...], timeout: float = 1200) -> None:
    """Until no run of the DAGs is queued or running."""
    _wait_for(
        lambda: (
            not any(
                run["state"] in {"queued", "running"}
                for dag_id in dag_ids
                for run in airflow.dag_runs(dag_id)
            )
        ),
        timeout,
        f"runs of {', '.join(dag_ids)} finished",
    )


def _exported_yesterday(airflow: AirflowClient) -> bool:
    """The second start's scheduled run (the last complete day, no catch-up) has finished."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = (midnight - timedelta(days=1)).isoformat()[:19]
    return any(
        run["run_type"] == "scheduled"
        and (run["logical_date"] or "").startswith(yesterday)
        and run["state"] in {"success", "failed"}
        for run in airflow.dag_runs(EXPORT_DAG)
    )


def _wait_until_counted(platform: Platform) -> None:
    """The simulator is paused: until the runtime has counted what it had already sent (the
    business's metrics hold still for 15 s)."""
    metrics = platform.table(table_name(Table.METRICS))
    year = datetime.now(UTC).year
    # The business's numbers are the sums of its stores' (the stream writes only theirs).
    stores = load_catalog(platform.table(table_name(Table.SETTINGS)), rules=False).stores

    def snapshot() -> list[Any]:
        return [
            metrics.query(
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": f"S#{s}#DAY#{y}"},
                ConsistentRead=True,
            )["Items"]
            for s in sorted(stores)
            for y in (year - 1, year)
        ]

    last = [snapshot()]

    def still() -> bool:
        time.sleep(15)
        now = snapshot()
        settled, last[0] = now == last[0], now
        return settled

    _wait_for(still, 300, "the metrics hold still")
