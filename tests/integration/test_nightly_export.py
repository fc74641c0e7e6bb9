"""The nightly export on the embedded AWS: real orders through the Lambda handler, then stage,
audit and publish a day as the DAG's tasks do (with the library functions), and once the whole
``nightly_export`` DAG with ``dag.test()``.

What is shown: a published day read back with DuckDB (hive partitioning) and with pyarrow equals
the DynamoDB items; rerunning a day changes nothing; a crash between staging and publish (or in
the middle of a publish) leaves the previous partition intact and the rerun completes it; bad
data fails the audit, publishes nothing and alerts through SNS; both strategies agree.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pyarrow.dataset as pads
import pytest

from storepulse.config import settings
from storepulse.export.datasets import DATASETS, datasets_of
from storepulse.export.publish import PublishReport, publish_partition
from storepulse.export.quality import AuditFailedError, AuditResult, Reference, audit_staged
from storepulse.export.sources import (
    Backoff,
    PointInTimeExportSource,
    ScanSource,
    exported_items,
    require_point_in_time_recovery,
)
from storepulse.export.staging import StagedDataset, stage_table
from storepulse.lake.filesystem import open_filesystem
from storepulse.lake.manifest import current_files, current_uris, read_manifest
from storepulse.lake.paths import CURATED, export_prefix, staging_root
from storepulse.lake.tables import ensure_curated_table, glue_database_name
from storepulse.layout import Table, order_key, table_name
from storepulse.settings import SettingsStore, load_catalog
from storepulse_local import dynamodb_export
from tests.dag_runs import airflow_home, run_dags, shifted_clock
from tests.integration.conftest import invoke
from tests.integration.test_export import DAY, clients, put_a_day
from tests.integration.test_stream_processor import NOON_PARIS, Stream, sale
from tests.lake import duckdb_connection

EXPORTED_TABLES = (Table.FACTS, Table.METRICS, Table.INVENTORY)
FAST_POLL = Backoff(first=0.1, factor=2.0, maximum=1.0, timeout=60)


# --- the DAG's steps, with the library functions ------------------------------------------------


@dataclass
class DayRun:
    """What one run of a day did: staged reports, the audit, what was published."""

    run_id: str
    staged: dict[str, StagedDataset]
    audit: AuditResult
    published: dict[str, PublishReport]


def _items(
    strategy: str, table: Table, bucket: str, run_id: str, try_number: int
) -> Callable[[], Iterable[Any]]:
    dynamodb, s3 = clients()
    if strategy == "scan":
        return ScanSource(dynamodb, table_name(table), total_segments=3).items
    require_point_in_time_recovery(dynamodb, table_name(table))  # as the DAG's export task
    prefix = export_prefix(run_id, table.value, try_number)
    source = PointInTimeExportSource(
        dynamodb, s3, table_name(table), bucket, prefix, backoff=FAST_POLL
    )
    export = source.run()
    return lambda: exported_items(s3, export)


def stage_day(
    bucket: str, run_id: str, day: date, strategy: str, try_number: int = 1
) -> dict[str, StagedDataset]:
    fs, root = open_filesystem(staging_root(bucket, run_id))
    staged: dict[str, StagedDataset] = {}
    for table in EXPORTED_TABLES:
        items = _items(strategy, table, bucket, run_id, try_number)
        staged |= stage_table(items, datasets_of(table), day, root, fs)
    return staged


def audit_day_as_the_dag_does(
    stack: Any, day: date, staged: dict[str, StagedDataset], run_id: str
) -> AuditResult:
    """The audit task's library call: suites, results in the lake, the alert when it fails."""
    fs, root = open_filesystem(f"s3://{stack.bucket}")
    reference = Reference.of(load_catalog(SettingsStore.connect().table, rules=False))

    def send_alert(alert: dict[str, Any]) -> None:
        stack.sns.publish(
            TopicArn=stack.topic_arn,
            Subject=alert["subject"],
            Message=alert["message"],
            MessageAttributes={
                k: {"DataType": "String", "StringValue": v} for k, v in alert["attributes"].items()
            },
        )

    context = {"run_id": run_id}
    try:
        return audit_staged(
            fs, root, stack.bucket, day, reference, staged, context=context, send_alert=send_alert
        )
    except AuditFailedError as exc:
        return exc.result


def publish_day(stack: Any, day: date, staged: dict[str, StagedDataset], run_id: str) -> dict:
    s3, glue = clients()[1], _client("glue")
    reports = {}
    for name, report in staged.items():
        reports[name] = publish_partition(
            s3, stack.bucket, DATASETS[name], day, report, run_id=run_id
        )
        ensure_curated_table(glue, glue_database_name("dev"), DATASETS[name], stack.bucket)
    return reports


def run_day(
    stack: Any,
    day: date = DAY,
    strategy: str = "pitr",
    run_id: str | None = None,
    try_number: int = 1,
) -> DayRun:
    """One run of the DAG for ``day`` (a retry of a run: same run id, next try number)."""
    run_id = run_id or f"manual__{uuid.uuid4().hex[:8]}"
    staged = stage_day(stack.bucket, run_id, day, strategy, try_number)
    result = audit_day_as_the_dag_does(stack, day, staged, run_id)
    published = publish_day(stack, day, staged, run_id) if result.success else {}
    return DayRun(run_id, staged, result, published)


def _client(service: str) -> Any:
    from storepulse.aws import FAIL_FAST_CONFIG, client

    return client(service, config=FAIL_FAST_CONFIG)


# --- reading the lake back ---------------------------------------------------------------------


def curated_fs(bucket: str) -> tuple[Any, str]:
    return open_filesystem(f"s3://{bucket}/{CURATED}")


def object_bytes(s3: Any, bucket: str, keys: Iterable[str]) -> list[bytes]:
    return [s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys]


def partition_objects(s3: Any, bucket: str, dataset: str, day: date = DAY) -> dict[str, bytes]:
    prefix = f"{CURATED}/{dataset}/dt={day.isoformat()}/"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def dynamodb_orders(stack: Any, day: date) -> dict[str, tuple[str, Decimal, int]]:
    items = stack.table(Table.FACTS).scan(ConsistentRead=True)["Items"]
    return {
        i["order_id"]: (i["store_id"], i["total"], int(i["units"]))
        for i in items
        if i.get("type") == "order" and i["business_date"] == day.isoformat()
    }


def data_quality_alerts(stack: Any) -> list[dict[str, Any]]:
    """Data-quality notifications in the inbox (the handler's low-stock alerts are skipped)."""
    found = []
    for _ in range(5):
        batch = stack.alerts()
        if not batch:
            break
        for body in batch:
            if body["MessageAttributes"]["type"]["Value"] == "data_quality":
                found.append(body)
    return found


def late_sale(handler: Any) -> None:
    """An order of the day that reaches the stream a day late (after ``put_a_day``'s records:
    later sequence numbers, or the handler would take it for a replay)."""
    stream = Stream()
    stream.next_sequence += 1_000
    invoke(
        handler,
        stream.records(
            sale("s-002", "o-late", NOON_PARIS, ("mug-blue", 1, "3.00")),
            arrived_at=NOON_PARIS + timedelta(days=1),
        ),
    )


# --- tests -------------------------------------------------------------------------------------


@pytest.fixture
def a_day(handler: Any, realtime_stack: Any) -> Any:
    put_a_day(handler)
    return realtime_stack


def test_a_published_day_read_back_equals_dynamodb(a_day) -> None:
    stack = a_day
    run = run_day(stack)
    assert run.audit.success, run.audit.summary()
    assert run.audit.evaluated > 100 and len(run.audit.suites) == 2 * len(DATASETS) + 1
    assert set(run.published) == set(DATASETS)
    expected = dynamodb_orders(stack, DAY)
    assert sorted(expected) == ["o-1", "o-2", "o-3"]

    fs, root = curated_fs(stack.bucket)
    duck = duckdb_connection()
    uris = current_uris(fs, root, "orders", [DAY])
    rows = duck.execute(
        "SELECT order_id, store_id, total, units, dt "
        "FROM read_parquet(?, hive_partitioning = true) ORDER BY order_id",
        [uris],
    ).fetchall()
    assert {o: (s, t, u) for o, s, t, u, _ in rows} == expected
    assert {str(dt) for *_, dt in rows} == {DAY.isoformat()}
    assert all(type(total) is Decimal for _, _, total, _, _ in rows)

    lines = pads.dataset(
        current_files(fs, root, "order_lines", DAY),
        filesystem=fs,
        format="parquet",
        schema=DATASETS["order_lines"].schema,
    ).to_table()
    facts = stack.table(Table.FACTS)
    for order_id in expected:
        item = facts.get_item(Key=order_key(order_id).as_item())["Item"]
        exported = sorted(
            (r["line_number"], r["sku"], r["quantity"], r["unit_price"])
            for r in lines.to_pylist()
            if r["order_id"] == order_id
        )
        assert exported == [
            (n, line["sku"], int(line["quantity"]), line["unit_price"])
            for n, line in enumerate(item["lines"], start=1)
        ]

    manifest = read_manifest(fs, root, "orders", DAY)
    assert manifest is not None
    assert (manifest.rows, manifest.schema_version, manifest.run_id) == (3, 1, run.run_id)
    assert manifest.files == (f"part-{manifest.token}-00000.parquet",)
    assert set(partition_objects(stack.s3, stack.bucket, "orders")) == {
        f"{CURATED}/orders/dt={DAY.isoformat()}/{name}"
        for name in (*manifest.files, "_manifest.json")
    }


def test_glue_catalog_and_quality_results_are_in_place(a_day) -> None:
    stack = a_day
    run_day(stack)
    glue = _client("glue")
    database = glue_database_name(settings().env)
    table = glue.get_table(DatabaseName=database, Name="orders")["Table"]
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert columns["total"] == "decimal(18,2)" and columns["occurred_at"] == "timestamp"
    assert (columns["business_date"], columns["units"], columns["order_id"]) == (
        "date",
        "bigint",
        "string",
    )
    assert table["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    assert table["Parameters"]["storepulse.schema_version"] == "1"
    assert "ParquetHiveSerDe" in table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
    template = table["Parameters"]["storage.location.template"]  # days are projected
    location = f"s3://{stack.bucket}/{CURATED}/orders/dt={DAY.isoformat()}/"
    assert template.replace("${dt}", DAY.isoformat()) == location
    assert table["Parameters"]["projection.dt.range"].endswith(",NOW")
    assert {t["Name"] for t in glue.get_tables(DatabaseName=database)["TableList"]} == set(DATASETS)

    quality = f"_quality/orders/dt={DAY.isoformat()}"
    result = json.loads(
        stack.s3.get_object(Bucket=stack.bucket, Key=f"{quality}/result.json")["Body"].read()
    )
    assert result["success"] is True and set(result["suites"]) == {"orders", "orders.partition"}
    page = stack.s3.get_object(Bucket=stack.bucket, Key=f"{quality}/index.html")["Body"].read()
    assert b"order_id is unique" in page
    summary = f"_quality/_summary/dt={DAY.isoformat()}/index.html"
    assert b"reconciliation" in stack.s3.get_object(Bucket=stack.bucket, Key=summary)["Body"].read()


def test_rerunning_a_day_changes_nothing(a_day) -> None:
    stack = a_day
    first = run_day(stack)
    before = {name: partition_objects(stack.s3, stack.bucket, name) for name in DATASETS}
    second = run_day(stack)
    after = {name: partition_objects(stack.s3, stack.bucket, name) for name in DATASETS}
    assert after == before  # same keys, same bytes, the manifests included
    assert not any(report.changed for report in second.published.values())
    assert {n: r.rows for n, r in second.published.items()} == {
        n: r.rows for n, r in first.published.items()
    }
    assert {r.removed for r in second.published.values()} == {0}


def test_a_crash_between_staging_and_publish_keeps_the_previous_partition(a_day, handler) -> None:
    stack = a_day
    run_day(stack)
    published = partition_objects(stack.s3, stack.bucket, "orders")
    late_sale(handler)
    run_id = "scheduled__2026-11-26T00_00_00"
    staged = stage_day(stack.bucket, run_id, DAY, "pitr")
    assert audit_day_as_the_dag_does(stack, DAY, staged, run_id).success
    # the worker dies here: nothing published yet
    assert partition_objects(stack.s3, stack.bucket, "orders") == published
    fs, root = curated_fs(stack.bucket)
    assert read_manifest(fs, root, "orders", DAY).rows == 3

    rerun = run_day(
        stack, run_id=run_id, try_number=2
    )  # the retry stages again and completes the publish
    assert rerun.published["orders"].changed and rerun.published["orders"].removed == 1
    assert read_manifest(fs, root, "orders", DAY).rows == 4
    now = partition_objects(stack.s3, stack.bucket, "orders")
    assert not set(now) & (
        set(published) - {f"{CURATED}/orders/dt={DAY.isoformat()}/_manifest.json"}
    )
    duck = duckdb_connection()
    ids = duck.execute(
        "SELECT order_id FROM read_parquet(?) ORDER BY 1", [current_uris(fs, root, "orders", [DAY])]
    ).fetchall()
    assert [i for (i,) in ids] == ["o-1", "o-2", "o-3", "o-late"]


def test_a_crash_in_the_middle_of_a_publish_is_invisible_to_readers(
    a_day, handler, monkeypatch
) -> None:
    """New files copied, manifest not yet written: readers following the manifest still see
    the previous files only; the rerun commits and removes the old files."""
    stack = a_day
    run_day(stack)
    fs, root = curated_fs(stack.bucket)
    old_files = current_files(fs, root, "orders", DAY)
    late_sale(handler)
    staged = stage_day(stack.bucket, "run-2", DAY, "scan")
    s3 = clients()[1]

    def crash(**kwargs: Any) -> None:
        raise ConnectionError("worker lost before the manifest")

    with monkeypatch.context() as patched:
        patched.setattr(s3, "put_object", crash)
        with pytest.raises(ConnectionError):
            publish_partition(
                s3, stack.bucket, DATASETS["orders"], DAY, staged["orders"], run_id="run-2"
            )
    listed = partition_objects(stack.s3, stack.bucket, "orders")
    assert len([k for k in listed if k.endswith(".parquet")]) == 2  # old and new side by side
    assert current_files(fs, root, "orders", DAY) == old_files  # readers: the old ones only

    report = publish_partition(
        clients()[1], stack.bucket, DATASETS["orders"], DAY, staged["orders"], run_id="run-2"
    )
    assert (report.changed, report.removed, report.rows) == (True, 1, 4)
    assert [k.rsplit("/", 1)[-1] for k in partition_objects(stack.s3, stack.bucket, "orders")] == [
        "_manifest.json",
        report.files[0].rsplit("/", 1)[-1],
    ]


def _negative_quantity(stack: Any) -> None:
    item = stack.table(Table.FACTS).get_item(Key=order_key("o-2").as_item())["Item"]
    item["lines"][0]["quantity"] = Decimal(-3)
    stack.table(Table.FACTS).put_item(Item=item)


def _duplicated_order_id(stack: Any) -> None:
    item = stack.table(Table.FACTS).get_item(Key=order_key("o-2").as_item())["Item"]
    stack.table(Table.FACTS).put_item(Item=item | {"pk": "ORDER#o-2-resent"})


def _missing_key(stack: Any) -> None:
    item = stack.table(Table.FACTS).get_item(Key=order_key("o-2").as_item())["Item"]
    del item["order_id"]
    stack.table(Table.FACTS).put_item(Item=item)


def _revenue_mismatch(stack: Any) -> None:
    metrics = stack.table(Table.METRICS)
    key = {"pk": "S#s-001#DAY#2026", "sk": DAY.isoformat()}
    item = metrics.get_item(Key=key)["Item"]
    metrics.put_item(Item=item | {"revenue": item["revenue"] + Decimal("10.00")})


BAD_DATA = {
    "negative quantity": (_negative_quantity, "order_lines: quantity >= 1"),
    "duplicated order id": (_duplicated_order_id, "orders: order_id is unique"),
    "missing key": (_missing_key, "orders: order_id is never null"),
    "revenue mismatch": (
        _revenue_mismatch,
        "reconciliation: the day's order revenue equals the revenue metric, per store",
    ),
}


def publish_unaudited(stack: Any, day: date = DAY) -> dict[str, PublishReport]:
    """The day staged and published without its audit: a lake to compare with when the audit
    itself is not what a test is about (a good day's audit: the tests above)."""
    run_id = f"manual__{uuid.uuid4().hex[:8]}"
    return publish_day(stack, day, stage_day(stack.bucket, run_id, day, "pitr"), run_id)


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_fails_the_audit_publishes_nothing_and_alerts(a_day, case: str) -> None:
    stack = a_day
    good = publish_unaudited(stack)  # its audit was ~7 s of CPU, nearly half the test
    lake_before = {name: partition_objects(stack.s3, stack.bucket, name) for name in DATASETS}
    inject, expected_failure = BAD_DATA[case]
    inject(stack)
    data_quality_alerts(stack)  # drain what came before

    bad = run_day(stack)
    assert not bad.audit.success and bad.published == {}
    failures = [str(f) for f in bad.audit.failures]
    assert any(f.startswith(expected_failure) for f in failures), failures
    lake_after = {name: partition_objects(stack.s3, stack.bucket, name) for name in DATASETS}
    assert lake_after == lake_before  # the published lake untouched
    assert any(good["orders"].token in key for key in lake_after["orders"])

    (alert,) = data_quality_alerts(stack)
    assert alert["MessageAttributes"]["severity"]["Value"] == "critical"
    message = json.loads(alert["Message"])
    assert message["type"] == "data_quality" and message["day"] == DAY.isoformat()
    assert any(f.startswith(expected_failure) for f in message["details"]["failed"])
    result = json.loads(
        stack.s3.get_object(Bucket=stack.bucket, Key=f"_quality/_summary/dt={DAY}/result.json")[
            "Body"
        ].read()
    )
    assert result["success"] is False and result["failed"] == failures


def test_the_two_strategies_stage_identical_parquet(a_day) -> None:
    stack = a_day
    pitr = stage_day(stack.bucket, "run-pitr", DAY, "pitr")
    scan = stage_day(stack.bucket, "run-scan", DAY, "scan")
    s3 = clients()[1]

    def keys(report: StagedDataset) -> list[str]:
        return [path.split("/", 1)[1] for path in report.files]

    for name in DATASETS:
        assert pitr[name].rows == scan[name].rows == pitr[name].source_rows, name
        assert object_bytes(s3, stack.bucket, keys(pitr[name])) == object_bytes(
            s3, stack.bucket, keys(scan[name])
        ), name
    first = publish_day(stack, DAY, pitr, "run-pitr")
    second = publish_day(stack, DAY, scan, "run-scan")
    assert all(not r.changed and r.token == first[n].token for n, r in second.items())


# --- the whole DAG -----------------------------------------------------------------------------


@pytest.fixture
def deployed_stack_outputs(realtime_stack: Any) -> None:
    """The outputs ``resolve`` reads, from a stack named like the real one (the tables, bucket
    and topic were made by ``realtime_stack``; deploying the real template is test_deploy's)."""
    names = {t: table_name(t) for t in Table}
    outputs = {
        "FactsTable": names[Table.FACTS],
        "MetricsTable": names[Table.METRICS],
        "InventoryTable": names[Table.INVENTORY],
        "SettingsTable": names[Table.SETTINGS],
        "LakeBucket": realtime_stack.bucket,
        "AlertTopicArn": realtime_stack.topic_arn,
    }
    template = {
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "m"}}},
        "Outputs": {k: {"Value": v} for k, v in outputs.items()},
    }
    _client("cloudformation").create_stack(
        StackName=f"storepulse-{settings().env}-realtime", TemplateBody=json.dumps(template)
    )


def test_the_dag_publishes_a_good_day_and_refuses_a_bad_one(
    a_day, deployed_stack_outputs, tmp_path, embedded_aws: str
) -> None:
    stack = a_day
    _negative_quantity_on(stack, DAY + timedelta(days=1))
    env = airflow_home(tmp_path / "airflow", embedded_aws)
    # a run triggered at D+1 00:00 UTC covers the interval [D, D+1): business day D in Paris
    good, bad = run_dags(
        env,
        [
            {"dag_id": "nightly_export", "logical_date": _run_after(day), "conf": conf}
            for day, conf in [(DAY, {"strategy": "pitr"}), (DAY + timedelta(days=1), {})]
        ],
        timeout=900,  # two nightly runs through dag.test(): 273 s at load 9, over 300 at 15
    )

    assert good["state"] == "success", good
    late = good["tasks"].pop("republish_late_days")
    assert late == "skipped"  # no late day: nothing to clear (mapped over none)
    assert set(good["tasks"].values()) == {"success"}
    assert len(good["events"]) == len(DATASETS)
    orders = good["events"]["s3://storepulse/curated/orders"]
    assert (orders["day"], orders["rows"], len(orders["files"])) == (DAY.isoformat(), 3, 1)
    fs, root = curated_fs(stack.bucket)
    assert read_manifest(fs, root, "orders", DAY).rows == 3

    assert bad["state"] == "failed", bad
    assert bad["tasks"]["audit"] == "failed"
    assert {bad["tasks"][f"publish_{name}"] for name in DATASETS} == {"upstream_failed"}
    assert bad["events"] == {}
    assert read_manifest(fs, root, "orders", DAY + timedelta(days=1)) is None
    (alert,) = data_quality_alerts(stack)
    failed = json.loads(alert["Message"])["details"]["failed"]
    assert any(f.startswith("order_lines: quantity >= 1") for f in failed), failed


def _run_after(day: date) -> str:
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC).isoformat()


def _negative_quantity_on(stack: Any, day: date) -> None:
    """An order of ``day`` whose line sells -2 units (written straight into the facts table)."""
    item = stack.table(Table.FACTS).get_item(Key=order_key("o-1").as_item())["Item"]
    bad = item | {
        "pk": "ORDER#o-bad",
        "order_id": "o-bad",
        "business_date": day.isoformat(),
        "gsi1pk": f"ORDERS#{day.isoformat()}",
        "lines": [item["lines"][0] | {"quantity": Decimal(-2)}],
        "total": Decimal("0.00"),
        "units": Decimal(-2),
    }
    stack.table(Table.FACTS).put_item(Item=bad)


# --- a late day, re-published through Airflow --------------------------------------------------


class SharedClock:
    """One fictional time, ticking, for the embedded AWS's recovery history (this process) and
    the Airflow a test starts (``shifted_clock``): the export windows, the recovery window and
    the tasks' "now" agree whatever the real date and hour."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return datetime.now(UTC).timestamp() + self.offset

    def travel(self, to: datetime) -> None:
        self.offset = to.timestamp() - datetime.now(UTC).timestamp()

    def airflow(self, env: dict[str, str]) -> dict[str, str]:
        return shifted_clock(env, self.offset)


@pytest.fixture
def shared_clock() -> Iterator[SharedClock]:
    """Set before the tables are made: their recovery history starts the evening before DAY."""
    clock = SharedClock()
    clock.travel(datetime(2026, 11, 25, 20, 0, tzinfo=UTC))
    dynamodb_export.set_clock(clock)
    yield clock
    dynamodb_export.set_clock(None)


def _partition_etags(stack: Any, skip: date | None = None) -> dict[str, str]:
    """ETag of every object of every curated day partition (but ``skip``'s)."""
    pages = stack.s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix=CURATED)
    return {
        o["Key"]: o["ETag"]
        for page in pages
        for o in page.get("Contents", [])
        if "/dt=" in o["Key"] and (skip is None or f"/dt={skip.isoformat()}/" not in o["Key"])
    }


def _published_orders(stack: Any, day: date) -> dict[str, tuple[str, Decimal, int]]:
    fs, root = curated_fs(stack.bucket)
    rows = pads.dataset(current_files(fs, root, "orders", day), filesystem=fs).to_table()
    return {r["order_id"]: (r["store_id"], r["total"], r["units"]) for r in rows.to_pylist()}


def _store_revenue(stack: Any, day: date) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """Per store: the published daily_store_metrics revenue, and the metrics table's."""
    fs, root = curated_fs(stack.bucket)
    files = current_files(fs, root, "daily_store_metrics", day)
    rows = pads.dataset(files, filesystem=fs).to_table().to_pylist()
    table = stack.table(Table.METRICS)
    live = {
        store: table.get_item(Key={"pk": f"S#{store}#DAY#{day.year}", "sk": day.isoformat()})[
            "Item"
        ]["revenue"]
        for store in ("s-001", "s-002")
    }
    return {r["store_id"]: r["revenue"] for r in rows}, live


@pytest.mark.slow  # four nightly runs in a throwaway Airflow: minutes
def test_a_late_sale_republishes_its_day_through_airflow(
    shared_clock, handler, realtime_stack, deployed_stack_outputs, tmp_path, embedded_aws: str
) -> None:
    stack, env = realtime_stack, airflow_home(tmp_path / "airflow", embedded_aws)
    day, next_day = DAY, DAY + timedelta(days=1)
    log: list[str] = []

    def night(at: datetime, day: date, run_id: str | None = None) -> dict[str, Any]:
        """The scheduled run of ``day`` (with ``run_id``: that manual run of the day's interval)
        or that run again, started at ``at``."""
        shared_clock.travel(at)
        request = {"dag_id": "nightly_export", "scheduled": True, "run_after": _run_after(day)}
        request |= {"run_id": run_id} if run_id else {}
        log.clear()
        (run,) = run_dags(shared_clock.airflow(env), [request], timeout=900, output=log)
        assert run["state"] == "success", run
        return run

    # D: the day's events, then a manual run of D (triggered with D's interval, as through the
    # REST API): it holds D's logical date, so D has no scheduled run (auto: the tables'
    # recovery history covers it)
    shared_clock.travel(datetime(2026, 11, 26, 23, 45, tzinfo=UTC))
    put_a_day(handler)
    manual_d = "api__2026-11-27T01:00:00__0d0d0d0d"
    first = night(datetime(2026, 11, 27, 1, 0, tzinfo=UTC), day, run_id=manual_d)
    assert first["run_id"] == manual_d
    assert sorted(_published_orders(stack, day)) == ["o-1", "o-2", "o-3"]

    # a POS syncs a sale of D the next morning
    shared_clock.travel(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
    late_sale(handler)
    assert "o-late" in dynamodb_orders(stack, day)

    # D+1's night sees D's items change and clears the run holding D (the manual one: a
    # scheduled run of D would collide with it), which nobody else re-runs
    second = night(datetime(2026, 11, 28, 1, 0, tzinfo=UTC), next_day)
    cleared = {r["trigger_run_id"] for r in second["xcoms"]["late_days.return_value"]}
    assert cleared == {manual_d}, second["xcoms"]["late_days.return_value"]
    assert f"clearing its finished run {manual_d}" in log[0]
    assert {
        state for task, state in second["tasks"].items() if task.startswith("republish_late_days")
    } == {"success"}
    runs = second["runs"]
    assert runs[manual_d]["state"] == "queued"  # cleared: the scheduler starts it again
    assert runs[manual_d]["interval"] == [
        "2026-11-26 00:00:00+00:00",
        "2026-11-27 00:00:00+00:00",
    ]
    # no run besides them and those D's night created for its own late days (before D)
    earlier = {r["trigger_run_id"] for r in first["xcoms"].get("late_days.return_value") or []}
    assert set(runs) == {first["run_id"], second["run_id"]} | cleared | earlier, (earlier, runs)
    assert sorted(_published_orders(stack, next_day)) == ["o-next-day"]
    others = _partition_etags(stack, skip=day)

    # the cleared run: D again, its own interval, audited and re-published
    republished = night(datetime(2026, 11, 28, 1, 10, tzinfo=UTC), day, run_id=manual_d)
    assert republished["run_id"] == manual_d
    assert republished["xcoms"]["late_days.return_value"] == []
    assert "(a rerun or backfill triggers none)" in log[0]
    assert _published_orders(stack, day) == dynamodb_orders(stack, day)
    assert "o-late" in _published_orders(stack, day)
    assert "o-late" not in _published_orders(stack, next_day)
    published, live = _store_revenue(stack, day)
    assert published == live
    assert _partition_etags(stack, skip=day) == others  # only D changed

    # a rerun of D+1 the next night triggers nothing and changes nothing
    before = _partition_etags(stack)
    rerun = night(datetime(2026, 11, 29, 1, 0, tzinfo=UTC), next_day)
    assert rerun["run_id"] == second["run_id"]
    assert rerun["xcoms"]["late_days.return_value"] == []
    assert "(a rerun or backfill triggers none)" in log[0]
    republish = {s for t, s in rerun["tasks"].items() if t.startswith("republish_late_days")}
    assert "success" not in republish, rerun["tasks"]
    assert {r: v["state"] for r, v in rerun["runs"].items()} == {
        r: v["state"] for r, v in republished["runs"].items()
    } | {rerun["run_id"]: "success"}  # D's run not cleared again, no run added
    assert _partition_etags(stack) == before
