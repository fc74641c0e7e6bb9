"""The embedded AWS's Kinesis (storepulse_local.kinesis): AWS's retention period, and reads
from an iterator's position that return what moto's walk of the whole shard returned."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from storepulse_local.kinesis import HOUR, patch_kinesis

STREAM = "events"


@pytest.fixture
def kinesis(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto import settings

    # An in-process moto, with no access control: an embedded AWS that an earlier test of this
    # worker started switched it on for the whole process (storepulse_local.iam.enforce).
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
    patch_kinesis()
    with mock_aws():
        client = boto3.client("kinesis", region_name="us-east-1")
        client.create_stream(StreamName=STREAM, ShardCount=1)
        yield client


def _put(client: Any, *payloads: str) -> list[str]:
    return [
        client.put_record(StreamName=STREAM, Data=p.encode(), PartitionKey="k")["SequenceNumber"]
        for p in payloads
    ]


def _read(client: Any, limit: int = 100, **position: str) -> list[str]:
    iterator = client.get_shard_iterator(
        StreamName=STREAM, ShardId="shardId-000000000000", **position
    )["ShardIterator"]
    records = client.get_records(ShardIterator=iterator, Limit=limit)["Records"]
    return [r["Data"].decode() for r in records]


def _shard() -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.kinesis.models import kinesis_backends

    stream = kinesis_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].streams[STREAM]
    return stream.get_shard("shardId-000000000000")


def test_reads_start_after_the_checkpoint_and_stop_at_the_limit(kinesis: Any) -> None:
    numbers = _put(kinesis, "a", "b", "c", "d", "e")

    after_b = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": numbers[1]}
    assert _read(kinesis, **after_b) == ["c", "d", "e"]
    assert _read(kinesis, limit=2, **after_b) == ["c", "d"]
    assert _read(kinesis, ShardIteratorType="TRIM_HORIZON") == ["a", "b", "c", "d", "e"]
    assert _read(kinesis, ShardIteratorType="LATEST") == []


def test_records_past_the_retention_period_are_dropped_as_on_aws(kinesis: Any) -> None:
    numbers = _put(kinesis, "old", "older", "kept")
    for record in list(_shard().records.values())[:2]:
        record.created_at -= 25 * HOUR  # the stream keeps 24 h

    assert _read(kinesis, ShardIteratorType="TRIM_HORIZON") == ["kept"]
    after_old = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": numbers[0]}
    assert _read(kinesis, **after_old) == ["kept"]  # a checkpoint behind the trim: the rest
    _put(kinesis, "new")
    assert list(_shard().records) == [3, 4]


def test_a_shard_with_a_gap_is_read_whole(kinesis: Any) -> None:
    _put(kinesis, "a", "b", "c")
    del _shard().records[2]

    assert _read(kinesis, ShardIteratorType="TRIM_HORIZON") == ["a", "c"]


@pytest.mark.slow  # moto's CloudFormation and Lambda in process: tens of seconds under load
def test_a_stack_with_enhanced_fan_out_gets_its_consumer_and_a_mapping_through_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """moto's CloudFormation skips AWS::Kinesis::StreamConsumer and its Lambda refuses a
    consumer's ARN as a mapping's source: the embedded AWS creates and accepts both."""
    import json

    from moto import settings

    from storepulse_local.kinesis import patch_stream_consumers

    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
    patch_stream_consumers()
    template = {
        "Resources": {
            "Stream": {"Type": "AWS::Kinesis::Stream", "Properties": {"ShardCount": 1}},
            "Consumer": {
                "Type": "AWS::Kinesis::StreamConsumer",
                "Properties": {
                    "ConsumerName": "reader",
                    "StreamARN": {"Fn::GetAtt": ["Stream", "Arn"]},
                },
            },
        },
        "Outputs": {"Consumer": {"Value": {"Fn::GetAtt": ["Consumer", "ConsumerARN"]}}},
    }
    with mock_aws():
        cfn = boto3.client("cloudformation", region_name="us-east-1")
        cfn.create_stack(StackName="s", TemplateBody=json.dumps(template))
        outputs = cfn.describe_stacks(StackName="s")["Stacks"][0]["Outputs"]
        consumer_arn = outputs[0]["OutputValue"]
        stream_arn = consumer_arn.split("/consumer/")[0]
        kinesis = boto3.client("kinesis", region_name="us-east-1")
        listed = kinesis.list_stream_consumers(StreamARN=stream_arn)["Consumers"]
        assert [c["ConsumerARN"] for c in listed] == [consumer_arn]

        lam = boto3.client("lambda", region_name="us-east-1")
        iam = boto3.client("iam", region_name="us-east-1")
        role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        lam.create_function(
            FunctionName="f",
            Runtime="python3.11",
            Role=role,
            Handler="h.h",
            Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
        )
        mapping = lam.create_event_source_mapping(
            EventSourceArn=consumer_arn, FunctionName="f", StartingPosition="TRIM_HORIZON"
        )
        assert mapping["EventSourceArn"] == consumer_arn
        with pytest.raises(lam.exceptions.ResourceNotFoundException):
            lam.create_event_source_mapping(
                EventSourceArn=f"{stream_arn}/consumer/unknown", FunctionName="f"
            )
