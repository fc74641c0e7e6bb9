"""How fresh each curated data set is: the newest change published, per data set.

The hourly compaction records it after every publish in ``curated/_freshness.json`` (hidden from
Athena by its ``_``); the dashboard shows it ("lake as of 10:42 UTC, 3 min ago") and the
compaction's task log gives it too. No pyarrow: the dashboard and DAG files may import this.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from storepulse.clock import Clock, system_clock
from storepulse.lake.paths import CURATED

FRESHNESS_KEY: Final = f"{CURATED}/_freshness.json"
FORMAT: Final = "storepulse.lake-freshness/1"


def read_freshness(s3: Any, bucket: str) -> dict[str, dict[str, str]]:
    """Data set -> ``{"newest_change", "published_at"}`` (ISO, UTC); empty before any record."""
    from botocore.exceptions import ClientError

    try:
        body = s3.get_object(Bucket=bucket, Key=FRESHNESS_KEY)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in {"NoSuchKey", "404"}:
            return {}
        raise
    document = json.loads(body)
    if document.get("format") != FORMAT:
        raise ValueError(f"s3://{bucket}/{FRESHNESS_KEY}: not a freshness record")
    return dict(document["datasets"])


def record_freshness(
    s3: Any, bucket: str, newest: Mapping[str, str], *, clock: Clock = system_clock
) -> dict[str, dict[str, str]]:
    """Merge the newest change per data set just published (``newest``, ISO times) into the
    record; a time never goes back (a late change for yesterday is older than today's)."""
    datasets = read_freshness(s3, bucket)
    now = clock().isoformat()
    for name, changed in newest.items():
        known = datasets.get(name, {}).get("newest_change")
        if changed and (not known or _instant(changed) > _instant(known)):
            datasets[name] = {"newest_change": changed, "published_at": now}
    document = {"format": FORMAT, "datasets": datasets}
    s3.put_object(
        Bucket=bucket,
        Key=FRESHNESS_KEY,
        Body=json.dumps(document, indent=2, sort_keys=True).encode(),
        ContentType="application/json",
    )
    return datasets


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


def as_of(newest: datetime, now: datetime) -> str:
    """``lake as of 10:42 UTC, 3 min ago`` (a date too when not today, UTC)."""
    seconds = max(0, int((now - newest).total_seconds()))
    if seconds < 60:
        ago = "just now"
    elif seconds < 3600:
        ago = f"{seconds // 60} min ago"
    elif seconds < 2 * 86400:
        ago = f"{seconds // 3600} h {seconds % 3600 // 60} min ago"
    else:
        ago = f"{seconds // 86400} days ago"
    utc, today = newest.astimezone(UTC), now.astimezone(UTC).date()
    when = utc.strftime("%H:%M UTC" if utc.date() == today else "%Y-%m-%d %H:%M UTC")
    return f"lake as of {when}, {ago}"
