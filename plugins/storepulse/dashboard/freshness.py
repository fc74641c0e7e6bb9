"""How fresh the lake's history is: per curated data set, the newest change the hourly
compaction published (``storepulse.lake.freshness``), and one line for the history view
("lake as of 10:42 UTC, 3 min ago": its least fresh sales data set)."""

from __future__ import annotations

import logging
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, Field

from storepulse.dashboard.history import Lake
from storepulse.lake.freshness import as_of, read_freshness

log = logging.getLogger(__name__)

# What the history view charts: the line speaks for these (the least fresh of them).
HISTORY_DATASETS = ("orders", "daily_store_metrics", "daily_category_sales")


class DatasetFreshness(BaseModel):
    dataset: str
    newest_change: datetime = Field(description="the newest change published (UTC)")
    published_at: datetime = Field(description="when the compaction published it (UTC)")
    age_seconds: int = Field(description="seconds from the newest change to now")
    text: str = Field(description='e.g. "lake as of 10:42 UTC, 3 min ago"')


class FreshnessReport(BaseModel):
    lake: str | None = Field(description="the lake read; null: no lake found")
    text: str | None = Field(description="the history view's line; null: nothing compacted yet")
    datasets: list[DatasetFreshness]


def report(lake: Lake | None, now: datetime) -> FreshnessReport:
    """Freshness per data set; an unreadable record reads as none (logged), not an error."""
    if lake is None:
        return FreshnessReport(lake=None, text=None, datasets=[])
    try:
        record = read_freshness(lake.s3, lake.bucket)
    except (ClientError, BotoCoreError, ValueError) as exc:
        log.warning("lake freshness unreadable: %s", exc)
        record = {}
    datasets = [_dataset(name, entry, now) for name, entry in sorted(record.items())]
    shown = [d for d in datasets if d.dataset in HISTORY_DATASETS]
    oldest = min(shown, key=lambda d: d.newest_change, default=None)
    return FreshnessReport(lake=lake.uri, text=oldest.text if oldest else None, datasets=datasets)


def _dataset(name: str, entry: dict[str, str], now: datetime) -> DatasetFreshness:
    newest = datetime.fromisoformat(entry["newest_change"])
    return DatasetFreshness(
        dataset=name,
        newest_change=newest,
        published_at=datetime.fromisoformat(entry["published_at"]),
        age_seconds=max(0, int((now - newest).total_seconds())),
        text=as_of(newest, now),
    )
