"""Run DAGs end to end with ``dag.test()`` against the embedded AWS, the way the integration tests
of every DAG do.

Each plan runs in a subprocess with its own AIRFLOW_HOME (a freshly migrated SQLite database):
Airflow reads its configuration once per process, and the test process must not inherit it. The
only way to the embedded AWS is the ``aws_default`` connection, as in production.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from storepulse.config import REPO_ROOT
from storepulse_local.iam import DEPLOYER

# Runs each {"dag_id", "logical_date", "conf"} of argv[2] in turn and prints one RESULT line:
# per run its state, task states (mapped ones as task[index]), XComs and emitted asset events.
RUNNER = """
import json, sys, time
from datetime import datetime
from airflow.dag_processing.dagbag import DagBag
from airflow.models.asset import AssetEvent
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
runs = []
for request in json.loads(sys.argv[2]):
    dag_id, day = request["dag_id"], request.get("logical_date")
    started = time.monotonic()
    run = bag.dags[dag_id].test(
        logical_date=datetime.fromisoformat(day) if day else None, run_conf=request.get("conf")
    )
    seconds = round(time.monotonic() - started, 1)
    tasks = {
        ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": str(ti.state)
        for ti in run.get_task_instances()
    }
    with create_session() as session:
        rows = session.scalars(XComModel.get_many(run_id=run.run_id, dag_ids=dag_id)).all()
        xcoms = {f"{r.task_id}.{r.key}": XComModel.deserialize_value(r) for r in rows}
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id).all()
        assets = {e.asset.uri: e.extra for e in events}
    runs.append(
        {"dag_id": dag_id, "state": str(run.state), "tasks": tasks, "xcoms": xcoms,
         "events": assets, "seconds": seconds}
    )
print("RESULT " + json.dumps(runs, default=str))
"""


def airflow_home(home: Path, aws_endpoint: str, cwd: Path = REPO_ROOT) -> dict[str, str]:
    """The environment of a throwaway Airflow whose ``aws_default`` leads to ``aws_endpoint``;
    its database is migrated here (about 6 s)."""
    connection = {
        "conn_type": "aws",
        "login": DEPLOYER.access_key_id,  # the deployment principal, as on the platform
        "password": DEPLOYER.secret_access_key,
        "extra": {"endpoint_url": aws_endpoint, "region_name": "us-east-1"},
    }
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection),
        "STOREPULSE_STATE_DIR": str(home / "state"),
        "STOREPULSE_ENV": "dev",
    }
    env.pop("AWS_ENDPOINT_URL", None)  # the connection alone must lead to the embedded AWS
    subprocess.run(
        [sys.executable, "-c", "from airflow.utils.db import initdb; initdb()"],
        env=env,
        check=True,
        capture_output=True,
        cwd=cwd,
    )
    return env


def run_dags(
    env: dict[str, str],
    plan: list[dict[str, Any]],
    dag_folder: Path = REPO_ROOT / "dags",
    timeout: float = 600,
    cwd: Path = REPO_ROOT,
) -> list[dict[str, Any]]:
    """Run the plan's DAG runs in order; one outcome per run (see RUNNER)."""
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(dag_folder), json.dumps(plan)],
        env=env,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout[-5000:] + result.stderr[-5000:]
    return list(json.loads(lines[-1].removeprefix("RESULT ")))
