"""The one source of "now": every component that asks for the time takes a ``Clock``.

A clock is a callable returning an aware UTC ``datetime``. Production passes nothing and gets
``system_clock``; a test builds one ``fixed_clock`` (or ``frozen_clock`` that it moves by hand)
and hands the same one to every component it exercises, so no result depends on the date or the
hour the suite runs at. Durations and timeouts are not "now": they keep ``time.monotonic``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "FrozenClock", "fixed_clock", "system_clock"]

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime."""


def system_clock() -> datetime:
    """The machine's clock, in UTC."""
    return datetime.now(UTC)


def fixed_clock(at: datetime) -> Clock:
    """A clock that always answers ``at`` (converted to UTC)."""
    frozen = FrozenClock(at)
    return frozen


class FrozenClock:
    """A clock that stands still until a test moves it: ``clock.advance(minutes=5)``."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError(f"a clock needs an aware datetime, got naive {at.isoformat()}")
        self.now = at.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta | None = None, **units: float) -> datetime:
        """Move the clock forward by ``delta`` or by keyword units (``seconds=30``)."""
        self.now += delta if delta is not None else timedelta(**units)
        return self.now

    def __repr__(self) -> str:
        return f"FrozenClock({self.now.isoformat()})"
