"""The plausibility window: its settings fail closed, its verdicts never overflow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storepulse.config import ConfigError
from storepulse.stream.window import PlausibilityWindow

ARRIVED = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)


def test_defaults_are_seven_days_back_and_five_minutes_ahead() -> None:
    window = PlausibilityWindow.from_environment({})
    assert window == PlausibilityWindow(timedelta(days=7), timedelta(minutes=5))
    assert window.problem(ARRIVED - timedelta(days=7), ARRIVED) is None
    assert window.problem(ARRIVED + timedelta(minutes=5), ARRIVED) is None


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"STOREPULSE_PLAUSIBLE_PAST_DAYS": "a week"}, "STOREPULSE_PLAUSIBLE_PAST_DAYS"),
        ({"STOREPULSE_PLAUSIBLE_PAST_DAYS": "0"}, "STOREPULSE_PLAUSIBLE_PAST_DAYS"),
        ({"STOREPULSE_PLAUSIBLE_PAST_DAYS": "999999999"}, "STOREPULSE_PLAUSIBLE_PAST_DAYS"),
        ({"STOREPULSE_PLAUSIBLE_FUTURE_SECONDS": "-1"}, "STOREPULSE_PLAUSIBLE_FUTURE_SECONDS"),
    ],
)
def test_an_invalid_setting_names_its_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        PlausibilityWindow.from_environment(environ)


@pytest.mark.parametrize(
    ("occurred_at", "expected"),
    [
        (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), "is 2912113 days, 12:59:59 after"),
        (ARRIVED + timedelta(minutes=5, seconds=1), "is 0:05:01 after its arrival"),
        (ARRIVED + timedelta(minutes=6), "(at most 0:05:00)"),
        (ARRIVED - timedelta(days=7, seconds=1), "is 7 days, 0:00:01 before its arrival"),
        (ARRIVED - timedelta(days=8), "(at most 7 days, 0:00:00; a backfill widens"),
        (datetime(1, 1, 1, tzinfo=UTC), "is 739945 days, 11:00:00 before"),
    ],
)
def test_times_outside_say_how_far_and_the_limit(occurred_at: datetime, expected: str) -> None:
    assert expected in (PlausibilityWindow().problem(occurred_at, ARRIVED) or "")
