"""Run DAGs end to end with ``dag.test()`` against the embedded AWS, the way the integration tests
of every DAG do.

Each plan runs in a subprocess with its own AIRFLOW_HOME (a copy of a freshly migrated SQLite
database): Airflow reads its configuration once per process, and the test process must not
inherit it. The
only way to the embedded AWS is the ``aws_default`` connection, as in production.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from storepulse.config import REPO_ROOT
from storepulse_local.iam import DEPLOYER

CLOCK_SHIFT = "STOREPULSE_CLOCK_SHIFT_SECONDS"
CLOCK_SHIFT_PATH = REPO_ROOT / "tests" / "clock_shift"

# Runs each {"dag_id", "logical_date", "conf"} of argv[2] in turn and prints one RESULT line:
# per run its state, task states (mapped ones as task[index]), XComs, emitted asset events and
# every run of the DAG then (run id: state, type, data interval). dag.test() makes a manual run;
# {"dag_id", "run_after", "scheduled": true} makes the run the scheduler makes for the interval
# ending at run_after, or runs that one again (a cleared run is queued: no scheduler here); with
# "run_id" too, a manual run of that id and interval, as a REST trigger given its data interval.
RUNNER = """
import json, sys, time
from datetime import datetime
import airflow.models.dagrun as dagruns
from airflow.dag_processing.dagbag import DagBag
from airflow.models.asset import AssetEvent
from airflow.models.xcom import XComModel
from airflow.serialization.encoders import coerce_to_core_timetable
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState
from airflow.utils.types import DagRunTriggeredByType, DagRunType
from sqlalchemy import select

manual_run = dagruns.get_or_create_dagrun

named = {}  # the request's run id, if any: a manual run

def scheduled_run(*, dag, run_after, conf, session, **_):
    interval = dag.timetable.infer_manual_data_interval(run_after=run_after)
    run_type = DagRunType.MANUAL if named.get("run_id") else DagRunType.SCHEDULED
    run_id = named.get("run_id") or dag.timetable.generate_run_id(
        run_type=run_type, run_after=run_after, data_interval=interval
    )
    query = select(dagruns.DagRun).where(
        dagruns.DagRun.dag_id == dag.dag_id, dagruns.DagRun.run_id == run_id
    )
    run = session.scalar(query)
    if run is None:
        run = dag.create_dagrun(
            run_id=run_id, logical_date=interval.start, data_interval=interval,
            run_after=run_after, conf=conf, run_type=run_type,
            state=DagRunState.RUNNING, triggered_by=DagRunTriggeredByType.TIMETABLE,
            triggering_user_name=None, start_date=run_after, session=session,
        )
    run.dag, run.state = dag, DagRunState.RUNNING
    session.commit()
    return run

def all_runs(dag_id):
    with create_session() as session:
        rows = session.scalars(select(dagruns.DagRun).where(dagruns.DagRun.dag_id == dag_id))
        return {
            r.run_id: {"state": str(r.state), "run_type": str(r.run_type),
                       "interval": [str(r.data_interval_start), str(r.data_interval_end)]}
            for r in rows
        }

bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
runs = []
for request in json.loads(sys.argv[2]):
    dag_id, day = request["dag_id"], request.get("logical_date")
    started = time.monotonic()
    run_after = request.get("run_after")
    if request.get("scheduled"):
        dagruns.get_or_create_dagrun = scheduled_run
        named["run_id"] = request.get("run_id")
        timetable = coerce_to_core_timetable(bag.dags[dag_id].timetable)
        end = datetime.fromisoformat(run_after)
        day = timetable.infer_manual_data_interval(run_after=end).start.isoformat()
    else:
        dagruns.get_or_create_dagrun = manual_run
    run = bag.dags[dag_id].test(
        logical_date=datetime.fromisoformat(day) if day else None,
        run_after=datetime.fromisoformat(run_after) if run_after else None,
        run_conf=request.get("conf"),
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
         "events": assets, "seconds": seconds, "run_id": run.run_id, "runs": all_runs(dag_id)}
    )
print("RESULT " + json.dumps(runs, default=str))
"""


def airflow_home(home: Path, aws_endpoint: str, cwd: Path = REPO_ROOT) -> dict[str, str]:
    """The environment of a throwaway Airflow whose ``aws_default`` leads to ``aws_endpoint``;
    its database is a copy of one migrated once (``migrated_database``)."""
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
    if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in env:  # not the home's SQLite file: migrate it
        _initdb(env, cwd)
    else:
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(migrated_database(env, cwd), home / "airflow.db")
    return env


def migrated_database(env: dict[str, str], cwd: Path = REPO_ROOT) -> Path:
    """A SQLite database ``initdb`` migrated for this lock file and Airflow configuration, made
    once per checkout and shared by the test processes (under a file lock): each migration costs
    ~8 s of CPU, and it holds nothing of a home but its tables (a pool, the log templates)."""
    settings = sorted((k, v) for k, v in env.items() if k.startswith("AIRFLOW__"))
    digest = hashlib.sha256((REPO_ROOT / "uv.lock").read_bytes())
    digest.update(json.dumps(settings).encode())
    build = Path(env.get("STOREPULSE_BUILD_DIR") or REPO_ROOT / ".run" / "test-build")
    cache = build / "airflow-db"
    cache.mkdir(parents=True, exist_ok=True)
    database = cache / f"{digest.hexdigest()[:16]}.db"
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not database.exists():
            with tempfile.TemporaryDirectory(dir=cache) as scratch:
                _initdb(env | {"AIRFLOW_HOME": scratch}, cwd)
                (Path(scratch) / "airflow.db").replace(database)
    return database


def _initdb(env: dict[str, str], cwd: Path) -> None:
    subprocess.run(
        [sys.executable, "-c", "from airflow.utils.db import initdb; initdb()"],
        env=env,
        check=True,
        capture_output=True,
        cwd=cwd,
    )


def shifted_clock(env: dict[str, str], offset: float) -> dict[str, str]:
    """``env`` with the wall clock of every process it starts ``offset`` seconds ahead of this
    one's, and ticking, as ``make test-clock`` shifts a whole run (tests/clock_shift/)."""
    shift = float(env.get(CLOCK_SHIFT) or 0) + offset  # on top of a shift the run already has
    paths = [str(CLOCK_SHIFT_PATH), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    return env | {
        CLOCK_SHIFT: str(shift),
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
    }


def run_dags(
    env: dict[str, str],
    plan: list[dict[str, Any]],
    dag_folder: Path = REPO_ROOT / "dags",
    timeout: float = 600,
    cwd: Path = REPO_ROOT,
    output: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Run the plan's DAG runs in order; one outcome per run (see RUNNER). ``output``: gets
    the process's output, the tasks' logs included."""
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(dag_folder), json.dumps(plan)],
        env=env,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    if output is not None:
        output.append(result.stdout + result.stderr)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout[-5000:] + result.stderr[-5000:]
    return list(json.loads(lines[-1].removeprefix("RESULT ")))
