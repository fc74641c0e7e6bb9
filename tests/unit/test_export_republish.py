"""Re-publishing a late day clears whichever run holds its logical date (scheduled, backfill or
manual), creates one only when none does, and never clears a run mid-flight."""

from __future__ import annotations

from datetime import UTC, date, datetime

from storepulse.export.republish import (
    DAG_ID,
    Action,
    RunRef,
    plan_republish,
    still_running,
    triggered,
)

DAY = date(2026, 11, 26)
LOGICAL = datetime(2026, 11, 26, tzinfo=UTC)  # Paris: business day D's interval starts at D 00Z
SCHEDULED = "scheduled__2026-11-27T00:00:00+00:00"


class FakeRuns:
    """The nightly export's runs by logical date, recording every call made to it."""

    def __init__(self, runs: dict[datetime, RunRef] | None = None) -> None:
        self.runs = runs or {}
        self.calls: list[tuple[str, str, object]] = []

    def run_at(self, dag_id: str, logical_date: datetime) -> RunRef | None:
        self.calls.append(("run_at", dag_id, logical_date))
        return self.runs.get(logical_date)

    def is_running(self, dag_id: str, run_id: str) -> bool:
        self.calls.append(("is_running", dag_id, run_id))
        return any(r.run_id == run_id and r.state == "running" for r in self.runs.values())


def _plan(runs: FakeRuns) -> list[dict[str, str]]:
    plans = plan_republish([DAY], "Europe/Paris", runs)
    assert runs.calls == [("run_at", DAG_ID, LOGICAL)]
    return triggered(plans)


def test_a_day_no_run_holds_gets_a_run_with_its_interval() -> None:
    assert _plan(FakeRuns()) == [
        {
            "logical_date": "2026-11-26T00:00:00+00:00",
            "run_after": "2026-11-27T00:00:00+00:00",
            "trigger_run_id": SCHEDULED,
        }
    ]


def test_the_finished_run_holding_the_day_is_cleared_whatever_its_type() -> None:
    for run_id, state in [
        (SCHEDULED, "success"),
        ("backfill__2026-11-27T00:00:00+00:00", "success"),
        ("manual__2026-11-27T08:12:55.1+00:00", "failed"),
        ("api__2026-11-27T08:12:55__1a2b3c4d", "success"),
    ]:
        (trigger,) = _plan(FakeRuns({LOGICAL: RunRef(run_id, state, LOGICAL)}))
        # the operator's reset_dag_run clears the run of that id (a 409 on the trigger): no
        # second run at the same logical date, which Airflow refuses
        assert trigger["trigger_run_id"] == run_id
        assert trigger["logical_date"] == LOGICAL.isoformat()


def test_a_queued_run_is_left_to_export_the_change_itself() -> None:
    runs = FakeRuns({LOGICAL: RunRef("backfill__2026-11-27T00:00:00+00:00", "queued", LOGICAL)})
    (plan,) = plan_republish([DAY], "Europe/Paris", runs)
    assert plan.action is Action.NONE and triggered([plan]) == []
    assert "queued" in plan.describe()


def test_a_running_run_is_waited_for_then_cleared() -> None:
    backfill = "backfill__2026-11-27T00:00:00+00:00"
    runs = FakeRuns({LOGICAL: RunRef(backfill, "running", LOGICAL)})
    (plan,) = plan_republish([DAY], "Europe/Paris", runs)
    assert plan.action is Action.CLEAR_WHEN_DONE
    assert "running" in plan.describe() and backfill in plan.describe()
    late = triggered([plan])
    assert still_running(runs, late) == [backfill]  # late_runs_settled keeps waiting
    runs.runs[LOGICAL] = RunRef(backfill, "success", LOGICAL)
    assert still_running(runs, late) == []  # ended: the operator clears it
    assert late[0]["trigger_run_id"] == backfill
    assert runs.calls[-2:] == [("is_running", DAG_ID, backfill)] * 2


def test_each_day_is_looked_up_at_its_own_logical_date() -> None:
    """New York's business day D is the interval starting D+1 00:00 UTC."""
    other = datetime(2026, 11, 25, tzinfo=UTC)
    runs = FakeRuns({other: RunRef("manual__x", "success", other)})
    plans = plan_republish([date(2026, 11, 24), DAY], "America/New_York", runs)
    assert [c[2] for c in runs.calls] == [other, datetime(2026, 11, 27, tzinfo=UTC)]
    assert [(p.action, p.run_id) for p in plans] == [
        (Action.CLEAR, "manual__x"),
        (Action.CREATE, "scheduled__2026-11-28T00:00:00+00:00"),
    ]


def test_a_run_of_another_interval_holding_the_day_is_not_cleared() -> None:
    """A manual run given D's logical date alone covers the interval that ended before it
    (D-1's): clearing it would re-publish D-1; D cannot have a run of its own."""
    stray = RunRef(
        "manual__2026-11-26T00:00:00+00:00", "success", datetime(2026, 11, 25, tzinfo=UTC)
    )
    (plan,) = plan_republish([DAY], "Europe/Paris", FakeRuns({LOGICAL: stray}))
    assert plan.action is Action.BLOCKED and triggered([plan]) == []
    assert "NOT re-published" in plan.describe() and stray.run_id in plan.describe()
