"""The nightly export on the embedded AWS: real events through the Lambda handler, DynamoDB
exported by both strategies, Parquet written to the lake bucket and read back with DuckDB and
pyarrow.

DuckDB reads ``s3://`` through ``tests.lake.duckdb_connection``: its httpfs extension is downloaded
from the internet on first use, which this machine cannot do, so S3 is served to DuckDB by
pyarrow's S3 filesystem (via fsspec) instead; the SQL is the same.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from storepulse import events as ev
from storepulse.aws import FAIL_FAST_CONFIG, client
from storepulse.export.datasets import DATASETS, build_rows, dataset_path, datasets_of
from storepulse.export.dynamodb_json import iter_export_items, serialize_item
from storepulse.export.quality import Reference
from storepulse.export.sources import (
    Backoff,
    ExportError,
    ExportWindow,
    PointInTimeExportSource,
    PointInTimeRecoveryOffError,
    QuerySource,
    ScanSource,
    require_point_in_time_recovery,
)
from storepulse.export.staging import StagedDataset, stage_export
from storepulse.export.writer import WriteReport
from storepulse.lake.filesystem import open_filesystem
from storepulse.layout import Table, table_name
from storepulse_local.iam import DEPLOYER
from tests.integration.conftest import invoke
from tests.integration.test_stream_processor import (
    NOON_PARIS,
    Stream,
    page_view,
    sale,
    stock_take,
)
from tests.lake import duckdb_connection, write_datasets, write_rows

DAY = NOON_PARIS.date()  # 2026-11-26
EXPORTED_TABLES = (Table.FACTS, Table.METRICS, Table.INVENTORY)
FAST_POLL = Backoff(first=0.1, factor=2.0, maximum=1.0, timeout=60)


def refund(store: str, refund_id: str, order: str, amount: str, at: datetime) -> ev.PosRefundV1:
    return ev.PosRefundV1(
        event_id=str(uuid.uuid4()),
        store_id=store,
        occurred_at=at,
        refund_id=refund_id,
        order_id=order,
        currency="EUR",
        amount=Decimal(amount),
        lines=[ev.RefundLine(sku="coffee-1kg", quantity=1)],
        reason="damaged",
    )


def profile(store: str, customer: str, at: datetime) -> ev.CrmCustomerProfileV1:
    return ev.CrmCustomerProfileV1(
        event_id=str(uuid.uuid4()),
        store_id=store,
        occurred_at=at,
        customer_id=customer,
        age_band="25-34",
        region="IDF",
        segment="vip",
    )


def put_a_day(handler: Any) -> None:
    """A business day through the real handler, with its edges: an order at 00:30 in Paris on
    the next day, one from the day before, a refund, a session, a stock take, a profile."""
    stream = Stream()
    late_evening = datetime(2026, 11, 26, 23, 30, tzinfo=UTC)  # Paris: the 27th
    invoke(
        handler,
        stream.records(
            stock_take("s-001", "tea-100g", 10, NOON_PARIS - timedelta(hours=2)),
            sale(
                "s-001",
                "o-1",
                NOON_PARIS,
                ("coffee-1kg", 2, "12.10"),
                ("mug-blue", 1, "0.10"),
                customer="c-1",
            ),
            sale("s-001", "o-2", NOON_PARIS + timedelta(minutes=1), ("tea-100g", 3, "0.20")),
            sale("s-002", "o-3", NOON_PARIS, ("coffee-1kg", 1, "12.10")),
            sale("s-001", "o-next-day", late_evening, ("tea-100g", 1, "5.00")),
            sale("s-001", "o-day-before", NOON_PARIS - timedelta(days=1), ("tea-100g", 1, "4.00")),
            refund("s-001", "r-1", "o-1", "12.10", NOON_PARIS + timedelta(hours=3)),
            page_view("s-001", "sess-1", NOON_PARIS),
            profile("s-001", "c-1", NOON_PARIS),
            arrived_at=late_evening,  # after all of them: none is dated in the future
        ),
    )


def enable_pitr(dynamodb: Any) -> None:
    """PITR on the exported tables (create_tables switches it on as the template does; stated
    again where an export needs it)."""
    for table in EXPORTED_TABLES:
        dynamodb.update_continuous_backups(
            TableName=table_name(table),
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )


def clients() -> tuple[Any, Any]:
    return client("dynamodb", config=FAIL_FAST_CONFIG), client("s3", config=FAIL_FAST_CONFIG)


def pitr_source(table: Table, bucket: str, **options: Any) -> PointInTimeExportSource:
    dynamodb, s3 = clients()
    prefix = f"exports/{table.value}/{uuid.uuid4().hex}"  # one prefix per export
    return PointInTimeExportSource(
        dynamodb, s3, table_name(table), bucket, prefix, backoff=FAST_POLL, **options
    )


def scan_source(table: Table) -> ScanSource:
    return ScanSource(clients()[0], table_name(table), total_segments=3)


def export_all(strategy: str, bucket: str, day: date = DAY) -> dict[str, WriteReport]:
    """Every dataset of ``day`` to ``s3://<bucket>/staging/<strategy>``: one pass per table."""
    reports: dict[str, WriteReport] = {}
    for table in EXPORTED_TABLES:
        source = pitr_source(table, bucket) if strategy == "pitr" else scan_source(table)
        root = f"s3://{bucket}/staging/{strategy}"
        reports |= write_datasets(source.items(), datasets_of(table), day, root)
    return reports


def object_bytes(s3: Any, paths: tuple[str, ...]) -> list[bytes]:
    """Contents of files named as pyarrow names them (``bucket/key``)."""
    out = []
    for path in paths:
        bucket, key = path.split("/", 1)
        out.append(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return out


def orders_in_dynamodb(stack: Any, day: date) -> dict[str, Decimal]:
    items = stack.table(Table.FACTS).scan(ConsistentRead=True)["Items"]
    return {
        i["order_id"]: i["total"]
        for i in items
        if i.get("type") == "order" and i["business_date"] == day.isoformat()
    }


@pytest.fixture
def exported(handler: Any, realtime_stack: Any) -> dict[str, dict[str, WriteReport]]:
    put_a_day(handler)
    enable_pitr(clients()[0])
    return {strategy: export_all(strategy, realtime_stack.bucket) for strategy in ("pitr", "scan")}


def test_both_strategies_write_identical_parquet(exported, realtime_stack) -> None:
    s3 = realtime_stack.s3
    assert set(exported["pitr"]) == set(DATASETS)
    for name in DATASETS:
        pitr, scan = exported["pitr"][name], exported["scan"][name]
        assert (pitr.rows, pitr.bytes, len(pitr.files)) == (scan.rows, scan.bytes, 1), name
        assert object_bytes(s3, pitr.files) == object_bytes(s3, scan.files), name
        assert pitr.files[0].endswith(dataset_path("", DATASETS[name], DAY) + "/part-00000.parquet")
    rows = {name: report.rows for name, report in exported["pitr"].items()}
    assert rows == {
        "orders": 3,
        "order_lines": 4,
        "refunds": 1,
        "daily_store_metrics": 2,
        "daily_category_sales": 3,  # s-001 grocery and kitchen, s-002 grocery
        "daily_product_sales": 4,
        "daily_social_metrics": 0,  # no social events that day
        "inventory_snapshot": 4,  # s-001: 3 skus, s-002: 1
        "customers": 1,
    }


def test_the_vectorized_export_stages_what_the_scan_writes(exported, realtime_stack) -> None:
    """``stage_export`` (Arrow batches from the export files on S3, per item for the metrics
    table) writes the scan's files byte for byte."""
    s3 = realtime_stack.s3
    fs, root = open_filesystem(f"s3://{realtime_stack.bucket}/staging/vectorized")
    for table in EXPORTED_TABLES:
        export = pitr_source(table, realtime_stack.bucket).run()
        staged = stage_export(clients()[1], export, datasets_of(table), DAY, root, fs)
        for name, report in staged.items():
            scan = exported["scan"][name]
            assert (report.rows, report.strict) == (scan.rows, True), name
            assert object_bytes(s3, report.files) == object_bytes(s3, scan.files), name


def test_a_days_orders_by_gsi1_query_give_the_same_file(exported, realtime_stack) -> None:
    orders = DATASETS["orders"]
    query = QuerySource.orders_of_day(clients()[0], table_name(Table.FACTS), DAY)
    uri = dataset_path(f"s3://{realtime_stack.bucket}/staging/query", orders, DAY)
    report = write_rows(
        build_rows(orders, query.items(), DAY), uri, orders.schema, sort_by=orders.key
    )
    s3 = realtime_stack.s3
    assert object_bytes(s3, report.files) == object_bytes(s3, exported["scan"]["orders"].files)


def test_duckdb_reads_back_exactly_what_dynamodb_holds(exported, realtime_stack) -> None:
    expected = orders_in_dynamodb(realtime_stack, DAY)
    assert sorted(expected) == ["o-1", "o-2", "o-3"]  # not the next day's, not the day before's
    duck = duckdb_connection()
    lake = f"s3://{realtime_stack.bucket}/staging/pitr"
    orders = duck.execute(
        f"SELECT order_id, total, business_date, occurred_at FROM read_parquet("
        f"'{lake}/orders/*/*.parquet', hive_partitioning=true) ORDER BY order_id"
    ).fetchall()
    assert {order_id: total for order_id, total, _, _ in orders} == expected
    assert all(type(total) is Decimal for _, total, _, _ in orders)
    assert {(d, t.utcoffset()) for _, _, d, t in orders} == {(DAY, timedelta(0))}
    metrics = duck.execute(
        f"SELECT store_id, revenue, orders, units, refunds, refund_amount, sessions, "
        f"average_order_value FROM read_parquet('{lake}/daily_store_metrics/*/*.parquet', "
        f"hive_partitioning=true) ORDER BY store_id"
    ).fetchall()
    assert metrics == [
        ("s-001", Decimal("24.90"), 2, 6, 1, Decimal("12.10"), 1, Decimal("12.45")),
        ("s-002", Decimal("12.10"), 1, 1, 0, Decimal("0.00"), 0, Decimal("12.10")),
    ]
    grocery = duck.execute(
        f"SELECT sum(revenue), sum(units) FROM read_parquet("
        f"'{lake}/daily_category_sales/*/*.parquet') WHERE category = 'grocery'"
    ).fetchone()
    assert grocery == (Decimal("36.90"), 6)


def test_pyarrow_reads_the_partitioned_lake_from_s3(exported, realtime_stack) -> None:
    fs, root = open_filesystem(f"s3://{realtime_stack.bucket}/staging/scan")
    lines = DATASETS["order_lines"]
    table = pads.dataset(
        f"{root}/order_lines",
        filesystem=fs,
        format="parquet",
        schema=lines.schema,
        partitioning=pads.HivePartitioning(pa.schema([pa.field("dt", pa.date32())])),
    ).to_table()
    assert table.schema.equals(lines.schema, check_metadata=False)
    assert sorted(zip(table["order_id"].to_pylist(), table["amount"].to_pylist(), strict=True)) == [
        ("o-1", Decimal("0.10")),
        ("o-1", Decimal("24.20")),
        ("o-2", Decimal("0.60")),
        ("o-3", Decimal("12.10")),
    ]
    stock = pads.dataset(f"{root}/inventory_snapshot", filesystem=fs).to_table()
    tea = [r for r in stock.to_pylist() if (r["store_id"], r["sku"]) == ("s-001", "tea-100g")]
    # counted 10 at 10:00 UTC, then o-2 (3) and the 23:30 order (1); the 25th's sale is in the count
    assert [(r["on_hand"], r["counted_at"] is not None) for r in tea] == [(6, True)]


def test_a_late_order_is_exported_when_its_day_is_rerun(handler, realtime_stack) -> None:
    put_a_day(handler)
    bucket = realtime_stack.bucket
    first = export_all("scan", bucket)["orders"]
    arrived_days_later = NOON_PARIS + timedelta(days=2)
    invoke(
        handler,
        Stream().records(
            sale("s-002", "o-offline", NOON_PARIS, ("mug-blue", 1, "3.00")),
            arrived_at=arrived_days_later,
        ),
    )
    rerun = export_all("scan", bucket)["orders"]
    next_day = export_all("scan", bucket, DAY + timedelta(days=1))["orders"]
    assert (first.rows, rerun.rows, next_day.rows) == (3, 4, 1)
    assert rerun.files == first.files  # the day's partition rewritten in place
    duck = duckdb_connection()
    ids = duck.execute(
        f"SELECT business_date, order_id FROM read_parquet('s3://{bucket}/staging/scan/orders/"
        "*/*.parquet', hive_partitioning=true) ORDER BY ALL"
    ).fetchall()
    assert ids == [
        (DAY, "o-1"),
        (DAY, "o-2"),
        (DAY, "o-3"),
        (DAY, "o-offline"),
        (DAY + timedelta(days=1), "o-next-day"),
    ]


def test_both_sources_yield_the_same_items(handler, realtime_stack) -> None:
    put_a_day(handler)
    enable_pitr(clients()[0])

    def key(item: dict) -> tuple[str, str]:
        return item["pk"], item["sk"]

    for table in EXPORTED_TABLES:
        exported_items = sorted(pitr_source(table, realtime_stack.bucket).items(), key=key)
        scanned_items = sorted(scan_source(table).items(), key=key)
        assert exported_items == scanned_items, table
        if table is Table.FACTS:
            order = next(i for i in exported_items if i["pk"] == "ORDER#o-1")
            assert order["total"] == Decimal("24.30") and type(order["total"]) is Decimal
            assert order["lines"][0]["quantity"] == 2


def test_an_incremental_request_the_endpoint_refuses_falls_back_to_a_full_export(
    handler, realtime_stack
) -> None:
    """A window AWS refuses with a ValidationException (here: under 15 minutes, which the
    embedded AWS refuses as AWS does) is exported whole, and the source says so."""
    put_a_day(handler)
    enable_pitr(clients()[0])
    now = datetime.now(UTC)
    source = pitr_source(
        Table.FACTS,
        realtime_stack.bucket,
        incremental=ExportWindow(now - timedelta(minutes=5), now),
    )
    export = source.run()
    assert (export.export_type, export.from_manifest, len(export.data_keys)) == (
        "FULL_EXPORT",
        False,  # moto's full export writes no manifest files: the data files were listed
        1,
    )
    assert len(list(source.items())) == export.item_count


def test_export_errors_say_what_to_do(realtime_stack) -> None:
    clients()[0].update_continuous_backups(
        TableName=table_name(Table.FACTS),
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False},
    )
    with pytest.raises(ExportError, match="no point-in-time recovery: enable it"):
        pitr_source(Table.FACTS, realtime_stack.bucket).run()
    enable_pitr(clients()[0])
    with pytest.raises(ExportError, match="S3NoSuchBucket: The specified bucket does not exist"):
        pitr_source(Table.FACTS, "no-such-bucket").run()


def test_the_converter_streams_50k_items_in_bounded_memory(tmp_path: Path) -> None:
    """A 50k-item export file (over 15 MB of JSON) is decoded line by line: the peak of Python
    allocations stays a small constant (about 0.1 MB measured), whatever the file's size. Read
    from a local file: the embedded AWS serves S3 from this process, so its own buffers would
    be traced too (the S3 path is the same ``iter_export_items`` over a ``StreamingBody``)."""
    path = tmp_path / "export.json.gz"
    template = {
        "pk": "ORDER#o",
        "sk": "ORDER",
        "total": Decimal("24.30"),
        "lines": [
            {"sku": f"sku-{n}", "quantity": 1, "unit_price": Decimal("8.10")} for n in range(3)
        ],
        "tags": {"a", "b"},
    }
    unpacked = 0
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for n in range(50_000):
            item = serialize_item(template | {"pk": f"ORDER#o-{n}"})
            unpacked += out.write(json.dumps({"Item": item}) + "\n")
    assert unpacked > 15 * 1024 * 1024

    tracemalloc.start()
    try:
        count, total = 0, Decimal(0)
        with path.open("rb") as stream:
            for item in iter_export_items(stream):
                count += 1
                total += item["total"]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (count, total) == (50_000, Decimal("1215000.00"))
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes for {unpacked} bytes of JSON"


def test_tables_have_pitr_and_the_export_refuses_one_without(realtime_stack: Any) -> None:
    """The tables are made as the template declares them (PITR on); a table whose PITR is off
    is refused, and left off: the export does not reconfigure a table the template owns."""
    dynamodb, _ = clients()
    for table in EXPORTED_TABLES:
        require_point_in_time_recovery(dynamodb, table_name(table))
    facts = table_name(Table.FACTS)
    dynamodb.update_continuous_backups(
        TableName=facts, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False}
    )
    with pytest.raises(PointInTimeRecoveryOffError, match=f"recovery of {facts} is DISABLED"):
        require_point_in_time_recovery(dynamodb, facts)
    backups = dynamodb.describe_continuous_backups(TableName=facts)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "DISABLED"


def test_an_order_arriving_during_the_export_is_reconciled_on_the_tables(
    handler, realtime_stack
) -> None:
    """The orders were staged, then an offline POS synced one more sale of the day before the
    audit: the staged snapshot's orders and metric disagree for s-002, the tables agree, so the
    audit passes on the tables and says so; the rerun stages the sale."""
    from storepulse.export.quality import audit_day
    from storepulse.export.quality.live import TABLES, settle, table_revenue
    from storepulse.export.quality.suites import read_staged, reconciliation_frame

    put_a_day(handler)
    bucket = realtime_stack.bucket
    root = f"s3://{bucket}/staging/scan"
    orders = export_all("scan", bucket)["orders"]  # the orders' snapshot, before the sale
    later = Stream()
    later.next_sequence += 1_000  # after put_a_day's records on the shard
    invoke(
        handler,
        later.records(
            sale("s-002", "o-offline", NOON_PARIS, ("mug-blue", 1, "3.00")),
            arrived_at=NOON_PARIS + timedelta(hours=13),
        ),
    )
    metrics = write_datasets(  # the metrics' snapshot, after it
        scan_source(Table.METRICS).items(), datasets_of(Table.METRICS), DAY, root
    )["daily_store_metrics"]
    fs, _ = open_filesystem(root)
    staged = {"orders": orders, "daily_store_metrics": metrics}
    tables = {name: read_staged(fs, report.files) for name, report in staged.items()}
    # Read as the nightly export's audit reads: the deployment principal, IAM enforced.
    deployer = DEPLOYER.session().resource("dynamodb")
    live = table_revenue(
        deployer.Table(table_name(Table.FACTS)), deployer.Table(table_name(Table.METRICS)), DAY
    )

    frame = reconciliation_frame(tables["orders"], tables["daily_store_metrics"])
    torn = {r["store_id"]: r for r in frame.to_pylist()}["s-002"]
    assert torn["metric_revenue"] - torn["order_revenue"] == Decimal("3.00")
    now = live(["s-001", "s-002"])
    assert now["s-002"].agrees and now["s-002"].orders == torn["metric_revenue"]
    assert (
        now["s-001"].orders
        == {r["store_id"]: r for r in frame.to_pylist()}["s-001"]["order_revenue"]
    )
    settled = {r["store_id"]: r["compared"] for r in settle(frame, live).to_pylist()}
    assert settled["s-002"] == TABLES

    reference = Reference(frozenset({"s-001", "s-002"}), frozenset({"EUR"}), "Europe/Paris")
    staged_reports = {
        name: StagedDataset(name, r.rows, r.bytes, r.files, r.rows) for name, r in staged.items()
    }
    assert audit_day(tables, DAY, reference, staged_reports, live).success
    assert not audit_day(tables, DAY, reference, staged_reports).success
