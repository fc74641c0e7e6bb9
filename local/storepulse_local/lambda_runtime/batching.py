"""Batches: how many buffered records go in the next invocation, and when to invoke."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from storepulse_local.lambda_runtime.mappings import MappingConfig
from storepulse_local.lambda_runtime.sources import PolledRecord

MAX_PAYLOAD_BYTES: Final = 6 * 1024 * 1024  # synchronous invocation payload limit
EVENT_OVERHEAD_BYTES: Final = len('{"Records": []}')


def record_payload_bytes(record: PolledRecord, config: MappingConfig) -> int:
    """Bytes ``record`` adds to the invocation payload: its JSON entry plus a separator."""
    event = config.source.event([record], config.stream_arn, config.region, config.role_arn)
    entry = event["Records"]
    return len(json.dumps(entry[0])) + 2


def take_batch(sizes: Sequence[int], batch_size: int, max_bytes: int = MAX_PAYLOAD_BYTES) -> int:
    """How many leading records form the next batch: at most ``batch_size`` records and
    ``max_bytes`` of payload, and at least one (a lone record always goes, as on AWS)."""
    total, count = EVENT_OVERHEAD_BYTES, 0
    for size in sizes[:batch_size]:
        if count and total + size > max_bytes:
            break
        total, count = total + size, count + 1
    return count


def batch_ready(
    *,
    buffered: int,
    buffered_bytes: int,
    batch_size: int,
    window: float,
    waited: float,
    shard_ended: bool = False,
) -> bool:
    """Invoke now? When the batch is full (records or payload), the batching window has passed
    since the first buffered record (a window of 0 has always passed), or no record can come."""
    if buffered == 0:
        return False
    full = buffered >= batch_size or buffered_bytes >= MAX_PAYLOAD_BYTES
    return full or shard_ended or waited >= window
