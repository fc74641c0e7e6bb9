"""The embedded AWS keeps its state across a clean stop and a kill -9: the process is started,
filled, stopped, and started again on the same state directory."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from storepulse.config import LOOPBACK
from storepulse_local.embedded_aws import EmbeddedAwsError, is_healthy
from storepulse_local.persistence import SNAPSHOT_FILE, SNAPSHOT_INTERVAL
from tests.integration.conftest import provision_realtime_stack
from tests.integration.test_cloudformation_stack import CODE_BUCKET, DEV_PARAMETERS, TEMPLATE

pytestmark = [
    pytest.mark.filterwarnings("ignore:Tried to parse AWS.+:UserWarning"),
]
STACK = "storepulse-dev-realtime"
Client = Callable[[str], Any]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class Server:
    """``python -m storepulse_local.embedded_aws`` on a state dir, as the platform runs it."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir, self.port = state_dir, _free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "storepulse_local.embedded_aws", "--port", str(self.port)]
        log = (self.state_dir / "aws.log").open("ab")
        argv += ["--state-dir", str(self.state_dir)]
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240  # a loaded 2-core machine: minutes, as for make up
        while not is_healthy(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise EmbeddedAwsError(f"did not start: {self.process.poll()}")
            time.sleep(0.2)

    def stop(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=60)

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    running.start()
    yield running
    if running.process and running.process.poll() is None:
        running.stop(signal.SIGKILL)


def _fill(server: Server) -> dict[str, Any]:
    """The real-time stack from its template, then one of each kind of data."""
    code = b"PK\x05\x06" + b"\x00" * 18  # an empty zip: the function is never invoked here
    s3, cfn = server.client("s3"), server.client("cloudformation")
    s3.create_bucket(Bucket=CODE_BUCKET)
    s3.put_object(Bucket=CODE_BUCKET, Key="code.zip", Body=code)
    parameters = [
        *json.loads(DEV_PARAMETERS.read_text()),
        {"ParameterKey": "LambdaCodeBucket", "ParameterValue": CODE_BUCKET},
        {"ParameterKey": "LambdaCodeKey", "ParameterValue": "code.zip"},
    ]
    cfn.create_stack(
        StackName=STACK,
        TemplateBody=TEMPLATE.read_text(),
        Parameters=parameters,
        Capabilities=["CAPABILITY_IAM"],
    )
    cfn.get_waiter("stack_create_complete").wait(
        StackName=STACK, WaiterConfig={"Delay": 1, "MaxAttempts": 20}
    )
    (stack,) = cfn.describe_stacks(StackName=STACK)["Stacks"]
    out = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    server.client("dynamodb").put_item(
        TableName=out["MetricsTable"], Item={"pk": {"S": "p"}, "sk": {"S": "s"}}
    )
    s3.put_object(Bucket=out["LakeBucket"], Key="raw/x.json", Body=b"{}")
    server.client("kinesis").put_record(
        StreamName=out["StreamName"], Data=b"unread", PartitionKey="k"
    )
    server.client("sqs").send_message(QueueUrl=out["DeadLetterQueueUrl"], MessageBody="dlq")
    server.client("sns").subscribe(
        TopicArn=out["AlertTopicArn"], Protocol="sqs", Endpoint=out["DeadLetterQueueArn"]
    )
    return out


def _durable(server: Server) -> None:
    """Until a snapshot begun after this call is on disk (the first one to end may have been
    forked before): a tick queue is written to meanwhile, so snapshots keep being due."""
    sqs = server.client("sqs")
    tick = sqs.create_queue(QueueName="tick")["QueueUrl"]
    path = server.state_dir / "aws" / SNAPSHOT_FILE
    seen = {path.stat().st_ino if path.exists() else 0}
    deadline = time.monotonic() + 120
    while len(seen) < 3 and time.monotonic() < deadline:
        sqs.send_message(QueueUrl=tick, MessageBody="tick")
        if path.exists():
            seen.add(path.stat().st_ino)  # each snapshot is a new file renamed over the last
        time.sleep(0.2)
    assert len(seen) == 3, "no new snapshot within 120 s"


def _check(server: Server, out: dict[str, Any]) -> None:
    (stack,) = server.client("cloudformation").describe_stacks(StackName=STACK)["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    item = server.client("dynamodb").get_item(
        TableName=out["MetricsTable"], Key={"pk": {"S": "p"}, "sk": {"S": "s"}}
    )
    assert "Item" in item
    body = server.client("s3").get_object(Bucket=out["LakeBucket"], Key="raw/x.json")["Body"]
    assert body.read() == b"{}"
    kinesis = server.client("kinesis")
    shard = kinesis.list_shards(StreamName=out["StreamName"])["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName=out["StreamName"], ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator)["Records"]
    assert [r["Data"] for r in records] == [b"unread"]
    messages = server.client("sqs").receive_message(QueueUrl=out["DeadLetterQueueUrl"])
    assert [m["Body"] for m in messages["Messages"]] == ["dlq"]
    subscriptions = server.client("sns").list_subscriptions_by_topic(TopicArn=out["AlertTopicArn"])[
        "Subscriptions"
    ]
    assert out["DeadLetterQueueArn"] in [s["Endpoint"] for s in subscriptions]
    assert server.client("lambda").get_function(FunctionName=out["FunctionName"])


def test_everything_survives_a_clean_stop(server: Server) -> None:
    out = _fill(server)

    server.stop(signal.SIGTERM)  # the final snapshot is written on SIGTERM
    server.start()

    _check(server, out)


def test_a_kill_loses_only_what_came_after_the_last_snapshot(server: Server) -> None:
    out = _fill(server)
    time.sleep(2 * SNAPSHOT_INTERVAL + 1)  # a periodic snapshot has taken all of it

    server.stop(signal.SIGKILL)  # no final snapshot
    server.start()

    _check(server, out)


def test_a_snapshot_of_another_version_is_refused(server: Server) -> None:
    snapshot = server.state_dir / "aws" / SNAPSHOT_FILE
    server.client("sqs").create_queue(QueueName="q")
    server.stop(signal.SIGTERM)
    header, _, body = snapshot.read_bytes().partition(b"\n")
    snapshot.write_bytes(header.replace(b'"moto": "', b'"moto": "0.') + b"\n" + body)

    with pytest.raises(EmbeddedAwsError):
        server.start()

    assert "make reset" in (server.state_dir / "aws.log").read_text()


def test_the_deploy_after_a_restart_finds_its_stack_and_changes_nothing(
    server: Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from storepulse.deploy.package import build_lambda_zip
    from tests.integration.test_deploy import FUNCTION_DIR, Deployer

    package = build_lambda_zip(FUNCTION_DIR, tmp_path_factory.mktemp("build"))
    deploy = Deployer(server.client)
    assert deploy(package).action == "create"

    server.stop(signal.SIGTERM)
    server.start()

    again = deploy(package)
    assert (again.action, again.change_set, again.changes) == ("none", None, ())


def _alert_stack(server: Server) -> tuple[str, str]:
    """Tables with the test catalogue (a traffic-spike rule, 30 min cooldown), a lake, the alert
    topic and an inbox queue subscribed to it: (topic ARN, queue URL)."""
    from storepulse.layout import Table, table_name
    from storepulse_local.provision import create_tables
    from tests.integration.conftest import _put_settings

    create_tables(server.client("dynamodb"))
    server.client("s3").create_bucket(Bucket="lake")
    topic = server.client("sns").create_topic(Name="alerts")["TopicArn"]
    sqs = server.client("sqs")
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    server.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn["QueueArn"])
    dynamodb = boto3.resource("dynamodb", endpoint_url=server.url, region_name="us-east-1")
    _put_settings(dynamodb.Table(table_name(Table.SETTINGS)))
    return topic, queue


def _processor(server: Server, topic: str, clock: Any) -> Any:
    from storepulse.stream.processor import StreamProcessor, StreamResources

    environ = {"STOREPULSE_LAKE_BUCKET": "lake", "STOREPULSE_ALERT_TOPIC_ARN": topic}
    return StreamProcessor(
        dynamodb=boto3.resource("dynamodb", endpoint_url=server.url, region_name="us-east-1"),
        s3=server.client("s3"),
        sns=server.client("sns"),
        resources=StreamResources.from_environment(environ),
        clock=clock,
    )


def test_an_alert_reaches_the_inbox_once_across_a_kill_and_a_late_redelivery(
    server: Server,
) -> None:
    """A traffic spike alerts; a snapshot has it; kill -9; the restored checkpoints deliver the
    batch again two hours later (past the rule's cooldown): the inbox holds the alert once."""
    from storepulse.clock import FrozenClock
    from tests.integration.test_stream_processor import NOON_PARIS, Stream, page_view

    topic, queue = _alert_stack(server)
    clock, stream = FrozenClock(NOON_PARIS), Stream()
    start = NOON_PARIS - timedelta(minutes=65)
    baseline = [page_view("s-001", f"b-{i}", start + timedelta(minutes=i)) for i in range(60)]
    burst = [page_view("s-001", f"x-{i}", NOON_PARIS - timedelta(seconds=i)) for i in range(40)]
    alerted = stream.records(*burst)
    processor = _processor(server, topic, clock)
    processor.process(stream.records(*baseline))
    assert processor.process(alerted).alerts_sent == 1
    time.sleep(2 * SNAPSHOT_INTERVAL + 1)  # a periodic snapshot has the alert and its cooldown

    server.stop(signal.SIGKILL)
    server.start()
    clock.advance(hours=2)
    assert _processor(server, topic, clock).process(alerted).alerts_sent == 0

    sqs = server.client("sqs")
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    bodies = [json.loads(json.loads(m["Body"])["Message"]) for m in messages["Messages"]]
    assert [b["type"] for b in bodies] == ["traffic_spike"]


def _business(stack: Any) -> dict[str, Any]:
    """What a user checks: every item of every table (totals, facts, stock, settings) and every
    object of the lake (raw, curated partitions, their manifests, quality results)."""
    from storepulse.layout import Table, table_name

    tables = {
        kind.value: sorted(
            stack.table(kind).scan()["Items"], key=lambda item: (item["pk"], item["sk"])
        )
        for kind in Table
        if stack.dynamodb.meta.client.list_tables()["TableNames"].count(table_name(kind))
    }
    keys = [
        entry["Key"]
        for page in stack.s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket)
        for entry in page.get("Contents", [])
    ]
    lake = {key: stack.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() for key in keys}
    return {"tables": tables, "lake": lake}


KILL_9 = pytest.param(signal.SIGKILL, id="kill-9", marks=pytest.mark.slow)  # waits for snapshots


@pytest.mark.parametrize("stop", [pytest.param(signal.SIGTERM, id="clean"), KILL_9])
def test_an_exported_day_is_the_same_after_a_restart_and_later_events_count_once(
    server: Server, monkeypatch: pytest.MonkeyPatch, stop: signal.Signals
) -> None:
    """A day through the handler and the nightly export's stage, audit and publish; stop (clean,
    or kill -9 after a snapshot): the next start has the same totals, curated partitions,
    manifests and settings; the day's batch delivered again and a new sale count once."""
    from storepulse.clock import FrozenClock
    from storepulse.config import settings
    from storepulse_local.lambda_context import LambdaContext
    from tests.integration.conftest import FROZEN_NOW, invoke, load_handler
    from tests.integration.test_export import DAY, put_a_day
    from tests.integration.test_nightly_export import dynamodb_orders, run_day
    from tests.integration.test_stream_processor import NOON_PARIS, Stream, sale

    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    settings.cache_clear()
    stack = provision_realtime_stack(monkeypatch)
    handler = load_handler(FrozenClock(FROZEN_NOW))
    delivered, deliver = [], handler.handler
    handler.handler = lambda event, context: delivered.append(event) or deliver(event, context)
    put_a_day(handler)
    assert run_day(stack).audit.success
    before, orders = _business(stack), dynamodb_orders(stack, DAY)
    if stop == signal.SIGKILL:
        _durable(server)

    server.stop(stop)
    server.start()

    assert _business(stack) == before
    handler.processor.cache_clear()  # its clients were the stopped server's
    for event in delivered:  # the day's batch again, as a rewound checkpoint delivers it
        deliver(event, LambdaContext("storepulse-dev-stream-processor"))
    assert _business(stack)["tables"] == before["tables"]
    stream = Stream()
    stream.next_sequence += 1_000  # after the day's records, on the same shard
    at = NOON_PARIS + timedelta(hours=1)
    later = sale("s-002", "o-after", at, ("tea-100g", 1, "0.20"))
    invoke(handler, stream.records(later, later, arrived_at=at))  # a producer's resend
    assert dynamodb_orders(stack, DAY) == orders | {"o-after": ("s-002", Decimal("0.20"), 1)}
