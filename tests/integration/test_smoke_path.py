"""The deploy's smoke event travels the whole real-time path and changes no business number."""

from __future__ import annotations

import json
from types import ModuleType

from storepulse.export.datasets import DATASETS
from storepulse.layout import Table
from storepulse.stream import smoke
from storepulse_local.platform.demo import alerts_inbox
from tests.integration.conftest import FROZEN_NOW, RealtimeStack, invoke
from tests.integration.test_stream_processor import Stream, stock_take


def _subscribe(stack: RealtimeStack, name: str, policy: dict | None) -> str:
    url = stack.sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = stack.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    attributes = {"RawMessageDelivery": "true"}
    if policy is not None:
        attributes["FilterPolicy"] = json.dumps(policy)
    stack.sns.subscribe(
        TopicArn=stack.topic_arn, Protocol="sqs", Endpoint=arn, Attributes=attributes
    )
    return url


def _items(stack: RealtimeStack, table: Table) -> list[dict]:
    return stack.table(table).scan(ConsistentRead=True)["Items"]


def test_smoke_is_answered_after_every_step(
    handler: ModuleType, realtime_stack: RealtimeStack
) -> None:
    people = _subscribe(realtime_stack, "people", smoke.SUBSCRIBER_FILTER)
    everything = _subscribe(realtime_stack, "everything", None)
    marked, stream = smoke.smoke_event(lambda: FROZEN_NOW), Stream()
    assert invoke(handler, stream.records(marked)) == {"batchItemFailures": []}

    facts = realtime_stack.table(Table.FACTS)
    answer = facts.get_item(Key=smoke.smoke_key(marked.event_id).as_item())["Item"]
    assert answer["steps"] == list(smoke.STEPS)
    sqs = realtime_stack.sqs
    (alert,) = sqs.receive_message(QueueUrl=everything, WaitTimeSeconds=1)["Messages"]
    assert json.loads(alert["Body"])["type"] == smoke.SMOKE_ALERT_TYPE
    assert sqs.receive_message(QueueUrl=people).get("Messages", []) == []
    raw = realtime_stack.s3.list_objects_v2(Bucket=realtime_stack.bucket, Prefix="raw/")
    assert raw["KeyCount"] == 1

    invoke(handler, stream.records(stock_take("s-001", "mug-blue", 1, FROZEN_NOW)))
    (low_stock,) = sqs.receive_message(QueueUrl=people, WaitTimeSeconds=1)["Messages"]
    assert json.loads(low_stock["Body"])["type"] == "low_stock"  # the filter lets others through


def test_no_export_or_dashboard_item_comes_from_a_smoke_event(
    handler: ModuleType, realtime_stack: RealtimeStack
) -> None:
    invoke(handler, Stream().records(smoke.smoke_event(lambda: FROZEN_NOW)))
    day = FROZEN_NOW.date()
    for dataset in DATASETS.values():
        selected = [i for i in _items(realtime_stack, dataset.table) if dataset.selects(i, day)]
        assert selected == [], dataset.name
    written = {t: _items(realtime_stack, t) for t in (Table.METRICS, Table.INVENTORY)}
    assert {i["pk"] for items in written.values() for i in items} == {f"SMOKE#{smoke.SMOKE_STORE}"}
    facts = {i["pk"].split("#")[0] for i in _items(realtime_stack, Table.FACTS)}
    assert facts == {"SMOKE", "SEEN"}  # the answer and the claimed event: no alert log, no order


def test_the_local_alerts_inbox_gets_every_alert_but_the_smoke(
    realtime_stack: RealtimeStack,
) -> None:
    inbox = alerts_inbox(realtime_stack.topic_arn)
    for kind in (smoke.SMOKE_ALERT_TYPE, "low_stock"):
        realtime_stack.sns.publish(
            TopicArn=realtime_stack.topic_arn,
            Message=json.dumps({"type": kind}),
            MessageAttributes={"type": {"DataType": "String", "StringValue": kind}},
        )
    messages = realtime_stack.sqs.receive_message(
        QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=1
    )["Messages"]
    assert [json.loads(json.loads(m["Body"])["Message"])["type"] for m in messages] == ["low_stock"]
