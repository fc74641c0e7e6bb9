"""Property: whatever a batch holds, the stream processor accounts for every record, either
counted (or a harmless duplicate) or quarantined with a reason, and never fails the batch."""

from __future__ import annotations

import gzip
import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storepulse.lake.paths import QUARANTINE_EVENTS
from storepulse.stream.records import StreamRecord
from tests.hostile import EVENT_IDS, NOON_PARIS, altered_sales, payloads, sale

SHARDS = (f"shardId-{n:012d}" for n in itertools.count())  # one per example: its own objects


def quarantine_lines(stack, shard: str) -> list[dict]:
    prefix = f"{QUARANTINE_EVENTS}/dt={NOON_PARIS:%Y-%m-%d}/hour={NOON_PARIS:%H}/{shard}-"
    listing = stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix=prefix).get("Contents", [])
    return [
        json.loads(line)
        for entry in listing
        for line in gzip.decompress(
            stack.s3.get_object(Bucket=stack.bucket, Key=entry["Key"])["Body"].read()
        ).splitlines()
    ]


WIDEST = {"STOREPULSE_PLAUSIBLE_PAST_DAYS": "3650", "STOREPULSE_PLAUSIBLE_FUTURE_SECONDS": "86400"}


@pytest.fixture(params=["default window", "widest window"])
def window(request, handler, monkeypatch) -> None:
    """The default plausibility window, or the widest an operator can set (a backfill)."""
    if request.param == "widest window":
        for name, value in WIDEST.items():
            monkeypatch.setenv(name, value)
        handler.processor.cache_clear()


@settings(
    max_examples=20,
    deadline=None,  # each example makes a dozen round trips to the embedded AWS
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(payloads, min_size=1, max_size=12))
def test_every_record_is_counted_or_quarantined_with_a_reason(
    handler, realtime_stack, window, batch: list[bytes]
) -> None:
    shard = next(SHARDS)
    records = [
        StreamRecord(shard, str(10**20 + i), "k", data, NOON_PARIS) for i, data in enumerate(batch)
    ]
    report = handler.processor().process(records)  # raises if anything escapes

    assert report.failed_sequence_numbers == []
    assert report.valid + report.quarantined == len(records)
    assert report.duplicates <= report.valid
    lines = quarantine_lines(realtime_stack, shard)
    assert len(lines) == report.quarantined
    assert all(line["reason"] for line in lines)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(resends=st.lists(altered_sales(EVENT_IDS[1]), min_size=1, max_size=6))
def test_a_counted_sale_resent_with_any_content_is_never_counted_again(
    handler, realtime_stack, resends: list[dict]
) -> None:
    shard = next(SHARDS)
    first = sale(EVENT_IDS[1])  # counted by the first example, a duplicate in the others
    records = [
        StreamRecord(shard, str(10**20 + i), "k", json.dumps(data).encode(), NOON_PARIS)
        for i, data in enumerate([first, *resends])
    ]
    handler.processor().process(records[:1])
    report = handler.processor().process(records[1:])
    assert report.valid == report.duplicates  # the rest is invalid, implausible or a conflict
