"""History first, then live: what ``run --backfill`` plays so that a demo is alive at any hour.

The dashboard shows today so far beside yesterday and the same weekday last week up to the same
local time (``layout.comparison_cutoffs``). Started at night, a live-only demo would show empty
days for hours. So the history comes first: each of the three days from its local midnight (in
the business's time zone) to its cut-off, oldest first, one ``Simulator`` per day (the engine
seeds ids from the start, so the days never share one). Its rate is the live rate lowered until
the three days make about ``budget`` events, so the local stream processor (~170 events/s) gets
through them in well under a minute whatever the hour, and the short night history keeps a
rate high enough for web sales.

Then each day goes on live from its cut-off at the live rate: today's at the clock, the other
two a day and a week behind it, until their own day ends (their next local midnight). The days
today is compared with thus grow as today does, so "vs yesterday" stays like for like although
the history is thinner than the live traffic (until midnight: the next day is compared with the
demo's first day, thin before the demo started). No event is ever dated after the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from storepulse.layout import comparison_cutoffs, day_start, local_date
from storepulse.simulator.engine import Simulator, expected_events
from storepulse.simulator.model import BusinessModel

__all__ = ["HISTORY_SENT", "Day", "Lane", "SimulatorFactory", "history_rate", "plan", "shown_days"]

MIN_HISTORY_RATE: Final = 0.01
# Logged once the history is sent (``make up`` waits for it on a first start).
HISTORY_SENT: Final = "history sent"
SimulatorFactory = Callable[[datetime, float], Simulator]
"""Builds a simulator from its start and rate (the caller adds the other options)."""


@dataclass(frozen=True)
class Day:
    """A business day the dashboard shows: history in [start, cutoff), then live until end."""

    start: datetime  # local midnight
    cutoff: datetime  # the clock, or the same local time a day or a week before
    end: datetime | None  # the next local midnight; None for today, which runs on


@dataclass(frozen=True)
class Lane:
    """A simulated day running live, ``behind`` the clock (zero for today) until ``end``."""

    sim: Simulator
    behind: timedelta = timedelta(0)
    end: datetime | None = None

    def window(self, wall_seconds: float, now: datetime) -> tuple[datetime, datetime]:
        """The simulator's next window, cut where this day's clock stands (or the day ends)."""
        start, end = self.sim.window(wall_seconds)
        limit = now - self.behind if self.end is None else min(now - self.behind, self.end)
        return start, max(start, min(end, limit))


def shown_days(now: datetime, timezone: str) -> list[Day]:
    """Last week's, yesterday's and today's business day (oldest first), cut as the dashboard
    compares them at ``now``."""
    today = local_date(now, timezone)
    yesterday, last_week = comparison_cutoffs(today, now, timezone)

    def day(back: int, cutoff: datetime) -> Day:
        local = today - timedelta(days=back)
        start = day_start(local, timezone)
        end = day_start(local + timedelta(days=1), timezone) if back else None
        return Day(start, max(cutoff, start), end)  # never before its start, DST or not

    return [day(7, last_week), day(1, yesterday), day(0, now)]


def history_rate(model: BusinessModel, days: list[Day], budget: int, ceiling: float) -> float:
    """The rate at which the days' history makes about ``budget`` events, at most ``ceiling``.
    Expected counts are linear in the rate: a fixed part (stock counts) plus traffic."""
    spans = [(day.start, day.cutoff) for day in days]
    fixed = sum(expected_events(model, start, end, 0.0) for start, end in spans)
    per_rate = sum(expected_events(model, start, end, 1.0) for start, end in spans) - fixed
    if per_rate <= 0:
        return ceiling
    return min(ceiling, max(MIN_HISTORY_RATE, (budget - fixed) / per_rate))


def plan(
    model: BusinessModel, now: datetime, budget: int, rate: float, simulator: SimulatorFactory
) -> tuple[list[tuple[Simulator, datetime]], list[Lane]]:
    """The history to send first, as (simulator, cut-off) oldest first, and the live lanes."""
    days = shown_days(now, model.timezone)
    past = history_rate(model, days, budget, rate)
    history = [(simulator(day.start, past), day.cutoff) for day in days]
    lanes = [Lane(simulator(day.cutoff, rate), now - day.cutoff, day.end) for day in days]
    return history, lanes
