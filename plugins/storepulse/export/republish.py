"""Re-publishing a late day: which run of the nightly export to clear, or to create.

A late event of day D (a POS syncing yesterday's sales) is re-published by running D's nightly
run again. Airflow 3 keeps one run per logical date and DAG, whatever its type: D's may be the
scheduled one (``scheduled__<D+1>``), a backfill's (``backfill__...``) or a manual one (any
id). So the run that holds D's logical date is looked up, and:

- none: a run is created with D's interval (``nightly_run_of``);
- finished (success or failed): that run is cleared, whatever its id;
- queued: left alone: it has not exported yet, and when it starts it exports the change too;
- running: not cleared mid-flight (its export may have read the table before the change):
  ``late_runs_settled`` waits until it ends, then it is cleared;
- covering another day (a manual run given D's logical date without D's interval: Airflow 3.3
  infers a manual run's interval as the one that ended before it): not cleared (that would
  re-publish its own day), and D cannot get a run of its own: logged as an error, with the fix.

The lookup is a ``DagRuns`` (``storepulse.airflow.runs``: the Task SDK in a task, a fake in the
unit tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Protocol

from storepulse.export.incremental import nightly_run_of

DAG_ID = "nightly_export"


@dataclass(frozen=True)
class RunRef:
    """A DAG run as the lookup sees it."""

    run_id: str
    state: str  # queued, running, success, failed
    interval_start: datetime | None  # the business day it exports starts here


class DagRuns(Protocol):
    """What re-publishing needs to know of a DAG's runs."""

    def run_at(self, dag_id: str, logical_date: datetime) -> RunRef | None:
        """The run holding ``logical_date`` (any run type), None when no run does."""
        ...

    def is_running(self, dag_id: str, run_id: str) -> bool: ...


class Action(StrEnum):
    CREATE = "create"  # no run holds the day
    CLEAR = "clear"  # a finished run
    CLEAR_WHEN_DONE = "clear when done"  # a running run: waited for, then cleared
    NONE = "none"  # a queued run: it will export the change when it starts
    BLOCKED = "blocked"  # a run of another interval holds the day's logical date


@dataclass(frozen=True)
class Republish:
    """What is done to re-publish one late day."""

    day: date
    action: Action
    run_id: str
    logical_date: datetime
    run_after: datetime

    def trigger_kwargs(self) -> dict[str, str] | None:
        """The ``TriggerDagRunOperator`` arguments (with ``reset_dag_run``: an existing
        ``trigger_run_id`` is cleared, a new one created), None when nothing is triggered."""
        if self.action in {Action.NONE, Action.BLOCKED}:
            return None
        return {
            "logical_date": self.logical_date.isoformat(),
            "run_after": self.run_after.isoformat(),
            "trigger_run_id": self.run_id,
        }

    def describe(self) -> str:
        what = {
            Action.CREATE: "no run holds it: creating",
            Action.CLEAR: "clearing its finished run",
            Action.CLEAR_WHEN_DONE: "its run is running: clearing it once it ends",
            Action.NONE: "its run is queued, not started: it will export the change itself",
            Action.BLOCKED: (
                "NOT re-published: its logical date is held by a run of another interval; "
                "delete that run, then trigger this day with its data interval, or backfill it:"
            ),
        }[self.action]
        return f"{self.day}: {what} {self.run_id}"


def plan_republish(
    days: Iterable[date], timezone: str, runs: DagRuns, dag_id: str = DAG_ID
) -> list[Republish]:
    """One ``Republish`` per late day, from the run (if any) that holds its logical date."""
    plans = []
    for day in days:
        new = nightly_run_of(day, timezone)
        found = runs.run_at(dag_id, new.logical_date)
        if found is None:
            action, run_id = Action.CREATE, new.run_id
        elif found.interval_start != new.logical_date:
            action, run_id = Action.BLOCKED, found.run_id
        else:
            action, run_id = _action_for(found.state), found.run_id
        plans.append(Republish(day, action, run_id, new.logical_date, new.run_after))
    return plans


def _action_for(state: str) -> Action:
    if state == "queued":
        return Action.NONE
    if state == "running":
        return Action.CLEAR_WHEN_DONE
    return Action.CLEAR  # success, failed


def triggered(plans: Sequence[Republish]) -> list[dict[str, str]]:
    """The operator's mapped arguments: the runs to create or clear."""
    return [kwargs for plan in plans if (kwargs := plan.trigger_kwargs()) is not None]


def still_running(
    runs: DagRuns, triggers: Sequence[Mapping[str, str]], dag_id: str = DAG_ID
) -> list[str]:
    """The runs among ``triggers`` still running (``late_runs_settled`` waits for none)."""
    return [t["trigger_run_id"] for t in triggers if runs.is_running(dag_id, t["trigger_run_id"])]
