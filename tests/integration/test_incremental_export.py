"""The incremental nightly export on the embedded AWS: its incremental exports as AWS makes them
(the window, the view types, the format, the refusals), and a day's partitions built from the
changes equal to the full export's, byte for byte, late events included.

The embedded AWS's recovery history runs on the test's clock (``dynamodb_export.set_clock``),
so a day's window is real: tables made the evening before, writes during the day, the export
after it.
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from storepulse.aws import FAIL_FAST_CONFIG
from storepulse.clock import FrozenClock
from storepulse.export.datasets import DATASETS, datasets_of
from storepulse.export.incremental import (
    plan_table,
    put_snapshot_as_of,
    recovery_window,
    snapshot_as_of,
    stage_changes,
)
from storepulse.export.publish import publish_partition
from storepulse.export.quality.sample import check_sample, check_samples
from storepulse.export.quality.suites import read_staged
from storepulse.export.sources import CompletedExport, ExportWindow
from storepulse.export.staging import stage_export
from storepulse.lake.filesystem import open_filesystem
from storepulse.lake.manifest import current_files
from storepulse.layout import Table, table_name
from storepulse_local import dynamodb_export
from storepulse_local.iam import DEPLOYER
from tests.integration.conftest import STORES, invoke
from tests.integration.test_export import FAST_POLL, object_bytes, put_a_day
from tests.integration.test_stream_processor import Stream, sale

DAY = date(2026, 11, 26)  # put_a_day's business day
TIMEZONES = tuple(STORES.values())  # Paris and New York: the 26th opens at 25th 23:00 UTC
DAY_TABLES = (Table.FACTS, Table.METRICS)


def clients() -> tuple[Any, Any]:
    """DynamoDB and S3 as the nightly export calls them: the deployment principal's keys, IAM
    enforced (infra/iam/deployment-policy.json must grant every call)."""
    session = boto3.Session(
        aws_access_key_id=DEPLOYER.access_key_id,
        aws_secret_access_key=DEPLOYER.secret_access_key,
        region_name="us-east-1",
    )
    return (
        session.client("dynamodb", config=FAIL_FAST_CONFIG),
        session.client("s3", config=FAIL_FAST_CONFIG),
    )


@pytest.fixture
def history_clock() -> Iterator[FrozenClock]:
    """The embedded AWS's clock: the tables are made at 20:00 UTC the evening before."""
    clock = FrozenClock(datetime(2026, 11, 25, 20, 0, tzinfo=UTC))
    dynamodb_export.set_clock(lambda: clock().timestamp())
    yield clock
    dynamodb_export.set_clock(None)


def _at(clock: FrozenClock, moment: datetime) -> None:
    clock.now = moment


def _incremental(table: Table, bucket: str, window: ExportWindow, view: str) -> dict[str, Any]:
    dynamodb = clients()[0]
    arn = dynamodb.describe_table(TableName=table_name(table))["Table"]["TableArn"]
    return dynamodb.export_table_to_point_in_time(
        TableArn=arn,
        S3Bucket=bucket,
        S3Prefix=f"exports/{uuid.uuid4().hex}",
        ExportFormat="DYNAMODB_JSON",
        ExportType="INCREMENTAL_EXPORT",
        IncrementalExportSpecification={
            "ExportFromTime": window.start,
            "ExportToTime": window.end,
            "ExportViewType": view,
        },
    )["ExportDescription"]


def _lines(s3: Any, bucket: str, description: dict[str, Any]) -> list[dict[str, Any]]:
    summary_key = description["ExportManifest"]
    summary = json.loads(s3.get_object(Bucket=bucket, Key=summary_key)["Body"].read())
    files = s3.get_object(Bucket=bucket, Key=summary["manifestFilesS3Key"])["Body"].read()
    lines = []
    for entry in files.decode().splitlines():
        key = json.loads(entry)["dataFileS3Key"]
        assert "/AWSDynamoDB/data/" in key  # the shared data folder, as AWS writes it
        body = gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        lines += [json.loads(line) for line in body.decode().splitlines()]
    return lines


def test_the_embedded_aws_exports_a_window_of_changes_as_aws_does(
    history_clock, realtime_stack
) -> None:
    table = realtime_stack.table(Table.INVENTORY)
    _at(history_clock, datetime(2026, 11, 26, 8, 0, tzinfo=UTC))
    table.put_item(Item={"pk": "S#s-001", "sk": "kept", "on_hand": 1})
    table.put_item(Item={"pk": "S#s-001", "sk": "gone", "on_hand": 1})
    _at(history_clock, datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
    table.update_item(
        Key={"pk": "S#s-001", "sk": "kept"},
        UpdateExpression="SET on_hand = :n",
        ExpressionAttributeValues={":n": 5},
    )
    table.delete_item(Key={"pk": "S#s-001", "sk": "gone"})
    table.put_item(Item={"pk": "S#s-001", "sk": "new", "on_hand": 7})
    _at(history_clock, datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
    table.put_item(Item={"pk": "S#s-001", "sk": "after", "on_hand": 9})  # after the window
    _at(history_clock, datetime(2026, 11, 26, 11, 0, tzinfo=UTC))
    window = ExportWindow(
        datetime(2026, 11, 26, 8, 30, tzinfo=UTC), datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    )
    described = _incremental(Table.INVENTORY, realtime_stack.bucket, window, "NEW_AND_OLD_IMAGES")
    assert (described["ExportType"], described["ExportStatus"]) == (
        "INCREMENTAL_EXPORT",
        "COMPLETED",
    )
    lines = {
        line["Keys"]["sk"]["S"]: line
        for line in _lines(realtime_stack.s3, realtime_stack.bucket, described)
    }
    assert set(lines) == {"kept", "gone", "new"}
    assert lines["kept"]["OldImage"]["on_hand"] == {"N": "1"}
    assert lines["kept"]["NewImage"]["on_hand"] == {"N": "5"}
    assert "NewImage" not in lines["gone"] and lines["gone"]["OldImage"]["sk"] == {"S": "gone"}
    assert "OldImage" not in lines["new"] and lines["new"]["NewImage"]["on_hand"] == {"N": "7"}
    assert all("WriteTimestampMicros" in line["Metadata"] for line in lines.values())
    new_only = _incremental(Table.INVENTORY, realtime_stack.bucket, window, "NEW_IMAGE")
    for line in _lines(realtime_stack.s3, realtime_stack.bucket, new_only):
        assert "OldImage" not in line


REFUSED = [
    ("2026-11-26T08:00", "2026-11-26T08:10", "ValidationException"),  # under 15 minutes
    ("2026-11-25T20:30", "2026-11-26T20:31", "ValidationException"),  # over 24 hours
    ("2026-11-26T09:00", "2026-11-26T08:00", "ValidationException"),  # backwards
    ("2026-11-25T19:00", "2026-11-25T20:30", "InvalidExportTimeException"),  # before PITR
    ("2026-11-26T20:00", "2026-11-26T23:00", "InvalidExportTimeException"),  # the future
]


def test_the_embedded_aws_refuses_the_windows_aws_refuses(history_clock, realtime_stack) -> None:
    _at(history_clock, datetime(2026, 11, 26, 21, 0, tzinfo=UTC))
    for start, end, code in REFUSED:
        window = ExportWindow(
            datetime.fromisoformat(start).replace(tzinfo=UTC),
            datetime.fromisoformat(end).replace(tzinfo=UTC),
        )
        with pytest.raises(ClientError) as refused:
            _incremental(Table.FACTS, realtime_stack.bucket, window, "NEW_IMAGE")
        assert refused.value.response["Error"]["Code"] == code, (start, end)


# --- the nightly export's incremental strategy -------------------------------------------------


def _run_incremental(table: Table, bucket: str, plan_windows: tuple[ExportWindow, ...]) -> list:
    from storepulse.export.sources import PointInTimeExportSource

    dynamodb, s3 = clients()
    exports = []
    for number, window in enumerate(plan_windows):
        source = PointInTimeExportSource(
            dynamodb,
            s3,
            table_name(table),
            bucket,
            f"exports/{uuid.uuid4().hex}/w{number}",
            incremental=window,
            backoff=FAST_POLL,
        )
        exports.append(source.run())
    return exports


def _full_export(table: Table, bucket: str) -> CompletedExport:
    from storepulse.export.sources import PointInTimeExportSource

    dynamodb, s3 = clients()
    prefix = f"exports/{uuid.uuid4().hex}"
    return PointInTimeExportSource(
        dynamodb, s3, table_name(table), bucket, prefix, backoff=FAST_POLL
    ).run()


def _night(
    bucket: str,
    day: date,
    label: str,
    clock: FrozenClock,
    tables: tuple[Table, ...] = (Table.FACTS, Table.METRICS, Table.INVENTORY),
) -> dict[str, Any]:
    """What the nightly run does for ``day`` with strategy auto, and beside it a full export
    of the same state: {data set: (full bytes, staged bytes)}, the plans, the late days. The
    staged partitions are published, and the snapshots' ``as_of`` recorded, as the DAG does."""
    dynamodb, s3 = clients()
    fs, root = open_filesystem(f"s3://{bucket}")
    result: dict[str, Any] = {"_plans": {}, "_late": set()}
    for table in tables:
        datasets = datasets_of(table)
        as_of = {
            d.name: snapshot_as_of(s3, bucket, d.name, day - timedelta(days=1))
            for d in datasets
            if d.snapshot
        }
        plan = plan_table(
            datasets, day, TIMEZONES, recovery_window(dynamodb, table_name(table)), as_of
        )
        result["_plans"][table.value] = plan
        staging = f"{root}/staging/{label}"
        full = stage_export(s3, _full_export(table, bucket), datasets, day, f"{staging}-full", fs)
        staged = full
        if plan.strategy == "incremental":
            exports = _run_incremental(table, bucket, plan.windows)
            changes = stage_changes(
                s3, exports, datasets, day, f"{staging}-incremental", fs, f"{root}/curated"
            )
            staged = changes.staged
            result["_late"] |= set(changes.late_days)
        rows = {n: read_staged(fs, r.files).to_pylist() for n, r in staged.items() if r.files}
        names = {table.value: table_name(table)}
        result["_read_back"] = result.get("_read_back", []) + check_samples(
            dynamodb, names, rows, day
        )
        for name, report in staged.items():
            result[name] = (object_bytes(s3, full[name].files), object_bytes(s3, report.files))
            publish_partition(s3, bucket, DATASETS[name], day, report, run_id=label)
            if DATASETS[name].snapshot:
                put_snapshot_as_of(s3, bucket, name, day, clock())
    return result


def _assert_same_bytes(staged: dict[str, Any]) -> None:
    for name, both in staged.items():
        if not name.startswith("_"):
            assert both[0] == both[1], name


def _strategies(night: dict[str, Any]) -> dict[str, str]:
    return {table: plan.strategy for table, plan in night["_plans"].items()}


def test_a_days_metrics_from_its_changes_equal_the_full_export(
    history_clock, handler, realtime_stack
) -> None:
    _at(history_clock, datetime(2026, 11, 26, 23, 45, tzinfo=UTC))
    put_a_day(handler)
    _at(history_clock, datetime(2026, 11, 27, 1, 0, tzinfo=UTC))
    night = _night(realtime_stack.bucket, DAY, "night-26", history_clock, (Table.METRICS,))
    assert _strategies(night) == {"metrics": "incremental"}
    _assert_same_bytes(night)
    assert night["daily_store_metrics"][1] and night["daily_category_sales"][1]
    (read_back,) = night["_read_back"]  # the audit's GetItem of a sample of the staged rows
    assert (read_back.dataset, read_back.checked, read_back.disagreeing) == (
        "daily_store_metrics",
        2,
        (),
    )
    realtime_stack.table(Table.METRICS).update_item(  # the table moves on: the row disagrees
        Key={"pk": f"S#s-001#DAY#{DAY.year}", "sk": DAY.isoformat()},
        UpdateExpression="ADD orders :one",
        ExpressionAttributeValues={":one": 1},
    )
    fs, root = open_filesystem(f"s3://{realtime_stack.bucket}/curated")
    files = current_files(fs, root, DATASETS["daily_store_metrics"], DAY)
    rows = read_staged(fs, files).to_pylist()
    moved = check_sample(clients()[0], table_name(Table.METRICS), "daily_store_metrics", rows, DAY)
    assert moved.disagreeing == (
        f"S#s-001#DAY#{DAY.year}/{DAY}: differs in average_order_value, orders",
    )
    assert not moved.failed  # one of two: logged, a late event during the run

    def bump(store: str) -> None:
        realtime_stack.table(Table.METRICS).update_item(
            Key={"pk": f"S#{store}#DAY#{DAY.year}", "sk": DAY.isoformat()},
            UpdateExpression="ADD page_views :one",
            ExpressionAttributeValues={":one": 1},
        )

    bump("s-002")  # both disagree now: read again before failing
    held = check_sample(
        clients()[0], table_name(Table.METRICS), "daily_store_metrics", rows, DAY, sleep=_no_wait
    )
    assert (len(held.disagreeing), held.moving, held.failed) == (2, (), True)
    moving = check_sample(  # s-001's day moves while it is read again: not a closed day
        clients()[0],
        table_name(Table.METRICS),
        "daily_store_metrics",
        rows,
        DAY,
        sleep=lambda _: bump("s-001"),
    )
    assert [m.split("/")[0] for m in moving.moving] == [f"S#s-001#DAY#{DAY.year}"]
    assert not moving.failed  # one of two holds still: logged


def _no_wait(seconds: float) -> None:
    """The audit's pause between re-reads, skipped: the tables hold still."""


@pytest.mark.slow  # about a minute: three nights of three tables, each exported both ways
def test_the_incremental_day_equals_the_full_export_and_a_late_event_republishes_its_day(
    history_clock, handler, realtime_stack
) -> None:
    bucket = realtime_stack.bucket
    _at(history_clock, datetime(2026, 11, 26, 1, 0, tzinfo=UTC))  # the first night: whole tables
    first = _night(bucket, DAY - timedelta(days=1), "night-25", history_clock)
    assert set(_strategies(first).values()) == {"full"}

    _at(history_clock, datetime(2026, 11, 26, 23, 45, tzinfo=UTC))  # as put_a_day's events arrive
    put_a_day(handler)  # the 26th, an order of the 25th arriving late, one of the 27th in Paris
    _at(history_clock, datetime(2026, 11, 27, 1, 0, tzinfo=UTC))
    night = _night(bucket, DAY, "night-26", history_clock)
    assert set(_strategies(night).values()) == {"incremental"}, night["_plans"]
    _assert_same_bytes(night)  # every data set, snapshots included
    assert [c.disagreeing for c in night["_read_back"]] == [()] * 5
    assert night["orders"][1] and len(night["_plans"]["facts"].windows) == 2  # 27 h: chained
    assert night["_late"] == {DAY - timedelta(days=1)}  # o-day-before: its day is re-run

    # The next morning a POS syncs a sale of the 26th: the night of the 27th sees it late.
    _at(history_clock, datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
    late_sale = sale(
        "s-001", "o-late", datetime(2026, 11, 26, 17, 0, tzinfo=UTC), ("tea-100g", 2, "3.00")
    )
    report = invoke(handler, Stream().records(late_sale, arrived_at=history_clock()))
    assert report["batchItemFailures"] == []
    _at(history_clock, datetime(2026, 11, 28, 1, 0, tzinfo=UTC))
    next_night = _night(bucket, DAY + timedelta(days=1), "night-27", history_clock)
    _assert_same_bytes(next_night)
    # the 26th; the 25th again (o-day-before arrived inside both nights' windows): a re-run
    # of an unchanged day publishes nothing new
    assert next_night["_late"] == {DAY, DAY - timedelta(days=1)}
    republished = _night(bucket, DAY, "republish-26", history_clock)  # the cleared run of the 26th
    _assert_same_bytes(republished)
    assert len(republished["_plans"]["facts"].windows) == 3  # [25th 22:00, 28th 01:00): 51 h
    assert republished["orders"][1] != night["orders"][1]  # the late sale is in the 26th
    fs, root = open_filesystem(f"s3://{bucket}/curated")
    orders = pq.read_table(current_files(fs, root, DATASETS["orders"], DAY), filesystem=fs)
    assert "o-late" in orders.column("order_id").to_pylist()


def test_a_first_run_or_a_snapshot_table_is_exported_whole(history_clock, realtime_stack) -> None:
    dynamodb = clients()[0]
    _at(history_clock, datetime(2026, 11, 27, 1, 0, tzinfo=UTC))
    recovery = recovery_window(dynamodb, table_name(Table.METRICS))
    metrics = datasets_of(Table.METRICS)
    assert plan_table(metrics, DAY, TIMEZONES, recovery).strategy == "incremental"
    first_run = plan_table(metrics, DAY - timedelta(days=1), TIMEZONES, recovery)
    assert (first_run.strategy, "a first run" in first_run.reason) == ("full", True)
    snapshot = plan_table(datasets_of(Table.INVENTORY), DAY, TIMEZONES, recovery)
    assert (snapshot.strategy, "no published inventory_snapshot" in snapshot.reason) == (
        "full",
        True,
    )
    backfill = plan_table(metrics, DAY - timedelta(days=9), TIMEZONES, recovery)
    assert (backfill.strategy, "backfill" in backfill.reason) == ("full", True)
