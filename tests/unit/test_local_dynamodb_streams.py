"""The embedded AWS's DynamoDB Streams (storepulse_local.dynamodb_streams): a stream record
lives 24 hours, as on AWS, by its arrival on the embedded AWS's clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from storepulse_local import dynamodb_export
from storepulse_local.dynamodb_streams import RETENTION_SECONDS

TABLE = "facts"
START = 1_796_000_000.0  # 2026-12-01: any moment does


class _Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Iterator[_Clock]:
    clock = _Clock()
    dynamodb_export.set_clock(clock)
    yield clock
    dynamodb_export.set_clock(None)


@pytest.fixture
def streams(aws_client, clock: _Clock) -> tuple[Any, Any, str]:
    """A table with a stream on the embedded AWS (whose DynamoDB clock is the test's)."""
    dynamodb = aws_client("dynamodb")
    arn = dynamodb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]["LatestStreamArn"]
    return dynamodb, aws_client("dynamodbstreams"), arn


def _put(dynamodb: Any, *keys: str) -> None:
    for key in keys:
        dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": key}})


def _read(client: Any, arn: str, **position: str) -> list[tuple[str, str]]:
    (shard,) = client.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = client.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], **position)
    records = client.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    return [(r["dynamodb"]["Keys"]["pk"]["S"], r["dynamodb"]["SequenceNumber"]) for r in records]


def test_records_past_the_retention_period_are_dropped_as_on_aws(streams, clock) -> None:
    dynamodb, client, arn = streams
    _put(dynamodb, "a", "b")
    clock.now += RETENTION_SECONDS / 2
    _put(dynamodb, "c")
    before = _read(client, arn, ShardIteratorType="TRIM_HORIZON")
    clock.now += RETENTION_SECONDS / 2 + 1  # a and b are a day and a second old
    _put(dynamodb, "d")

    kept = _read(client, arn, ShardIteratorType="TRIM_HORIZON")
    assert [key for key, _ in kept] == ["c", "d"]
    assert kept[0] == before[2]  # the same sequence numbers as before the trim
    a_number = before[0][1]
    after_a = _read(client, arn, ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=a_number)
    assert [key for key, _ in after_a] == ["c", "d"]  # a reader behind the trim: what is left
    (shard,) = client.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    assert shard["SequenceNumberRange"]["StartingSequenceNumber"] == a_number


def test_a_stream_without_writes_expires_on_read(streams, clock) -> None:
    dynamodb, client, arn = streams
    _put(dynamodb, "a")
    clock.now += RETENTION_SECONDS + 1
    assert _read(client, arn, ShardIteratorType="TRIM_HORIZON") == []
    _put(dynamodb, "b")
    assert [key for key, _ in _read(client, arn, ShardIteratorType="LATEST")] == []
    assert [key for key, _ in _read(client, arn, ShardIteratorType="TRIM_HORIZON")] == ["b"]


def test_a_kept_record_reads_both_images_and_is_held_packed(streams, clock) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    dynamodb, client, arn = streams
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "n": {"N": "2"}})

    (shard,) = client.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = client.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = client.get_records(ShardIterator=iterator)["Records"]
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY"]
    assert records[1]["dynamodb"]["OldImage"] == {"pk": {"S": "a"}, "n": {"N": "1"}}
    assert records[1]["dynamodb"]["NewImage"] == {"pk": {"S": "a"}, "n": {"N": "2"}}
    table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables[TABLE]
    assert all(
        set(vars(r)) == {"_storepulse_arrived", "_storepulse_packed"}
        for r in table.stream_shard.items
    )


def test_a_record_being_packed_reads_whole_from_another_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A GetRecords in another thread may read a record while the write that added it packs it:
    it finds the record built or packed, never neither (it once raised KeyError there)."""
    from types import SimpleNamespace

    from storepulse_local import dynamodb_streams

    built = {"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "a"}}}}
    record = SimpleNamespace(record=dict(built))
    seen_while_packing: list[dict[str, Any]] = []
    compress = dynamodb_streams.zlib.compress

    def compress_and_read(data: bytes, level: int) -> bytes:
        seen_while_packing.append(dynamodb_streams._unpacked(record))  # the other thread
        return compress(data, level)

    monkeypatch.setattr(dynamodb_streams.zlib, "compress", compress_and_read)
    dynamodb_streams.pack(record)

    assert seen_while_packing == [built]
    assert "record" not in vars(record)
    assert dynamodb_streams._unpacked(record) == built
