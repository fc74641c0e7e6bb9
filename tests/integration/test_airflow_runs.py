"""``TaskSdkDagRuns`` in a real task (``dag.test()``, the execution API behind the Task SDK):
the run holding a logical date is found whatever its id, a date no run holds is None."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dag_runs import airflow_home, run_dags

# A DAG whose task looks up the runs at three logical dates: the one before it (a manual run
# dag.test() names manual__<now>), its own (running) and the next (none).
PROBE = """
from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

@dag(schedule="@daily", start_date=pendulum.datetime(2026, 11, 1, tz="UTC"), catchup=False)
def probe_runs():
    @task
    def probe(logical_date=None):
        from storepulse.airflow.runs import TaskSdkDagRuns

        runs = TaskSdkDagRuns()
        found = {}
        for days in (-1, 0, 1):
            at = logical_date + timedelta(days=days)
            run = runs.run_at("probe_runs", at)
            found[str(days)] = None if run is None else [
                run.run_id, run.state, runs.is_running("probe_runs", run.run_id)
            ]
        return found

    probe()

probe_runs()
"""


@pytest.mark.slow  # a throwaway Airflow, two dag.test() runs: ~1 min at load 14
def test_the_run_at_a_logical_date_is_found_whatever_its_id(
    tmp_path: Path, embedded_aws: str
) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "probe_runs.py").write_text(PROBE)
    env = airflow_home(tmp_path / "airflow", embedded_aws)
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)  # dag.test() runs the bundle's serialized DAG
    first, second = run_dags(
        env,
        [
            {"dag_id": "probe_runs", "logical_date": "2026-11-25T00:00:00+00:00"},
            {"dag_id": "probe_runs", "logical_date": "2026-11-26T00:00:00+00:00"},
        ],
        dag_folder=dags,
        timeout=300,
    )
    assert second["state"] == "success", second
    found = second["xcoms"]["probe.return_value"]
    assert found["-1"] == [first["run_id"], "success", False]  # dag.test's manual run id
    assert found["0"] == [second["run_id"], "running", True]
    assert found["1"] is None
