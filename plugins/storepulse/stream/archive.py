"""The lake's raw and quarantine zones: what a batch received, kept for replay and audit.

Objects are named after the shard and the batch's first and last sequence numbers, and gzipped
without a timestamp, so a retried batch overwrites its own object with the same bytes.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from storepulse.lake.paths import QUARANTINE_EVENTS, RAW_EVENTS
from storepulse.stream.records import StreamRecord


@dataclass(frozen=True)
class Rejected:
    record: StreamRecord
    reason: str
    details: dict[str, str] = field(default_factory=dict)  # e.g. a conflict's both hashes


def _object_key(prefix: str, records: Sequence[StreamRecord]) -> str:
    first, last = records[0], records[-1]
    arrived = first.arrived_at
    return (
        f"{prefix}/dt={arrived:%Y-%m-%d}/hour={arrived:%H}/"
        f"{first.shard_id}-{first.sequence_number}-{last.sequence_number}.jsonl.gz"
    )


def _gzip_lines(lines: list[dict[str, Any]]) -> bytes:
    text = "".join(json.dumps(line, separators=(",", ":"), sort_keys=True) + "\n" for line in lines)
    return gzip.compress(text.encode(), mtime=0)


def _position(record: StreamRecord) -> dict[str, Any]:
    return {
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "partition_key": record.partition_key,
        "arrived_at": record.arrived_at.isoformat(),
    }


class LakeArchive:
    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    def _put(self, key: str, body: bytes) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType="application/x-ndjson",
            ContentEncoding="gzip",
        )

    def archive_valid(self, records: Sequence[StreamRecord]) -> str | None:
        """Store the valid records (original payloads) in the raw zone; return the object key."""
        if not records:
            return None
        key = _object_key(RAW_EVENTS, records)
        self._put(key, _gzip_lines([{**_position(r), "data": r.data.decode()} for r in records]))
        return key

    def quarantine(self, rejected: Sequence[Rejected]) -> str | None:
        """Store rejected records with their reason; the payload is kept byte for byte."""
        if not rejected:
            return None
        key = _object_key(QUARANTINE_EVENTS, [r.record for r in rejected])
        lines = [
            {
                **_position(r.record),
                "reason": r.reason,
                **({"details": r.details} if r.details else {}),
                "data_base64": base64.b64encode(r.record.data).decode(),
            }
            for r in rejected
        ]
        self._put(key, _gzip_lines(lines))
        return key
