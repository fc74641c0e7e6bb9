"""The lake's freshness record (``curated/_freshness.json``) and its line for people."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from storepulse.clock import fixed_clock
from storepulse.lake.freshness import FRESHNESS_KEY, as_of, read_freshness, record_freshness

NOW = datetime(2026, 11, 26, 10, 45, tzinfo=UTC)


class _Bucket:
    """Just the two S3 calls the record makes."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 (boto3's names)
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject")
        return {"Body": io.BytesIO(self.objects[Key])}

    def put_object(self, Bucket: str, Key: str, Body: bytes, **_: Any) -> None:  # noqa: N803
        self.objects[Key] = Body


def test_the_record_keeps_the_newest_change_per_data_set_and_never_goes_back() -> None:
    s3 = _Bucket()
    assert read_freshness(s3, "lake") == {}
    today, yesterday = NOW - timedelta(minutes=3), NOW - timedelta(days=1)
    record_freshness(s3, "lake", {"orders": today.isoformat()}, clock=fixed_clock(NOW))
    later = fixed_clock(NOW + timedelta(hours=1))
    record_freshness(  # a late sale for yesterday: older than what orders already hold
        s3, "lake", {"orders": yesterday.isoformat(), "refunds": today.isoformat()}, clock=later
    )
    assert FRESHNESS_KEY == "curated/_freshness.json"
    assert read_freshness(s3, "lake") == {
        "orders": {"newest_change": today.isoformat(), "published_at": NOW.isoformat()},
        "refunds": {
            "newest_change": today.isoformat(),
            "published_at": (NOW + timedelta(hours=1)).isoformat(),
        },
    }


def test_as_of_says_when_and_how_long_ago() -> None:
    assert as_of(NOW - timedelta(minutes=3), NOW) == "lake as of 10:42 UTC, 3 min ago"
    assert as_of(NOW - timedelta(seconds=20), NOW) == "lake as of 10:44 UTC, just now"
    assert as_of(NOW - timedelta(hours=2, minutes=5), NOW) == "lake as of 08:40 UTC, 2 h 5 min ago"
    assert as_of(NOW - timedelta(days=3), NOW) == "lake as of 2026-11-23 10:45 UTC, 3 days ago"
