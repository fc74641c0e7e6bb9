"""The plausibility window: how far from its arrival on the stream an event's time may lie.

An event's ``occurred_at`` decides every bucket, business day and stock take it touches, so a
producer whose clock went wrong (or an attacker) could file sales in 2099 or 1970, or freeze a
product's stock with a stock take dated in the future. The stream processor therefore
quarantines an event whose time lies more than ``past`` before or ``future`` after the
record's ``approximateArrivalTimestamp``: Kinesis's clock, neither the producer's nor the
handler's, so a retried or replayed batch is judged exactly as the first time.

The default ``past`` (7 days) is also how long the facts table remembers resent counter events
(``layout.SEEN_TTL``): older events could no longer be told from their resent copies.

The function's environment sets the window (``StreamResources.from_environment`` reads it):

- ``STOREPULSE_PLAUSIBLE_PAST_DAYS`` [7], 1-3650;
- ``STOREPULSE_PLAUSIBLE_FUTURE_SECONDS`` [300], 0-86400 (producers' clocks drift a little).

Backfill: an operator who replays older events on purpose widens ``past`` for the replay
(the stack parameter ``PlausiblePastDays``) and sets it back afterwards; see the README.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from storepulse.config import bounded_int

PAST_DAYS_VARIABLE: Final = "STOREPULSE_PLAUSIBLE_PAST_DAYS"
FUTURE_SECONDS_VARIABLE: Final = "STOREPULSE_PLAUSIBLE_FUTURE_SECONDS"
DEFAULT_PAST_DAYS: Final = 7
DEFAULT_FUTURE_SECONDS: Final = 300
# Upper bounds keep every time the processor derives from an accepted event (TTLs, alert
# windows a week back) far from datetime's limits.
MAX_PAST_DAYS: Final = 3650
MAX_FUTURE_SECONDS: Final = 86400


@dataclass(frozen=True)
class PlausibilityWindow:
    past: timedelta = timedelta(days=DEFAULT_PAST_DAYS)
    future: timedelta = timedelta(seconds=DEFAULT_FUTURE_SECONDS)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> PlausibilityWindow:
        days = bounded_int(
            environ, PAST_DAYS_VARIABLE, DEFAULT_PAST_DAYS, 1, MAX_PAST_DAYS, "a number of days"
        )
        seconds = bounded_int(
            environ,
            FUTURE_SECONDS_VARIABLE,
            DEFAULT_FUTURE_SECONDS,
            0,
            MAX_FUTURE_SECONDS,
            "a number of seconds",
        )
        return cls(timedelta(days=days), timedelta(seconds=seconds))

    def problem(self, occurred_at: datetime, arrived_at: datetime) -> str | None:
        """Why ``occurred_at`` is implausible for a record that arrived at ``arrived_at``, or
        None. A difference of two datetimes cannot overflow, unlike ``arrived_at - past``."""
        early = arrived_at - occurred_at
        if early > self.past:
            return (
                f"occurred_at {occurred_at.isoformat()} is {_span(early)} before its arrival "
                f"at {arrived_at.isoformat()} (at most {_span(self.past)}; "
                f"a backfill widens {PAST_DAYS_VARIABLE})"
            )
        if -early > self.future:
            return (
                f"occurred_at {occurred_at.isoformat()} is {_span(-early)} after its arrival "
                f"at {arrived_at.isoformat()} (at most {_span(self.future)})"
            )
        return None


def _span(delta: timedelta) -> str:
    """``7 days, 0:00:01``: to the second, so a time just outside reads so."""
    return str(delta - timedelta(microseconds=delta.microseconds))
