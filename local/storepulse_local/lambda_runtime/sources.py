"""The two stream sources the runtime polls: Kinesis and DynamoDB Streams.

Both are sharded logs read with GetShardIterator/GetRecords, so the shard workers, batching,
checkpoints, retries and bisection are shared (``shards``, ``failures``); only what differs lives
here: the client, how shards are listed and iterators opened, the records' shape, the Lambda
event and the on-failure record's batch info. A DynamoDB Streams record is carried as AWS's
GetRecords answers it and handed to the function in the shape Lambda sends
(``ApproximateCreationDateTime`` in epoch seconds, ``eventSourceARN`` added, a TTL deletion's
``userIdentity`` with Lambda's lower-case keys).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from storepulse.layout import padded_sequence
from storepulse.stream.records import StreamRecord, lambda_event


@dataclass(frozen=True)
class ChangeRecord:
    """One DynamoDB Streams record; ``entry`` is its Lambda event entry without the ARN."""

    shard_id: str
    sequence_number: str
    arrived_at: datetime  # ApproximateCreationDateTime
    entry: Mapping[str, Any]

    @property
    def position(self) -> str:
        return padded_sequence(self.sequence_number)


PolledRecord = StreamRecord | ChangeRecord


class Source(Protocol):
    service: str  # boto3 client name
    batch_info_key: str  # of the on-failure record

    def list_shards(self, client: Any, arn: str) -> list[dict[str, Any]]: ...

    def iterator(self, client: Any, arn: str, shard_id: str, position: dict[str, Any]) -> str: ...

    def records(self, shard_id: str, raw: Sequence[Mapping[str, Any]]) -> list[Any]: ...

    def event(self, records: Sequence[Any], arn: str, region: str, role: str) -> dict[str, Any]: ...

    def replay_entry(self, record: Any, with_data: bool) -> dict[str, Any]: ...


def _iso_millis(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stream_name(arn: str) -> str:
    """The Kinesis stream's (or DynamoDB table's) name in a stream, consumer or table ARN."""
    return arn.split(":", 5)[5].split("/")[1]


class KinesisSource:
    service: Final = "kinesis"
    batch_info_key: Final = "KinesisBatchInfo"

    def list_shards(self, client: Any, arn: str) -> list[dict[str, Any]]:
        # A loop, not boto3's paginator: that one sends StreamName again with NextToken, which
        # Kinesis refuses past 1,000 shards (boto/botocore#2009).
        shards: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"StreamName": stream_name(arn)}
        while True:
            page = client.list_shards(**kwargs)
            shards += page["Shards"]
            if not page.get("NextToken"):
                return shards
            kwargs = {"NextToken": page["NextToken"]}

    def iterator(self, client: Any, arn: str, shard_id: str, position: dict[str, Any]) -> str:
        return client.get_shard_iterator(StreamName=stream_name(arn), ShardId=shard_id, **position)[
            "ShardIterator"
        ]

    def records(self, shard_id: str, raw: Sequence[Mapping[str, Any]]) -> list[StreamRecord]:
        return [
            StreamRecord(
                shard_id=shard_id,
                sequence_number=r["SequenceNumber"],
                partition_key=r["PartitionKey"],
                data=bytes(r["Data"]),
                arrived_at=r["ApproximateArrivalTimestamp"].astimezone(UTC),
            )
            for r in raw
        ]

    def event(
        self, records: Sequence[StreamRecord], arn: str, region: str, role: str
    ) -> dict[str, Any]:
        return lambda_event(list(records), arn, region, role)

    def replay_entry(self, record: StreamRecord, with_data: bool) -> dict[str, Any]:
        return {
            "sequenceNumber": record.sequence_number,
            "partitionKey": record.partition_key,
            "approximateArrivalTimestamp": _iso_millis(record.arrived_at),
            **({"data": base64.b64encode(record.data).decode()} if with_data else {}),
        }


def _jsonable(value: Any) -> Any:
    """Attribute values as JSON: boto3 answers binary (B, BS) as bytes, Lambda sends base64."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    return value


class DynamoDBStreamSource:
    service: Final = "dynamodbstreams"
    batch_info_key: Final = "DDBStreamBatchInfo"

    def list_shards(self, client: Any, arn: str) -> list[dict[str, Any]]:
        # A loop, not boto3's paginator: that one sends StreamName again with NextToken, which
        # Kinesis refuses past 1,000 shards (boto/botocore#2009).
        shards: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"StreamArn": arn}
        while True:
            description = client.describe_stream(**kwargs)["StreamDescription"]
            shards += description["Shards"]
            last = description.get("LastEvaluatedShardId")
            if not last:
                return shards
            kwargs = {"StreamArn": arn, "ExclusiveStartShardId": last}

    def iterator(self, client: Any, arn: str, shard_id: str, position: dict[str, Any]) -> str:
        # DynamoDB Streams has no AT_TIMESTAMP iterator: LATEST is read as LATEST (mappings on
        # DynamoDB tables should start at TRIM_HORIZON, as the template's does).
        if position["ShardIteratorType"] == "AT_TIMESTAMP":
            position = {"ShardIteratorType": "LATEST"}
        kwargs = {"StreamArn": arn, "ShardId": shard_id, **position}
        if "StartingSequenceNumber" in kwargs:
            kwargs["SequenceNumber"] = kwargs.pop("StartingSequenceNumber")
        return client.get_shard_iterator(**kwargs)["ShardIterator"]

    def records(self, shard_id: str, raw: Sequence[Mapping[str, Any]]) -> list[ChangeRecord]:
        changes = []
        for r in raw:
            stream = dict(r["dynamodb"])
            created = stream["ApproximateCreationDateTime"]
            arrived = (
                created.astimezone(UTC)
                if isinstance(created, datetime)
                else datetime.fromtimestamp(float(created), UTC)
            )
            # Lambda sends whole epoch seconds, as DynamoDB Streams records them.
            stream["ApproximateCreationDateTime"] = int(arrived.timestamp())
            entry = {
                "eventID": r["eventID"],
                "eventName": r["eventName"],
                "eventVersion": r.get("eventVersion", "1.1"),
                "eventSource": "aws:dynamodb",
                "awsRegion": r.get("awsRegion"),
                "dynamodb": _jsonable(stream),
            }
            if identity := r.get("userIdentity"):  # a TTL deletion's: the service's
                entry["userIdentity"] = {
                    "type": identity["Type"],
                    "principalId": identity["PrincipalId"],
                }
            changes.append(ChangeRecord(shard_id, stream["SequenceNumber"], arrived, entry))
        return changes

    def event(
        self, records: Sequence[ChangeRecord], arn: str, region: str, role: str
    ) -> dict[str, Any]:
        return {
            "Records": [{**r.entry, "awsRegion": region, "eventSourceARN": arn} for r in records]
        }

    def replay_entry(self, record: ChangeRecord, with_data: bool) -> dict[str, Any]:
        return {
            "sequenceNumber": record.sequence_number,
            "approximateCreationDateTime": _iso_millis(record.arrived_at),
            **({"record": json.loads(json.dumps(record.entry))} if with_data else {}),
        }


KINESIS: Final = KinesisSource()
DYNAMODB_STREAMS: Final = DynamoDBStreamSource()


def source_of(arn: str) -> Source | None:
    """The source an event source ARN names, or None (queues, Kafka...: not polled here)."""
    parts = arn.split(":", 5)
    if len(parts) != 6:
        return None
    if parts[2] == "kinesis" and parts[5].startswith("stream/"):
        return KINESIS
    if parts[2] == "dynamodb" and parts[5].startswith("table/") and "/stream/" in parts[5]:
        return DYNAMODB_STREAMS
    return None
