"""Change capture on the embedded AWS: sales put on Kinesis are counted by the stream processor,
and the tables' DynamoDB Streams carry the changes through the local Lambda runtime to the
change-capture handler, which writes them as typed Parquet under ``changes/``. Both handlers run
in-process (the mapping semantics are the runtime's; the deployed zips are the deploy's tests).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from storepulse import events as ev
from storepulse.capture import COMPACTED
from storepulse.capture.compaction import Compactor, hours_of_interval
from storepulse.capture.reader import change_keys, latest_rows, read_changes
from storepulse.config import REPO_ROOT, settings
from storepulse.deploy.intrinsics import Intrinsics
from storepulse.deploy.stack import TEMPLATE, parse_template
from storepulse.export.datasets import DATASETS
from storepulse.lake.filesystem import s3_filesystem
from storepulse.lake.freshness import FRESHNESS_KEY, read_freshness
from storepulse.lake.manifest import current_files
from storepulse.layout import Grain, Table, bucket_keys, day_bucket_key, table_name
from storepulse_local.iam import LAMBDA_SERVICE, LAMBDA_TRUST_POLICY
from storepulse_local.lambda_runtime import LocalLambdaRuntime
from tests.integration.test_stream_processor import sale as sale_of_lines

NOON_PARIS = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
PROCESSOR, CAPTURE = "storepulse-dev-stream-processor", "storepulse-dev-change-capture"
CAPTURED = (Table.FACTS, Table.METRICS, Table.INVENTORY)


def _load(function_dir: str, name: str) -> ModuleType:
    path = REPO_ROOT / "lambdas" / function_dir / "handler.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _empty_zip() -> bytes:
    buffer = io.BytesIO()
    zipfile.ZipFile(buffer, "w").close()
    return buffer.getvalue()


def sale(store: str, order: str, price: str, at: datetime = NOON_PARIS) -> ev.PosSaleV1:
    return sale_of_lines(store, order, at, ("tea-100g", 1, price))


class Pipeline:
    """The stream, both functions and their mappings (Kinesis and the three tables' streams)."""

    def __init__(self, aws: Callable[[str], Any], stack: Any, tmp_path: Path) -> None:
        self.aws, self.stack, self.tmp_path = aws, stack, tmp_path
        self.stream = settings().resource_name("events")
        kinesis = aws("kinesis")
        kinesis.create_stream(StreamName=self.stream, ShardCount=1)
        self.stream_arn = kinesis.describe_stream_summary(StreamName=self.stream)[
            "StreamDescriptionSummary"
        ]["StreamARN"]
        role = aws("iam").create_role(
            RoleName="capture-test", AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY
        )
        for name in (PROCESSOR, CAPTURE):
            aws("lambda").create_function(
                FunctionName=name,
                Runtime="python3.11",
                Role=role["Role"]["Arn"],
                Handler="handler.handler",
                Code={"ZipFile": _empty_zip()},  # in-process stand-ins run instead
            )
        self._map(self.stream_arn, PROCESSOR)
        for table in CAPTURED:
            described = aws("dynamodb").describe_table(TableName=table_name(table))["Table"]
            self._map(described["LatestStreamArn"], CAPTURE)

    def _map(self, arn: str, function: str) -> None:
        self.aws("lambda").create_event_source_mapping(
            EventSourceArn=arn,
            FunctionName=function,
            StartingPosition="TRIM_HORIZON",
            BatchSize=100,
            FunctionResponseTypes=["ReportBatchItemFailures"],
            BisectBatchOnFunctionError=True,
            MaximumRetryAttempts=3,
        )

    def put(self, *events: ev.Event) -> None:
        self.aws("kinesis").put_records(
            StreamName=self.stream,
            Records=[{"Data": e.to_json(), "PartitionKey": ev.partition_key(e)} for e in events],
        )

    def run(self, handlers: dict[str, Any], state: str = "runtime") -> LocalLambdaRuntime:
        """A runtime until every stream is caught up (the capture reads what the processor
        wrote, so twice idle), then stopped."""
        runtime = LocalLambdaRuntime(
            handlers=handlers,
            state_dir=self.tmp_path / state,
            poll_interval=0.02,
            discovery_interval=0.1,
            retry_backoff=0,
        )
        with runtime:
            runtime.run_until_idle(timeout=60)
            runtime.run_until_idle(timeout=60)
        return runtime

    def changes(self, dataset: str) -> Any:
        data = DATASETS[dataset]
        s3 = self.stack.s3
        hours = {
            (datetime.fromisoformat(p.split("dt=")[1][:10]).date(), int(p.split("hour=")[1][:2]))
            for p in self.keys(f"changes/{data.table.value}/")
        }
        return read_changes(
            s3, self.stack.bucket, data, change_keys(s3, self.stack.bucket, data, hours)
        )

    def keys(self, prefix: str) -> list[str]:
        listing = self.stack.s3.list_objects_v2(Bucket=self.stack.bucket, Prefix=prefix)
        return [o["Key"] for o in listing.get("Contents", [])]


@pytest.fixture
def pipeline(aws_client, realtime_stack, tmp_path, monkeypatch) -> Pipeline:
    # Sales dated NOON_PARIS whatever day the test runs: accepted as a backfill would be.
    monkeypatch.setenv("STOREPULSE_PLAUSIBLE_PAST_DAYS", "3650")
    return Pipeline(aws_client, realtime_stack, tmp_path)


@pytest.fixture
def handlers(pipeline: Pipeline) -> Iterator[dict[str, Any]]:
    processor = _load("stream_processor", "capture_test_processor")
    capture = _load("change_capture", "capture_test_capture")
    yield {PROCESSOR: processor.handler, CAPTURE: capture.handler}


def day_metrics_item(stack: Any, store: str) -> dict[str, Any]:
    key = bucket_keys(store, NOON_PARIS, "Europe/Paris")[Grain.DAY]
    return stack.table(Table.METRICS).get_item(Key=key.as_item())["Item"]


def test_sales_on_kinesis_become_typed_rows_in_changes(pipeline, handlers) -> None:
    pipeline.put(*(sale("s-001", f"o-{i}", "2.50") for i in range(5)), sale("s-002", "o-5", "4.00"))
    pipeline.run(handlers)

    orders = pipeline.changes("orders")
    assert orders.schema.field("total").type == DATASETS["orders"].schema.field("total").type
    assert sorted(orders.column("order_id").to_pylist()) == [f"o-{i}" for i in range(6)]
    assert set(orders.column("_op").to_pylist()) == {"INSERT"}
    key = next(k for k in pipeline.keys("changes/facts/") if "/orders/" in k)
    assert key.startswith("changes/facts/dt=") and "/hour=" in key

    (s1,) = [
        r
        for r in latest_rows(
            DATASETS["daily_store_metrics"], pipeline.changes("daily_store_metrics")
        )
        if r["store_id"] == "s-001"
    ]
    item = day_metrics_item(pipeline.stack, "s-001")
    assert s1["revenue"] == item["revenue"] == Decimal("12.50")
    assert s1["orders"] == item["orders"] == 5


def test_a_replayed_and_a_bisected_batch_leave_no_duplicate_and_no_missing_change(
    pipeline, handlers
) -> None:
    """The capture fails its first multi-record batch after writing it (so its halves overlap
    the object already written); then the whole streams are read again from the start by a
    runtime without checkpoints (a replay). The changes still match the tables."""
    capture = handlers[CAPTURE]
    failed: list[int] = []

    def fails_once_after_writing(event: dict[str, Any], context: Any) -> Any:
        answer = capture(event, context)
        if not failed and len(event["Records"]) > 1:
            failed.append(len(event["Records"]))
            raise RuntimeError("crash after the objects were written")
        return answer

    pipeline.put(*(sale("s-001", f"o-{i}", "1.25") for i in range(8)))
    pipeline.run({**handlers, CAPTURE: fails_once_after_writing})
    assert failed, "no batch was bisected"
    pipeline.put(sale("s-001", "o-8", "1.25"), sale("s-002", "o-9", "3.00"))
    pipeline.run(handlers)
    pipeline.run({CAPTURE: capture, PROCESSOR: handlers[PROCESSOR]}, state="replay")

    orders = pipeline.changes("orders")
    ids = orders.column("order_id").to_pylist()
    assert sorted(ids) == [f"o-{i}" for i in range(10)]  # once each, none missing
    facts = pipeline.stack.table(Table.FACTS).scan()["Items"]
    orders_in_table = {i["order_id"]: i["total"] for i in facts if i.get("type") == "order"}
    latest = latest_rows(DATASETS["orders"], orders)
    assert {r["order_id"]: r["total"] for r in latest} == orders_in_table
    metrics = latest_rows(DATASETS["daily_store_metrics"], pipeline.changes("daily_store_metrics"))
    for row in metrics:
        item = day_metrics_item(pipeline.stack, row["store_id"])
        assert (row["revenue"], row["orders"]) == (item["revenue"], item["orders"])


# A runtime in its own process, so that it can be killed with SIGKILL: the first change batch
# it captures is written to S3, then the process hangs before the checkpoint (the worst moment).
KILLED_RUNTIME = """
import importlib.util, pathlib, sys, time
from storepulse.config import REPO_ROOT
from storepulse_local.lambda_runtime import LocalLambdaRuntime

def load(folder, name):
    path = REPO_ROOT / "lambdas" / folder / "handler.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

state_dir, marker, processor_name, capture_name = sys.argv[1:5]
processor, capture = load("stream_processor", "p"), load("change_capture", "c")

def capture_then_hang(event, context):
    result = capture.handler(event, context)
    pathlib.Path(marker).write_text(str(len(event["Records"])))
    time.sleep(3600)
    return result

LocalLambdaRuntime(
    handlers={processor_name: processor.handler, capture_name: capture_then_hang},
    state_dir=pathlib.Path(state_dir), poll_interval=0.02, discovery_interval=0.1,
    retry_backoff=0,
).start()
time.sleep(3600)
"""


def test_a_kill_9_of_the_runtime_during_a_change_batch_loses_and_duplicates_nothing(
    pipeline, handlers, tmp_path
) -> None:
    """SIGKILL after a change batch reached S3 and before its checkpoint: the restarted runtime
    captures it again (same or overlapping objects), and what the lake holds is the table."""
    import os
    import signal
    import subprocess
    import sys
    import time

    sales = [sale(f"s-00{1 + n % 2}", f"o-{n}", f"{n + 1}.00") for n in range(8)]
    pipeline.put(*sales)
    marker = tmp_path / "captured"
    argv = [str(tmp_path / "runtime"), str(marker), PROCESSOR, CAPTURE]
    # The test's environment: the embedded AWS and its credentials.
    child = subprocess.Popen([sys.executable, "-c", KILLED_RUNTIME, *argv])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the killed runtime never captured a batch"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    pipeline.run(handlers)  # the same state directory: restarts from the checkpoints

    facts = pipeline.stack.table(Table.FACTS).scan()["Items"]
    table_orders = {i["order_id"]: Decimal(i["total"]) for i in facts if i.get("type") == "order"}
    changes = pipeline.changes("orders").to_pylist()
    assert sorted(r["order_id"] for r in changes) == sorted(table_orders)  # each change once
    assert {r["order_id"]: r["total"] for r in changes} == table_orders
    captured = latest_rows(DATASETS["daily_store_metrics"], pipeline.changes("daily_store_metrics"))
    metrics = pipeline.stack.table(Table.METRICS)
    for row in captured:
        item = metrics.get_item(Key=day_bucket_key(row["store_id"], row["business_date"]).as_item())
        assert row["revenue"] == item["Item"]["revenue"]
        assert row["orders"] == item["Item"]["orders"]
    assert sum(r["revenue"] for r in captured) == sum(Decimal(f"{n + 1}.00") for n in range(8))


def _capture_role_policy(pipeline: Pipeline, queue_arn: str) -> dict[str, Any]:
    """The template's ChangeCaptureRole policy, resolved with this test's resources."""
    template = parse_template(TEMPLATE.read_text())
    arns = {"LakeBucket": f"arn:aws:s3:::{pipeline.stack.bucket}", "DeadLetterQueue": queue_arn}
    tables = {f"{t.value.capitalize()}Table": table_name(t) for t in Table}

    def stream_arn(logical_id: str, attribute: str) -> str:
        assert attribute == "StreamArn"
        described = pipeline.aws("dynamodb").describe_table(TableName=tables[logical_id])
        return described["Table"]["LatestStreamArn"]

    intrinsics = Intrinsics(
        template, {"EnvName": "dev"}, {"AWS::Partition": "aws"}, {}, arns.__getitem__, stream_arn
    )
    (policy,) = template["Resources"]["ChangeCaptureRole"]["Properties"]["Policies"]
    return intrinsics.resolve(policy["PolicyDocument"])


@pytest.mark.slow  # the role's calls are checked in the default suite (test_lambda_permissions)
def test_the_capture_role_writes_changes_and_nothing_else(pipeline, monkeypatch) -> None:
    """The handler runs with the template's role, assumed as Lambda assumes it: the embedded AWS
    enforces IAM, so a grant missing from the role would fail the batch; and the role can
    neither read the lake nor write another zone."""
    processor = _load("stream_processor", "capture_iam_processor")
    sqs = pipeline.aws("sqs")
    queue_url = sqs.create_queue(QueueName="capture-failures")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    iam = pipeline.aws("iam")
    trust = LAMBDA_TRUST_POLICY
    role = iam.create_role(RoleName="change-capture", AssumeRolePolicyDocument=trust)["Role"]
    policy = _capture_role_policy(pipeline, queue_arn["Attributes"]["QueueArn"])
    iam.put_role_policy(
        RoleName="change-capture", PolicyName="change-capture", PolicyDocument=json.dumps(policy)
    )
    as_role = LAMBDA_SERVICE.assume(role["Arn"], CAPTURE)
    capture = _load("change_capture", "capture_iam_capture")
    monkeypatch.setattr(capture, "boto3", as_role)  # its clients: the role's (not the runtime's)

    pipeline.put(sale("s-001", "o-1", "2.00"), sale("s-002", "o-2", "3.00"))
    pipeline.run({PROCESSOR: processor.handler, CAPTURE: capture.handler})
    assert sorted(pipeline.changes("orders").column("order_id").to_pylist()) == ["o-1", "o-2"]

    s3 = as_role.client("s3")
    (written, *_) = pipeline.keys("changes/")
    for call in (
        lambda: s3.put_object(Bucket=pipeline.stack.bucket, Key="curated/orders/x", Body=b""),
        lambda: s3.get_object(Bucket=pipeline.stack.bucket, Key=written),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["Error"]["Code"] in {"AccessDenied", "403"}


@pytest.mark.slow  # builds the capture's 56 MB zip (pyarrow) and runs both deployed packages
def test_the_deployed_stack_captures_changes_with_its_own_packages(
    embedded_aws, tmp_path, monkeypatch
) -> None:
    """Deployed as the DAG deploys it (both zips, the capture's for python3.12), verified, and
    run by the local runtime from the deployed packages, with their roles: sales put on Kinesis
    become rows in changes/."""
    from storepulse.deploy.package import artifacts_bucket, build_lambda_zip, upload_package
    from storepulse.deploy.stack import deploy_stack, function_runtime, load_parameters
    from storepulse.deploy.verify import verify_stack
    from tests.integration.conftest import _put_settings

    s3, cfn = boto3.client("s3"), boto3.client("cloudformation")
    bucket = artifacts_bucket("dev", "123456789012")
    s3.create_bucket(Bucket=bucket)
    template = parse_template(TEMPLATE.read_text())
    built = {
        name: build_lambda_zip(
            REPO_ROOT / "lambdas" / name,
            tmp_path / "build",
            runtime=function_runtime(template, key),
        )
        for name, key in (
            ("stream_processor", "LambdaCodeKey"),
            ("change_capture", "ChangeCaptureCodeKey"),
        )
    }
    keys = {
        name: upload_package(s3, package, bucket, function=name.replace("_", "-"))[0]
        for name, package in built.items()
    }
    parameters = load_parameters(
        "dev",
        code_bucket=bucket,
        code_key=keys["stream_processor"],
        capture_code_key=keys["change_capture"],
    )
    wider = {"PlausiblePastDays": "3650"}  # the sales are dated NOON_PARIS, as a backfill
    parameters = [
        {**p, "ParameterValue": wider.get(p["ParameterKey"], p["ParameterValue"])}
        for p in parameters
    ]
    result = deploy_stack(
        cfn,
        stack_name="storepulse-dev-realtime",
        template_body=TEMPLATE.read_text(),
        parameters=parameters,
        waiter_delay=0.5,
    )
    verify_stack(
        lambda service: boto3.client(service),
        "storepulse-dev-realtime",
        code_sha256=built["stream_processor"].sha256,
        code_sha256_of={"ChangeCaptureFunction": built["change_capture"].sha256},
    )
    _put_settings(boto3.resource("dynamodb").Table(result.outputs["SettingsTable"]))

    lake = result.outputs["LakeBucket"]
    boto3.client("kinesis").put_records(
        StreamName=result.outputs["StreamName"],
        Records=[
            {"Data": e.to_json(), "PartitionKey": ev.partition_key(e)}
            for e in (sale("s-001", "o-1", "2.00"), sale("s-002", "o-2", "3.50"))
        ],
    )
    runtime = LocalLambdaRuntime(
        state_dir=tmp_path / "runtime", poll_interval=0.05, retry_backoff=0
    )
    with runtime:
        runtime.run_until_idle(timeout=180)
        runtime.run_until_idle(timeout=180)
    assert all(s.errors == 0 for s in runtime.stats()), runtime.stats()
    orders = DATASETS["orders"]
    listing = s3.list_objects_v2(Bucket=lake, Prefix="changes/facts/")
    keys_ = [o["Key"] for o in listing.get("Contents", []) if "/orders/" in o["Key"]]
    rows = read_changes(s3, lake, orders, keys_)
    assert sorted(rows.column("order_id").to_pylist()) == ["o-1", "o-2"]


def _curated(pipeline: Pipeline, fs: Any, dataset: str, day: date) -> list[dict[str, Any]]:
    files = current_files(fs, f"{pipeline.stack.bucket}/curated", DATASETS[dataset], day)
    return pq.read_table(files, filesystem=fs).to_pylist() if files else []


def _objects(pipeline: Pipeline, *prefixes: str) -> dict[str, str]:
    """Key -> ETag of every object under the prefixes (what a republish would change)."""
    return {
        o["Key"]: o["ETag"]
        for prefix in prefixes
        for page in pipeline.stack.s3.get_paginator("list_objects_v2").paginate(
            Bucket=pipeline.stack.bucket, Prefix=prefix
        )
        for o in page.get("Contents", [])
    }


def test_compaction_publishes_today_so_far_and_a_late_sale_republishes_only_its_day(
    pipeline, handlers
) -> None:
    """The changes become the curated partitions through the export's publish (manifest); a
    sale for the day before, captured later, republishes that day's partitions alone: every
    other day's files, manifests and state stay as they were."""
    fs = s3_filesystem()
    compactor = Compactor(
        pipeline.stack.s3, fs, pipeline.stack.bucket, run_id="compaction-1", audit=None
    )
    now = datetime.now(UTC)
    hours = hours_of_interval(now - timedelta(hours=1), now + timedelta(hours=1))
    day = NOON_PARIS.date()
    pipeline.put(sale("s-001", "o-1", "2.00"), sale("s-001", "o-2", "3.00"))
    pipeline.run(handlers)

    first = compactor.compact(hours)
    assert {c.day for c in first} == {day.isoformat()} and all(c.published for c in first)
    assert sorted(r["order_id"] for r in _curated(pipeline, fs, "orders", day)) == ["o-1", "o-2"]
    (metrics,) = _curated(pipeline, fs, "daily_store_metrics", day)
    assert metrics["revenue"] == day_metrics_item(pipeline.stack, "s-001")["revenue"]
    recorded = read_freshness(pipeline.stack.s3, pipeline.stack.bucket)  # for the dashboard
    assert {c.dataset: c.newest_change for c in first} == {
        name: entry["newest_change"] for name, entry in recorded.items()
    }
    assert compactor.compact(hours) == [  # re-reading the same hours changes nothing
        dataclasses.replace(c, published=False) for c in first
    ]

    pipeline.put(sale("s-001", "o-0", "5.00", at=NOON_PARIS - timedelta(days=1)))
    pipeline.run(handlers, state="late")
    yesterday = (day - timedelta(days=1)).isoformat()
    before = _objects(pipeline, "curated/", "changes/_state/")
    second = {(c.dataset, c.day): c.published for c in compactor.compact(hours)}
    assert second[("orders", yesterday)] and not second[("orders", day.isoformat())]
    assert not any(published for (_, d), published in second.items() if d == day.isoformat())
    assert [r["order_id"] for r in _curated(pipeline, fs, "orders", day - timedelta(days=1))] == [
        "o-0"
    ]
    after = _objects(pipeline, "curated/", "changes/_state/")
    for objects in (before, after):  # the lake's newest change: the late sale's capture time
        objects.pop(FRESHNESS_KEY)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed and all(f"/dt={yesterday}/" in key for key in changed), changed
    assert {k: v for k, v in after.items() if k not in changed} == {
        k: v for k, v in before.items() if k not in changed
    }


def test_the_compaction_publishes_the_rows_the_nightly_export_stages_for_a_closed_day(
    pipeline, handlers
) -> None:
    """Same day, same tables: the compacted partitions hold the nightly export's rows."""
    from storepulse.export.datasets import datasets_of
    from storepulse.export.quality import read_staged
    from storepulse.export.sources import ScanSource
    from storepulse.export.staging import stage_table

    day = NOON_PARIS.date()
    pipeline.put(
        sale("s-001", "o-1", "2.00"),
        sale("s-002", "o-2", "3.50"),
        sale("s-001", "o-3", "1.25", at=NOON_PARIS + timedelta(hours=3)),
    )
    pipeline.run(handlers)
    fs, bucket = s3_filesystem(), pipeline.stack.bucket
    compactor = Compactor(pipeline.stack.s3, fs, bucket, run_id="compaction-1", audit=None)
    now = datetime.now(UTC)
    compactor.compact(hours_of_interval(now - timedelta(hours=1), now + timedelta(hours=1)))

    compared = set()
    for table in (Table.FACTS, Table.METRICS):
        scan = ScanSource(pipeline.aws("dynamodb"), table_name(table))
        wanted = [d for d in datasets_of(table) if d.name in COMPACTED]
        staged = stage_table(scan.items, wanted, day, f"{bucket}/staging/nightly", fs)
        for name, report in staged.items():
            nightly = read_staged(fs, report.files).to_pylist() if report.files else []
            published = current_files(fs, f"{bucket}/curated", DATASETS[name], day)
            compacted = read_staged(fs, published).to_pylist() if published else []
            assert compacted == nightly, name
            compared.add(name)
    assert compared == set(COMPACTED)


@pytest.mark.slow  # Great Expectations twice (~13 suites each); the unit tests judge the audit
def test_the_audited_compaction_publishes_a_clean_day_and_nothing_when_an_hour_disagrees(
    pipeline, handlers
) -> None:
    """The real audit (Great Expectations, the metrics table's hour buckets): a clean day is
    published; a closed hour whose real-time revenue disagrees with the compacted orders fails
    the run, which publishes nothing (no partition, no state) and says why."""
    from storepulse.capture.audit import CompactionAudit, table_hours
    from storepulse.capture.compaction import CompactionAuditError
    from storepulse.export.quality import Reference
    from storepulse.export.quality.live import day_orders
    from storepulse.settings import load_catalog

    fs, bucket = s3_filesystem(), pipeline.stack.bucket
    metrics = pipeline.stack.table(Table.METRICS)
    reference = Reference.of(load_catalog(pipeline.stack.table(Table.SETTINGS), rules=False))
    facts = pipeline.stack.table(Table.FACTS)
    audit = CompactionAudit(
        fs,
        bucket,
        reference,
        table_hours(metrics),
        lambda day: day_orders(facts, day),
        run_id="compaction-1",
        sleep=lambda _: None,
    )
    compactor = Compactor(pipeline.stack.s3, fs, bucket, run_id="compaction-1", audit=audit)
    now = datetime.now(UTC)
    hours = hours_of_interval(now - timedelta(hours=1), now + timedelta(hours=1))
    day = NOON_PARIS.date()
    pipeline.put(sale("s-001", "o-1", "2.00"))
    pipeline.run(handlers)
    assert all(c.published for c in compactor.compact(hours))
    assert [r["order_id"] for r in _curated(pipeline, fs, "orders", day)] == ["o-1"]

    pipeline.put(sale("s-001", "o-2", "3.00"))
    pipeline.run(handlers, state="second")
    hour = bucket_keys("s-001", NOON_PARIS, "Europe/Paris")[Grain.HOUR]
    metrics.update_item(  # the real-time path counted 1.00 more than the orders it wrote
        Key=hour.as_item(),
        UpdateExpression="ADD revenue :extra",
        ExpressionAttributeValues={":extra": Decimal("1.00")},
    )
    before = _objects(pipeline, "curated/", "changes/_state/")
    with pytest.raises(CompactionAuditError) as failed:
        compactor.compact(hours)
    assert "published nothing" in str(failed.value)
    assert "store_id=s-001 hour=2026-11-26T11Z order_revenue=5.00 metric_revenue=6.00" in str(
        failed.value
    )
    assert _objects(pipeline, "curated/", "changes/_state/") == before


@pytest.mark.slow  # a throwaway Airflow
def test_the_compaction_dag_publishes_the_hour_and_emits_the_assets(
    pipeline, handlers, tmp_path, embedded_aws
) -> None:
    from tests.dag_runs import airflow_home, run_dags

    pipeline.put(sale("s-001", "o-1", "2.00"))
    pipeline.run(handlers)
    outputs = {
        "LakeBucket": pipeline.stack.bucket,
        "MetricsTable": table_name(Table.METRICS),
        "FactsTable": table_name(Table.FACTS),
        "SettingsTable": table_name(Table.SETTINGS),
    }
    template = {
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "m"}}},
        "Outputs": {k: {"Value": v} for k, v in outputs.items()},
    }
    pipeline.aws("cloudformation").create_stack(
        StackName="storepulse-dev-realtime", TemplateBody=json.dumps(template)
    )
    # A run whose interval ends after now: its hours include the one the sale was captured in.
    end = datetime.now(UTC).replace(minute=5, second=0, microsecond=0) + timedelta(hours=1)
    env = airflow_home(tmp_path / "airflow", embedded_aws)
    (run,) = run_dags(
        env,
        [{"dag_id": "compact_changes", "logical_date": (end - timedelta(hours=1)).isoformat()}],
        timeout=300,
    )
    assert run["state"] == "success", run
    assert run["events"]["s3://storepulse/curated/orders"]["days"] == [
        NOON_PARIS.date().isoformat()
    ]
    fs = s3_filesystem()
    assert [r["order_id"] for r in _curated(pipeline, fs, "orders", NOON_PARIS.date())] == ["o-1"]
