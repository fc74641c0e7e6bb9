"""Social media beside web traffic: mentions, followers and engagements per channel.

Live, from the scope's DAY bucket (the stream processor adds ``social.metrics`` events there per
channel, ``social#<channel>#<counter>``); history, from the lake's ``daily_social_metrics`` with
the web's sessions of the same days (``daily_store_metrics``). **Net followers** = followers
gained - followers lost (may be negative).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any, Final, get_args

from pydantic import BaseModel, Field

from storepulse import events as ev
from storepulse.dashboard.history import STORE_METRICS, Lake, Window
from storepulse.dashboard.responses import ChannelTotals
from storepulse.layout import SOCIAL_COUNTERS, social_attribute

DATASET: Final = "daily_social_metrics"
CHANNELS: Final[tuple[str, ...]] = get_args(ev.SocialChannel)
ATTRIBUTES: Final = tuple(social_attribute(c, n) for c in CHANNELS for n in SOCIAL_COUNTERS)

Row = Mapping[str, Any]


class SocialDay(BaseModel):
    date: date
    mentions: int
    engagements: int
    net_followers: int
    sessions: int = Field(description="web sessions (visitors) that day, for comparison")


class SocialReport(BaseModel):
    days: int
    store_id: str | None
    lake: str | None
    current_first: date
    current_last: date
    channels: list[ChannelTotals] = Field(description="this period, most engagements first")
    previous: list[ChannelTotals] = Field(description="the previous period")
    series: list[SocialDay] = Field(description="days of this period with social or web data")


def _totals(counters: Mapping[str, Mapping[str, int]]) -> list[ChannelTotals]:
    rows = [
        ChannelTotals(
            channel=channel,
            **{n: int(values.get(n, 0)) for n in SOCIAL_COUNTERS},
            net_followers=int(values.get("followers_gained", 0))
            - int(values.get("followers_lost", 0)),
        )
        for channel, values in counters.items()
    ]
    return sorted(rows, key=lambda r: (-r.engagements, r.channel))


def from_bucket(item: Mapping[str, Any] | None) -> list[ChannelTotals]:
    """Per channel totals of one DAY bucket (live): the channels it has counters of."""
    item = item or {}
    counters = {
        c: {n: int(item.get(social_attribute(c, n), 0)) for n in SOCIAL_COUNTERS}
        for c in CHANNELS
        if any(social_attribute(c, n) in item for n in SOCIAL_COUNTERS)
    }
    return _totals(counters)


def from_rows(rows: Iterable[Row]) -> list[ChannelTotals]:
    """Per channel totals of ``daily_social_metrics`` rows."""
    counters: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SOCIAL_COUNTERS, 0))
    for row in rows:
        for name in SOCIAL_COUNTERS:
            counters[str(row["channel"])][name] += int(row[name])
    return _totals(counters)


def _day(row: Row) -> date:
    value = row["business_date"]
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _series(social: list[Row], web: list[Row]) -> list[SocialDay]:
    days: dict[date, dict[str, int]] = defaultdict(
        lambda: {"mentions": 0, "engagements": 0, "net_followers": 0, "sessions": 0}
    )
    for row in social:
        day = days[_day(row)]
        day["mentions"] += int(row["mentions"])
        day["engagements"] += int(row["engagements"])
        day["net_followers"] += int(row["followers_gained"]) - int(row["followers_lost"])
    for row in web:
        days[_day(row)]["sessions"] += int(row.get("sessions") or 0)
    return [SocialDay(date=d, **days[d]) for d in sorted(days)]


def report(
    lake: Lake | None, window: Window, store_ids: frozenset[str] | None, store_id: str | None
) -> SocialReport:
    social: list[Row] = []
    web: list[Row] = []
    if lake is not None:
        social = lake.rows(DATASET, window.previous_first, window.last)
        web = lake.rows(STORE_METRICS, window.first, window.last)
    visible = [r for r in social if store_ids is None or r.get("store_id") in store_ids]
    current = [r for r in visible if window.is_current(_day(r))]
    previous = [r for r in visible if not window.is_current(_day(r))]
    web = [r for r in web if store_ids is None or r.get("store_id") in store_ids]
    return SocialReport(
        days=window.days,
        store_id=store_id,
        lake=lake.uri if lake else None,
        current_first=window.first,
        current_last=window.last,
        channels=from_rows(current),
        previous=from_rows(previous),
        series=_series(current, web),
    )
