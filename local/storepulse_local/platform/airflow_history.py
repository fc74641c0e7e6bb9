"""``python -m storepulse_local.platform.airflow_history``: run by ``make up`` after the database
migration and before the scheduler, with the platform's Airflow environment.

A stop or crash of the platform can leave DAG runs and task instances ``running`` or ``queued``.
Airflow's scheduler would not fail them: it resets orphaned task instances to be scheduled again
(``adopt_or_reset_orphaned_tasks``, only once the old scheduler job is past its health threshold)
and fails tasks without heartbeat only minutes later. Nothing of the old platform runs any more,
so they are marked failed here, at once: the history says what really happened.
"""

from __future__ import annotations

from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState, TaskInstanceState
from sqlalchemy import update

from storepulse.clock import Clock, system_clock

UNFINISHED_RUNS = (DagRunState.RUNNING, DagRunState.QUEUED)
UNFINISHED_TASKS = (
    TaskInstanceState.QUEUED,
    TaskInstanceState.RUNNING,
    TaskInstanceState.SCHEDULED,
    TaskInstanceState.RESTARTING,
    TaskInstanceState.DEFERRED,
    TaskInstanceState.UP_FOR_RETRY,
    TaskInstanceState.UP_FOR_RESCHEDULE,
)


def fail_interrupted(clock: Clock = system_clock) -> tuple[int, int]:
    """Mark unfinished DAG runs and task instances failed (ended at the clock's now); return
    how many of each."""
    now = clock()
    with create_session() as session:
        tasks = session.execute(
            update(TaskInstance)
            .where(TaskInstance.state.in_(UNFINISHED_TASKS))
            .values(state=TaskInstanceState.FAILED, end_date=now)
            .execution_options(synchronize_session=False)
        )
        runs = session.execute(
            update(DagRun)
            .where(DagRun.state.in_(UNFINISHED_RUNS))
            .values(state=DagRunState.FAILED, end_date=now)
            .execution_options(synchronize_session=False)
        )
    return int(getattr(runs, "rowcount", 0)), int(getattr(tasks, "rowcount", 0))


def main() -> None:
    runs, tasks = fail_interrupted()
    print(f"marked {runs} interrupted DAG run(s) and {tasks} task instance(s) failed", flush=True)


if __name__ == "__main__":
    main()
