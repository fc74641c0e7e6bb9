"""The business day of a scope: where today is, and the keys of its hour and minute buckets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Final

from storepulse.dashboard.reader import Item
from storepulse.layout import (
    COUNTERS,
    Key,
    day_start,
    scope,
    utc_hour,
    utc_minute,
)
from storepulse.settings import Catalog


@dataclass(frozen=True)
class Scope:
    """One store, or the whole business (``store_id`` None) with all its stores."""

    store_id: str | None
    timezone: str
    store_ids: tuple[str, ...]
    # (store, time zone) of each store: the business's buckets are the sums of the stores'.
    store_timezones: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return scope(self.store_id)

    @classmethod
    def of(cls, catalogue: Catalog, store_id: str | None) -> Scope:
        stores = (store_id,) if store_id else tuple(sorted(catalogue.stores))
        timezones = tuple((s, catalogue.timezone_of(s)) for s in stores)
        return cls(store_id, catalogue.timezone_of(store_id), stores, timezones)


LOOKAHEAD_DAYS: Final = 31  # how far past the clock's day a day with data is looked for


@dataclass(frozen=True)
class Today:
    """The business day so far, and the comparable moments."""

    day: date
    as_of: datetime
    now: datetime  # the server's clock: the real time, even when the data runs ahead of it
    yesterday_cutoff: datetime
    last_week_cutoff: datetime
    start: datetime  # local midnight, UTC
    hours: list[Item]  # today's hour buckets, in order (every counter)
    minutes: list[Item]  # today's minute buckets, in order (every counter)


def parse_minute(sk: str) -> datetime:
    return datetime.strptime(sk, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)


def parse_hour(sk: str) -> datetime:
    return datetime.strptime(sk, "%Y-%m-%dT%HZ").replace(tzinfo=UTC)


def hour_keys(scope_key: str, day: date, timezone: str) -> list[Key]:
    """The hour buckets a local day can have: every UTC hour that overlaps it."""
    start, end = day_start(day, timezone), day_start(day + timedelta(days=1), timezone)
    hour, keys = start.replace(minute=0), []
    while hour < end:
        keys.append(Key(f"{scope_key}#HOUR#{day.isoformat()}", utc_hour(hour)))
        hour += timedelta(hours=1)
    return keys


def minute_keys(
    scope_key: str, day: date, hour: datetime, until: datetime | None = None
) -> list[Key]:
    """The minute buckets of one UTC hour of a local day, up to ``until``'s minute."""
    pk = f"{scope_key}#MIN#{day.isoformat()}"
    last = 59 if until is None else min(59, int((until - hour).total_seconds() // 60))
    return [Key(pk, utc_minute(hour + timedelta(minutes=m))) for m in range(last + 1)]


def signature(item: Item) -> tuple[Decimal, ...]:
    return tuple(Decimal(item.get(name, 0)) for name in COUNTERS)
