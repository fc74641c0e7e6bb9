"""The Kinesis records of a Lambda event, as the handler sees them."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from storepulse.layout import padded_sequence


@dataclass(frozen=True)
class StreamRecord:
    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    arrived_at: datetime

    @property
    def position(self) -> str:
        """Sortable position within the shard (the zero-padded sequence number)."""
        return padded_sequence(self.sequence_number)


def records_from_event(event: dict[str, Any]) -> list[StreamRecord]:
    """Decode the Kinesis event-source-mapping envelope, in delivery order."""
    records = []
    for entry in event.get("Records", []):
        kinesis = entry["kinesis"]
        records.append(
            StreamRecord(
                shard_id=entry["eventID"].split(":", 1)[0],
                sequence_number=kinesis["sequenceNumber"],
                partition_key=kinesis["partitionKey"],
                data=base64.b64decode(kinesis["data"]),
                arrived_at=datetime.fromtimestamp(
                    float(kinesis["approximateArrivalTimestamp"]), UTC
                ),
            )
        )
    return records


def lambda_event(
    records: list[StreamRecord], stream_arn: str, region: str, role_arn: str
) -> dict[str, Any]:
    """The event Lambda's Kinesis event source mapping sends for ``records`` (one shard);
    ``role_arn`` is the function's execution role."""
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": base64.b64encode(r.data).decode(),
                    "approximateArrivalTimestamp": r.arrived_at.timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{r.shard_id}:{r.sequence_number}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": role_arn,
                "awsRegion": region,
                "eventSourceARN": stream_arn,
            }
            for r in records
        ]
    }
