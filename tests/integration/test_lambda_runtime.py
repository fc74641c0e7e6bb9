"""The local Lambda runtime on the embedded AWS: real mappings, streams and queues. The mapping
semantics are checked with in-process stand-ins that record what they receive; deployed zips
(a probe, and the real stream processor's package) check what runs a function: its own
interpreter, its package, its environment and its execution role.

Records are put from the test's thread only (moto loses records under concurrent writers).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from storepulse import events as ev
from storepulse.config import REPO_ROOT, settings
from storepulse.deploy.package import artifacts_bucket, build_lambda_zip
from storepulse.layout import Grain, Table, bucket_keys
from storepulse_local.iam import LAMBDA_TRUST_POLICY
from storepulse_local.lambda_runtime import LocalLambdaRuntime
from storepulse_local.lambda_runtime.runtime import default_client
from tests.integration.conftest import business_day_total
from tests.integration.test_stream_processor import NOON_PARIS
from tests.integration.test_stream_processor import sale as sale_of_lines

FUNCTION = "storepulse-dev-recorder"
ROLE = "storepulse-dev-recorder-role"
# What the stream processor calls, on any resource: the runtime runs it with this role's
# credentials (the embedded AWS enforces IAM); least privilege is test_iam_enforced's subject.
ROLE_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["dynamodb:*", "sns:Publish", "s3:PutObject", "sqs:SendMessage"],
                "Resource": "*",
            }
        ],
    }
)
CODE_BUCKET = artifacts_bucket("dev", "123456789012")
NOTHING = b"def handler(event, context):\n    return None\n"
SHARD_0, SHARD_1 = "shardId-000000000000", "shardId-000000000001"
HASH_KEYS = {SHARD_0: "0", SHARD_1: str(2**127 + 1)}  # ExplicitHashKey landing in each shard
RECORD_KEYS = {"kinesis", "eventSource", "eventVersion", "eventID", "eventName"} | {
    "invokeIdentityArn",
    "awsRegion",
    "eventSourceARN",
}
KINESIS_KEYS = {
    "kinesisSchemaVersion",
    "partitionKey",
    "sequenceNumber",
    "data",
    "approximateArrivalTimestamp",
}


@dataclass
class Call:
    event: dict[str, Any]
    context: Any
    ok: bool
    order: int

    @property
    def shard(self) -> str:
        return self.event["Records"][0]["eventID"].split(":")[0]

    @property
    def seqs(self) -> list[str]:
        return [r["kinesis"]["sequenceNumber"] for r in self.event["Records"]]

    @property
    def data(self) -> list[bytes]:
        return [base64.b64decode(r["kinesis"]["data"]) for r in self.event["Records"]]


class Recorder:
    """A handler that keeps every event; ``answer`` decides its response (or raises)."""

    def __init__(self, answer: Callable[[Call], Any] | None = None, pause: float = 0.0) -> None:
        self.calls: list[Call] = []
        self.answer = answer or (lambda call: {"batchItemFailures": []})
        self.pause = pause
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        with self._lock:
            call = Call(event, context, True, len(self.calls))
            self.calls.append(call)
        time.sleep(self.pause)
        try:
            return self.answer(call)
        except Exception:
            call.ok = False
            raise

    def delivered(self, shard: str | None = None) -> list[str]:
        """Sequence numbers of successful invocations, in invocation order."""
        return [
            seq
            for call in self.calls
            if call.ok and shard in (None, call.shard)
            for seq in call.seqs
        ]


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.01)


@dataclass
class Setup:
    aws: Callable[[str], Any]
    stream_name: str
    stream_arn: str
    role_arn: str
    queue_url: str
    queue_arn: str

    def put(self, shard: str, *payloads: bytes) -> list[str]:
        response = self.aws("kinesis").put_records(
            StreamName=self.stream_name,
            Records=[
                {"Data": p, "PartitionKey": "k", "ExplicitHashKey": HASH_KEYS[shard]}
                for p in payloads
            ],
        )
        assert all(r["ShardId"] == shard for r in response["Records"])
        return [r["SequenceNumber"] for r in response["Records"]]

    def upload(self, name: str, code: bytes) -> dict[str, str]:
        """Code as the deploy ships it: a zip in the artifacts bucket."""
        key = f"lambda/{name}/{hashlib.sha256(code).hexdigest()}.zip"
        self.aws("s3").put_object(Bucket=CODE_BUCKET, Key=key, Body=code)
        return {"S3Bucket": CODE_BUCKET, "S3Key": key}

    def function(self, name: str = FUNCTION, code: bytes | None = None, **environment: str) -> None:
        self.aws("lambda").create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=self.role_arn,
            Handler="handler.handler",
            Code=self.upload(name, code or zipped({"handler.py": NOTHING})),
            Environment={"Variables": environment},
            Timeout=30,
            MemorySize=256,
        )

    def redeploy(self, name: str, code: bytes) -> None:
        self.aws("lambda").update_function_code(FunctionName=name, **self.upload(name, code))

    def mapping(self, function: str = FUNCTION, **overrides: Any) -> str:
        settings_ = {
            "EventSourceArn": self.stream_arn,
            "BatchSize": 10,
            "StartingPosition": "TRIM_HORIZON",
            "MaximumBatchingWindowInSeconds": 0,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": 2,
            "DestinationConfig": {"OnFailure": {"Destination": self.queue_arn}},
        } | overrides
        response = self.aws("lambda").create_event_source_mapping(
            FunctionName=function, **settings_
        )
        return response["UUID"]

    def on_failure_messages(self) -> list[dict[str, Any]]:
        messages = (
            self.aws("sqs")
            .receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            .get("Messages", [])
        )
        return [json.loads(m["Body"]) for m in messages]


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def without(code: bytes, top_level: str) -> bytes:
    """The package minus one vendored distribution (its modules and its metadata)."""
    with zipfile.ZipFile(io.BytesIO(code)) as archive:
        return zipped(
            {
                name: archive.read(name)
                for name in archive.namelist()
                if name.split("/")[0].split("-")[0] != top_level
            }
        )


@pytest.fixture(scope="module")
def stream_processor_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The stream processor's real deployment package."""
    build_dir = tmp_path_factory.mktemp("build")
    return build_lambda_zip(REPO_ROOT / "lambdas" / "stream_processor", build_dir).path.read_bytes()


@pytest.fixture
def setup(aws_client) -> Setup:
    aws_client("s3").create_bucket(Bucket=CODE_BUCKET)
    kinesis = aws_client("kinesis")
    name = settings().resource_name("events")
    kinesis.create_stream(StreamName=name, ShardCount=2)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    iam = aws_client("iam")
    role = iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY)["Role"]
    role_arn = role["Arn"]
    iam.put_role_policy(RoleName=ROLE, PolicyName="stream-processor", PolicyDocument=ROLE_POLICY)
    sqs = aws_client("sqs")
    queue_url = sqs.create_queue(QueueName="stream-failures")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    return Setup(aws_client, name, arn, role_arn, queue_url, queue_arn)


@pytest.fixture
def runtimes(tmp_path: Path) -> Iterator[Callable[..., LocalLambdaRuntime]]:
    """Start runtimes on one state directory (fast polling, no backoff); all stopped after."""
    started: list[LocalLambdaRuntime] = []

    def start(handlers: dict[str, Any] | None = None, **options: Any) -> LocalLambdaRuntime:
        runtime = LocalLambdaRuntime(
            handlers=handlers,
            state_dir=tmp_path / "lambda-runtime",
            **({"poll_interval": 0.02, "discovery_interval": 0.1, "retry_backoff": 0} | options),
        )
        started.append(runtime.start())
        return runtime

    yield start
    for runtime in started:
        runtime.stop()


def test_handler_gets_the_lambda_event_in_shard_order_and_in_batches(setup, runtimes) -> None:
    setup.function()
    mapping_uuid = setup.mapping()
    first = setup.put(SHARD_0, *[f"a-{i}".encode() for i in range(25)])
    second = setup.put(SHARD_1, *[f"b-{i}".encode() for i in range(13)])
    recorder = Recorder()
    runtime = runtimes({FUNCTION: recorder})
    runtime.run_until_idle(timeout=20)

    by_shard = {s: [c for c in recorder.calls if c.shard == s] for s in (SHARD_0, SHARD_1)}
    assert [len(c.seqs) for c in by_shard[SHARD_0]] == [10, 10, 5]
    assert [len(c.seqs) for c in by_shard[SHARD_1]] == [10, 3]
    assert recorder.delivered(SHARD_0) == first
    assert recorder.delivered(SHARD_1) == second
    assert [d for c in by_shard[SHARD_0] for d in c.data] == [f"a-{i}".encode() for i in range(25)]

    record = recorder.calls[0].event["Records"][0]
    assert set(record) == RECORD_KEYS
    assert set(record["kinesis"]) == KINESIS_KEYS
    event_ids = {r["eventID"] for c in recorder.calls for r in c.event["Records"]}
    assert event_ids == {f"{SHARD_0}:{s}" for s in first} | {f"{SHARD_1}:{s}" for s in second}
    assert (record["eventSourceARN"], record["eventSource"], record["awsRegion"]) == (
        setup.stream_arn,
        "aws:kinesis",
        "us-east-1",
    )
    assert record["invokeIdentityArn"] == setup.role_arn
    assert abs(record["kinesis"]["approximateArrivalTimestamp"] - time.time()) < 60

    context = recorder.calls[0].context
    assert (context.function_name, context.memory_limit_in_mb, context.account_id) == (
        FUNCTION,
        256,
        "123456789012",
    )
    assert 0 < context.get_remaining_time_in_millis() <= 30_000

    later = setup.put(SHARD_1, b"late")  # the runtime keeps following the stream
    runtime.run_until_idle(timeout=20)
    assert recorder.delivered(SHARD_1) == second + later

    stats = {s.shard_id: s for s in runtime.stats()}
    assert {s.mapping_uuid for s in stats.values()} == {mapping_uuid}
    assert (stats[SHARD_0].invocations, stats[SHARD_0].records_processed) == (3, 25)
    assert (stats[SHARD_1].checkpoint, stats[SHARD_1].iterator_age_ms) == (later[0], 0)
    assert stats[SHARD_1].errors == 0


def test_the_batching_window_waits_to_fill_a_batch(setup, runtimes) -> None:
    setup.function()
    setup.mapping(MaximumBatchingWindowInSeconds=2)
    early = setup.put(SHARD_0, b"1", b"2")
    recorder = Recorder()
    runtime = runtimes({FUNCTION: recorder})
    deadline = time.monotonic() + 10
    while not any(s.iterator_age_ms is not None for s in runtime.stats()):  # first read done
        assert time.monotonic() < deadline
        time.sleep(0.01)
    late = setup.put(SHARD_0, b"3", b"4")
    runtime.run_until_idle(timeout=20)
    assert [c.seqs for c in recorder.calls] == [early + late]


def test_partial_failure_resends_from_the_reported_record(setup, runtimes) -> None:
    setup.function()
    setup.mapping()
    seqs = setup.put(SHARD_0, *[f"r-{i}".encode() for i in range(10)])
    failing_once = {seqs[6]}

    def answer(call: Call) -> dict[str, Any]:
        failed = [s for s in call.seqs if s in failing_once]
        failing_once.difference_update(failed)
        return {"batchItemFailures": [{"itemIdentifier": s} for s in failed]}

    recorder = Recorder(answer)
    runtimes({FUNCTION: recorder}).run_until_idle(timeout=20)

    assert [c.seqs for c in recorder.calls] == [seqs, seqs[6:]]  # the rest of the batch again
    assert setup.on_failure_messages() == []


def test_a_poison_record_is_isolated_retried_and_sent_to_the_failure_queue(setup, runtimes) -> None:
    setup.function()
    setup.mapping()
    payloads = [f"r-{i}".encode() for i in range(10)]
    payloads[3] = b"poison"
    seqs = setup.put(SHARD_0, *payloads)
    others = setup.put(SHARD_1, b"x", b"y")

    def answer(call: Call) -> None:
        if b"poison" in call.data:
            raise ValueError("cannot digest this record")

    recorder = Recorder(answer)
    runtime = runtimes({FUNCTION: recorder})
    runtime.run_until_idle(timeout=20)

    poison = seqs[3]
    alone = [c for c in recorder.calls if c.seqs == [poison]]
    assert len(alone) == 3  # bisected down to it, then first try + 2 retries
    assert recorder.delivered(SHARD_0) == [s for s in seqs if s != poison]  # once each, in order
    assert recorder.delivered(SHARD_1) == others

    [message] = setup.on_failure_messages()
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 3
    assert message["requestContext"]["functionArn"].endswith(f":function:{FUNCTION}")
    assert message["responseContext"]["functionError"] == "Unhandled"
    info = message["KinesisBatchInfo"]
    assert (info["shardId"], info["startSequenceNumber"], info["endSequenceNumber"]) == (
        SHARD_0,
        poison,
        poison,
    )
    assert (info["batchSize"], info["streamArn"]) == (1, setup.stream_arn)
    replay = message["replay"]
    assert replay["reason"] == "ValueError: cannot digest this record"
    assert [base64.b64decode(r["data"]) for r in replay["records"]] == [b"poison"]
    stats = {s.shard_id: s for s in runtime.stats()}[SHARD_0]
    assert (stats.records_processed, stats.records_discarded, stats.checkpoint) == (9, 1, seqs[-1])
    assert "cannot digest" in (stats.last_error or "")


def test_a_restart_delivers_every_record_exactly_once(setup, runtimes) -> None:
    setup.function()
    setup.mapping()
    expected = {
        SHARD_0: setup.put(SHARD_0, *[f"a-{i}".encode() for i in range(60)]),
        SHARD_1: setup.put(SHARD_1, *[f"b-{i}".encode() for i in range(60)]),
    }
    before = Recorder(pause=0.05)  # 6 batches a shard: ~0.3 s of work
    first = runtimes({FUNCTION: before})
    deadline = time.monotonic() + 10
    while len(before.calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    first.stop()  # mid-stream: the batches in flight finish, later ones never start
    assert 0 < len(before.delivered()) < 120

    more = setup.put(SHARD_1, b"while-stopped")
    after = Recorder()
    runtimes({FUNCTION: after}).run_until_idle(timeout=20)

    for shard, seqs in expected.items():
        both = before.delivered(shard) + after.delivered(shard)
        assert both == seqs + (more if shard == SHARD_1 else [])  # no loss, no duplicate


def test_through_a_consumer_records_are_pushed_and_an_idle_shard_is_not_polled(
    setup, runtimes
) -> None:
    """Enhanced fan-out at Lambda's cadence (no poll interval given): a record put on an idle
    shard is read when the embedded AWS signals the put, and a caught-up shard is not read
    again until then (a poller would read it every 70 ms)."""
    from moto.kinesis.utils import decompose_shard_iterator

    consumer = setup.aws("kinesis").register_stream_consumer(
        StreamARN=setup.stream_arn, ConsumerName="stream-processor"
    )["Consumer"]["ConsumerARN"]
    setup.function()
    setup.mapping(EventSourceArn=consumer)
    reads: list[str] = []  # the shard of every GetRecords the runtime sends

    def counting(service: str) -> Any:
        client = default_client(service)
        client.meta.events.register(
            "before-parameter-build.kinesis.GetRecords",
            lambda params, **_: reads.append(decompose_shard_iterator(params["ShardIterator"])[1]),
        )
        return client

    recorder = Recorder()
    runtime = runtimes({FUNCTION: recorder}, poll_interval=None, client=counting)
    delivered: list[str] = []
    for payload in (b"first", b"second"):
        wait_until(lambda: {SHARD_0, SHARD_1} <= set(reads))  # both shards read and caught up
        idle_from = len(reads)
        time.sleep(1.2)  # idle: longer than a wait for a push (1 s)
        delivered += setup.put(SHARD_0, payload)
        wait_until(lambda expected=list(delivered): recorder.delivered() == expected)
        idle = reads[idle_from:]
        assert idle.count(SHARD_1) == 0  # never written: never read again
        # The read of the record and the empty one after it (and the empty one after the
        # previous record, when the handler, which said it was delivered, had not returned).
        assert idle.count(SHARD_0) <= 3

    stats = {s.shard_id: s for s in runtime.stats()}
    assert stats[SHARD_0].pushes >= 1 and stats[SHARD_1].pushes == 0
    assert len(recorder.calls) == 2


def test_a_caught_up_table_stream_is_waited_on_instead_of_read_4_times_a_second(
    setup, runtimes
) -> None:
    """A DynamoDB stream mapping at Lambda's cadence (no poll interval given): a caught-up
    shard is not read 4 times a second but waited on, and a write is delivered."""
    dynamodb = setup.aws("dynamodb")
    table = dynamodb.create_table(
        TableName="storepulse-dev-watched",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]
    setup.function()
    setup.mapping(EventSourceArn=table["LatestStreamArn"], StartingPosition="LATEST")
    reads: list[float] = []  # when each GetRecords was sent

    def counting(service: str) -> Any:
        client = default_client(service)
        client.meta.events.register(
            "before-parameter-build.dynamodbstreams.GetRecords",
            lambda **_: reads.append(time.monotonic()),
        )
        return client

    keys: list[list[str]] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        keys.append([r["dynamodb"]["Keys"]["pk"]["S"] for r in event["Records"]])

    runtime = runtimes({FUNCTION: handler}, poll_interval=None, client=counting)
    runtime.run_until_idle(timeout=20)  # the mapping found and its shard caught up
    idle_from = len(reads)
    time.sleep(1.5)  # a poller would read 6 times
    assert len(reads) - idle_from == 0

    dynamodb.put_item(TableName="storepulse-dev-watched", Item={"pk": {"S": "a"}})
    wait_until(lambda: keys == [["a"]])
    assert [s.pushes for s in runtime.stats()] == [1]


def test_a_disabled_mapping_is_not_polled(setup, runtimes) -> None:
    setup.function()
    setup.function("storepulse-dev-sleeper")
    sleeper_mapping = setup.mapping("storepulse-dev-sleeper", Enabled=False)
    active_mapping = setup.mapping()
    seqs = setup.put(SHARD_0, b"one", b"two")
    recorder, sleeper = Recorder(), Recorder()
    runtime = runtimes({FUNCTION: recorder, "storepulse-dev-sleeper": sleeper})
    runtime.run_until_idle(timeout=20)

    assert recorder.delivered() == seqs
    assert sleeper.calls == []
    assert {s.mapping_uuid for s in runtime.stats()} == {active_mapping}

    lambda_ = setup.aws("lambda")
    lambda_.update_event_source_mapping(UUID=active_mapping, Enabled=False)
    runtime.run_until_idle(timeout=20)
    paused = setup.put(SHARD_0, b"three")
    runtime.run_until_idle(timeout=20)
    assert recorder.delivered() == seqs and runtime.stats() == []

    lambda_.update_event_source_mapping(UUID=active_mapping, Enabled=True)
    runtime.run_until_idle(timeout=20)
    assert recorder.delivered() == seqs + paused  # resumed from its checkpoint
    assert sleeper.calls == [] and sleeper_mapping not in {s.mapping_uuid for s in runtime.stats()}


def test_latest_starts_at_the_tip_and_a_restart_still_loses_nothing(setup, runtimes) -> None:
    setup.function()
    setup.mapping(StartingPosition="LATEST")
    setup.put(SHARD_0, b"history")
    recorder = Recorder()
    runtime = runtimes({FUNCTION: recorder})
    runtime.run_until_idle(timeout=20)
    assert recorder.calls == []

    runtime.stop()
    while_down = setup.put(SHARD_0, b"while-down")  # LATEST keeps meaning the first start
    runtimes({FUNCTION: recorder}).run_until_idle(timeout=20)
    assert recorder.delivered() == while_down


def test_a_merged_shard_is_read_after_both_parents(setup, runtimes) -> None:
    setup.function()
    setup.mapping()
    setup.put(SHARD_0, b"p0-1", b"p0-2")
    setup.put(SHARD_1, b"p1-1")
    setup.aws("kinesis").merge_shards(
        StreamName=setup.stream_name, ShardToMerge=SHARD_0, AdjacentShardToMerge=SHARD_1
    )
    recorder = Recorder()
    runtime = runtimes({FUNCTION: recorder})
    runtime.run_until_idle(timeout=20)

    child = [c for c in recorder.calls if c.shard not in (SHARD_0, SHARD_1)]
    parents = [c for c in recorder.calls if c.shard in (SHARD_0, SHARD_1)]
    assert child and parents
    assert max(c.order for c in parents) < min(c.order for c in child)
    states = {s.shard_id: s.state for s in runtime.stats()}
    assert (states[SHARD_0], states[SHARD_1]) == ("finished", "finished")


# --- the real stream processor ----------------------------------------------------------------


def sale(store: str, order: str, price: str) -> ev.PosSaleV1:
    return sale_of_lines(store, order, NOON_PARIS, ("tea-100g", 1, price))


def day_revenue(stack: Any, store: str) -> Decimal | None:
    key = bucket_keys(store, NOON_PARIS, "Europe/Paris")[Grain.DAY]
    item = stack.table(Table.METRICS).get_item(Key=key.as_item()).get("Item", {})
    return item.get("revenue")


def put_events(setup: Setup, *events: ev.Event) -> None:
    setup.aws("kinesis").put_records(
        StreamName=setup.stream_name,
        Records=[{"Data": e.to_json(), "PartitionKey": ev.partition_key(e)} for e in events],
    )


def stream_processor(setup: Setup, stack: Any, code: bytes) -> str:
    """The stream processor's function, from ``code``. Its events are dated NOON_PARIS whatever
    day the test runs, so, like an operator's backfill, it accepts events up to ten years old."""
    name = "storepulse-dev-stream-processor"
    setup.function(
        name,
        code,
        STOREPULSE_LAKE_BUCKET=stack.bucket,
        STOREPULSE_ALERT_TOPIC_ARN=stack.topic_arn,
        STOREPULSE_PLAUSIBLE_PAST_DAYS="3650",
    )
    return name


def test_the_stream_processor_keeps_dynamodb_totals_up_to_date(
    setup, runtimes, realtime_stack, stream_processor_zip
) -> None:
    stream_processor(setup, realtime_stack, stream_processor_zip)
    setup.mapping("storepulse-dev-stream-processor")
    sales = [sale("s-001", f"o-{i}", "2.50") for i in range(12)] + [sale("s-002", "o-12", "1.00")]
    put_events(setup, *sales)
    runtime = runtimes()  # the deployed package, in a worker
    runtime.run_until_idle(timeout=60)
    assert day_revenue(realtime_stack, "s-001") == Decimal("30.00")

    put_events(setup, sale("s-001", "o-13", "5.00"), sales[1])  # o-1 resent by the producer
    runtime.run_until_idle(timeout=60)
    assert day_revenue(realtime_stack, "s-001") == Decimal("35.00")
    assert business_day_total(realtime_stack, NOON_PARIS)["revenue"] == Decimal("36.00")
    assert all(s.errors == 0 for s in runtime.stats())
    assert sum(s.records_processed for s in runtime.stats()) == 15


def test_one_poison_record_among_a_hundred_costs_nothing_but_itself(
    setup, runtimes, realtime_stack, stream_processor_zip
) -> None:
    """A sale dated 9999-12-31 in a batch of 100 good ones: one invocation, the 100 counted, the
    poison quarantined with its reason, nothing retried and nothing in the failure queue."""
    setup.mapping(stream_processor(setup, realtime_stack, stream_processor_zip), BatchSize=200)
    good = [sale("s-001", f"o-{i}", "1.00") for i in range(100)]
    poison = json.loads(sale("s-001", "o-poison", "500.00").to_json())
    poison["occurred_at"] = "9999-12-31T23:59:59Z"
    payloads = [e.to_json() for e in good[:50]] + [json.dumps(poison).encode()]
    seqs = setup.put(SHARD_0, *payloads, *[e.to_json() for e in good[50:]])
    runtime = runtimes()
    runtime.run_until_idle(timeout=60)

    [stats] = [s for s in runtime.stats() if s.shard_id == SHARD_0]
    assert (stats.invocations, stats.errors, stats.records_processed) == (1, 0, 101)
    assert day_revenue(realtime_stack, "s-001") == Decimal("100.00")
    [line] = realtime_stack.quarantined()
    assert line["sequence_number"] == seqs[50]
    assert "9999-12-31T23:59:59+00:00 is" in line["reason"]
    assert "after its arrival" in line["reason"]
    assert setup.on_failure_messages() == []


def wait_for_the_new_code(runtime: LocalLambdaRuntime) -> None:
    """Like Lambda after UpdateFunctionCode, the runtime switches within moments, not at once:
    one discovery interval, then a pass that reads the function's new CodeSha256."""
    time.sleep(runtime.discovery_interval * 2)
    runtime.run_until_idle(timeout=30)


def test_a_dependency_missing_from_the_zip_fails_as_on_lambda_and_a_fixed_deploy_recovers(
    setup, runtimes, realtime_stack, stream_processor_zip
) -> None:
    """The package without aws_lambda_powertools: the import fails in the worker exactly as on
    Lambda, the record is retried then sent to the on-failure queue with the reason. The intact
    package, deployed over it, counts the next sale."""
    broken = without(stream_processor_zip, "aws_lambda_powertools")
    name = stream_processor(setup, realtime_stack, broken)
    setup.mapping(name)
    lost = sale("s-001", "o-lost", "7.00")
    put_events(setup, lost)
    runtime = runtimes()
    runtime.run_until_idle(timeout=60)

    [message] = setup.on_failure_messages()
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["responseContext"]["functionError"] == "Unhandled"
    assert message["replay"]["reason"] == (
        "Runtime.ImportModuleError: Unable to import module 'handler': "
        "No module named 'aws_lambda_powertools'"
    )
    assert day_revenue(realtime_stack, "s-001") is None

    setup.redeploy(name, stream_processor_zip)  # a new CodeSha256: fetched and run
    wait_for_the_new_code(runtime)
    put_events(setup, sale("s-001", "o-kept", "2.50"))
    runtime.run_until_idle(timeout=60)
    assert day_revenue(realtime_stack, "s-001") == Decimal("2.50")
    assert setup.on_failure_messages() == []


PROBE = b"""
import json, os, sys
import boto3

print("probe loaded")  # the runtime's log

def handler(event, context):
    boto3.client("s3").put_object(
        Bucket=os.environ["PROBE_BUCKET"],
        Key=context.aws_request_id,
        Body=json.dumps({
            "caller": boto3.client("sts").get_caller_identity()["Arn"],
            "greeting": os.environ.get("GREETING"),
            "records": len(event["Records"]),
            "function_name": context.function_name,
            "memory": context.memory_limit_in_mb,
            "remaining": context.get_remaining_time_in_millis(),
            "path": sys.path,
            "pid": os.getpid(),
            "version": VERSION,
        }),
    )
"""


def test_a_deployed_function_runs_its_package_with_its_role_and_environment(
    setup, runtimes
) -> None:
    s3 = setup.aws("s3")
    s3.create_bucket(Bucket="probe-results")
    setup.function(
        code=zipped({"handler.py": PROBE + b"VERSION = 1\n"}),
        PROBE_BUCKET="probe-results",
        GREETING="hello",
    )
    setup.mapping()
    setup.put(SHARD_0, b"a", b"b")
    runtime = runtimes()
    runtime.run_until_idle(timeout=30)
    setup.put(SHARD_0, b"c")
    runtime.run_until_idle(timeout=30)

    def results() -> list[dict[str, Any]]:
        listing = s3.list_objects_v2(Bucket="probe-results").get("Contents", [])
        return [
            json.loads(s3.get_object(Bucket="probe-results", Key=o["Key"])["Body"].read())
            for o in listing
        ]

    first, second = sorted(results(), key=lambda r: -r["records"])
    assert first["caller"] == f"arn:aws:sts::123456789012:assumed-role/{ROLE}/{FUNCTION}"
    assert (first["greeting"], first["function_name"], first["memory"]) == (
        "hello",
        FUNCTION,
        "256",
    )
    assert 0 < first["remaining"] <= 30_000
    assert first["pid"] == second["pid"] != os.getpid()  # one warm worker, not this process
    assert not any("site-packages" in p for p in first["path"])

    setup.redeploy(FUNCTION, zipped({"handler.py": PROBE + b"VERSION = 2\n"}))
    wait_for_the_new_code(runtime)
    setup.put(SHARD_0, b"d")
    runtime.run_until_idle(timeout=30)
    assert sorted(r["version"] for r in results()) == [1, 1, 2]
