"""A DAG's runs as a running task sees them, through the Task SDK.

The Task SDK talks to the execution API with the task's own token: no REST credentials to
deploy, and the same calls answer under ``dag.test()`` (the tests) and in a deployed Airflow.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from storepulse.export.republish import RunRef


class TaskSdkDagRuns:
    """``storepulse.export.republish.DagRuns`` for code running in a task."""

    def run_at(self, dag_id: str, logical_date: datetime) -> RunRef | None:
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.comms import GetPreviousDagRun, PreviousDagRunResult

        # The SDK finds a run by id, or the latest run before a logical date (what
        # ``ti.get_previous_dagrun`` asks, for other dates): the latest before the next
        # microsecond is the one at ``logical_date``, if any (one run per logical date).
        response = task_runner.SUPERVISOR_COMMS.send(
            GetPreviousDagRun(dag_id=dag_id, logical_date=logical_date + timedelta(microseconds=1))
        )
        if not isinstance(response, PreviousDagRunResult):  # not an assert: kept under -O
            raise RuntimeError(f"the Task SDK answered {response!r} to a previous-run lookup")
        run = response.dag_run
        if run is None or run.logical_date != logical_date:
            return None
        state = getattr(run.state, "value", str(run.state))
        return RunRef(run.run_id, state, run.data_interval_start)

    def is_running(self, dag_id: str, run_id: str) -> bool:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        count = RuntimeTaskInstance.get_dr_count(dag_id, run_ids=[run_id], states=["running"])
        return count > 0
