"""The dashboard's start-up warm-up reads the lake's rollups before the first history request."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from storepulse.clock import fixed_clock
from storepulse.dashboard.app import Services

NOW = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)


class FakeLake:
    def __init__(self) -> None:
        self.prefetched: list[tuple[str, date, date]] = []

    def prefetch(self, dataset: str, first: date, last: date) -> None:
        self.prefetched.append((dataset, first, last))


def services(factory: Any) -> Services:
    none: Any = None  # the warm-up reads neither settings nor live data
    return Services(none, none, none, lake_factory=factory, clock=fixed_clock(NOW))


def test_the_start_reads_the_rollups_of_two_years_into_the_lake_requests_use() -> None:
    made: list[FakeLake] = []
    warm = services(lambda: made.append(FakeLake()) or made[-1])
    warm.warm_lake()
    assert warm.lake() is made[0] and len(made) == 1  # the request finds the warmed lake
    assert made[0].prefetched == [("daily_store_metrics", date(2024, 12, 4), date(2026, 12, 5))]


def test_a_lake_not_found_at_the_start_is_looked_for_by_the_first_request() -> None:
    found: list[FakeLake | None] = [None, FakeLake()]
    warm = services(lambda: found.pop(0))
    warm.warm_lake()
    assert warm.lake() is not None  # not "no lake" for a minute
