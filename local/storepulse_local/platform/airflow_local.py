"""Airflow as ``make up`` runs it: a project-local AIRFLOW_HOME, SQLite, LocalExecutor, and a small
REST client (token, trigger, wait) that the platform and the end-to-end tests share."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from storepulse.config import LOOPBACK, REPO_ROOT, Settings
from storepulse_local.iam import ADMIN, DASHBOARD, DEPLOYER
from storepulse_local.platform.private import create_private

ADMIN_USER = "admin"
# The four parts `airflow standalone` would start, run separately so each has its PID and log.
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# Seconds each may take to stop (they are stopped in reverse order: the api-server last, as the
# tasks still finishing report through it). The scheduler waits for its running tasks. By
# hand, `make down` after ten minutes of the demo with a deploy run in flight, at a load of
# 25-30 on 2 cores: the api-server outlived 20 s after its server had finished, the triggerer
# 15 s after leaving its loop, the dag-processor 15 s while it finished a file (each still
# working, on a fraction of a CPU), and were force-killed: twice those waits.
STOP_GRACE = {"scheduler": 45.0, "api-server": 45.0, "triggerer": 30.0, "dag-processor": 30.0}
# Four processes share one SQLite file: a writer waits up to 30 s for the lock instead of
# pysqlite's 5 s default, which a busy 2-core machine exceeds while the DAGs are first parsed.
SQLITE_CONNECT_ARGS: dict[str, Any] = {"timeout": 30}
# How often the REST client retries an answer that says "try again" (5xx, connection refused).
API_ATTEMPTS = 5


def aws_connection_uri(settings: Settings) -> str:
    """The ``aws_default`` connection for the embedded AWS (JSON form, as Airflow reads it): the
    deployment principal, whose policy is the one a real deployment role gets."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": DEPLOYER.access_key_id,
            "password": DEPLOYER.secret_access_key,
            "extra": {"endpoint_url": settings.embedded_aws_url, "region_name": settings.region},
        }
    )


def airflow_home(settings: Settings) -> Path:
    """Project-local AIRFLOW_HOME (SQLite database, config, generated admin password)."""
    return settings.state_dir / "airflow"


def migration_is_current(settings: Settings, env: dict[str, str]) -> bool:
    """The SQLite database is at the revision that this Airflow's last ``airflow db migrate``
    left: migrating again would change nothing and cost a whole Airflow start (7 s of CPU,
    measured 2026-12-07) before the scheduler may start. Another database (the scale profile's
    PostgreSQL) is always migrated."""
    if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in env:
        return False
    try:
        recorded = json.loads(_migrated_file(settings).read_text())
    except (FileNotFoundError, ValueError):
        return False
    key = _migration_key(settings)
    return key is not None and key == recorded


def record_migration(settings: Settings) -> None:
    """After ``airflow db migrate`` succeeded: what ``migration_is_current`` compares with."""
    if (key := _migration_key(settings)) is not None:
        _migrated_file(settings).write_text(json.dumps(key))


def _migrated_file(settings: Settings) -> Path:
    return airflow_home(settings) / "migrated.json"


def _migration_key(settings: Settings) -> dict[str, str] | None:
    """The installed Airflow and the SQLite database's schema revision (None: no database)."""
    path = airflow_home(settings) / "airflow.db"
    if not path.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return {"airflow": version("apache-airflow-core"), "revision": row[0]} if row else None


def passwords_file(settings: Settings) -> Path:
    """Where the simple auth manager keeps the passwords it generates."""
    return airflow_home(settings) / "simple_auth_manager_passwords.json.generated"


def airflow_env(settings: Settings) -> dict[str, str]:
    """Environment for every Airflow component (and anything else the platform starts)."""
    home = airflow_home(settings)
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        # Airflow starts sub-processes with a bare `airflow`: the venv must come first on PATH.
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": f"{__name__}.SQLITE_CONNECT_ARGS",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": f"{__name__}.SQLITE_CONNECT_ARGS",
        "AIRFLOW__CORE__PARALLELISM": "4",  # sized for 2 cores; the default 32 forks idle workers
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__API__HOST": LOOPBACK,
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": settings.airflow_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{settings.airflow_url}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": _jwt_secret(home),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(_passwords_file(settings)),
        # The resolved settings, so every child derives the same names and endpoints.
        "STOREPULSE_ENV": settings.env,
        "STOREPULSE_STATE_DIR": str(settings.state_dir),
        "STOREPULSE_AWS_PORT": str(settings.aws_port),
        "STOREPULSE_AIRFLOW_PORT": str(settings.airflow_port),
        "STOREPULSE_EMBEDDED_AWS": "1" if settings.embedded_aws else "0",
        "AWS_DEFAULT_REGION": settings.region,
    }
    if settings.embedded_aws:
        env |= {
            "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_uri(settings),
            "AWS_ENDPOINT_URL": settings.embedded_aws_url,
            # Provisioning, demo seeding, the simulator and the Lambda runtime's poller set
            # things up as the administrator; Airflow's tasks use aws_default (the deployer).
            **ADMIN.environment(),
        }
    return env


def component_env(settings: Settings, part: str, env: dict[str, str]) -> dict[str, str]:
    """The environment of one Airflow component: the api-server, which serves the dashboard and
    makes no other AWS call (tasks and the triggerer use aws_default), signs as the dashboard
    principal (infra/iam/dashboard-policy.json) instead of the administrator."""
    if settings.embedded_aws and part == "api-server":
        return {**env, **DASHBOARD.environment()}
    return env


def _jwt_secret(home: Path) -> str:
    """One secret shared by every component (they sign and check each other's tokens)."""
    path = home / "jwt_secret"
    create_private(path, os.urandom(32).hex().encode())
    return path.read_text().strip()


def _passwords_file(settings: Settings) -> Path:
    """Airflow opens this file for appending (``open(path, "a+")``), which would create it with
    the usual 0644: created here first, empty and private, so Airflow only ever appends."""
    path = passwords_file(settings)
    create_private(path)
    return path


def admin_password(settings: Settings) -> str | None:
    """The admin password the api-server generated on its first start (None before that)."""
    try:
        passwords = json.loads(passwords_file(settings).read_text() or "{}")
    except (FileNotFoundError, ValueError):
        return None
    return passwords.get(ADMIN_USER)


class AirflowApiError(RuntimeError):
    """Airflow's REST API answered with an error."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def transient(self) -> bool:
        """Worth retrying: a server error (SQLite busy, say) or no answer at all."""
        return self.status is None or self.status >= 500


class AirflowClient:
    """The few REST calls the platform makes: log in, unpause, trigger, wait for a run.

    SQLite lets one process write at a time, so Airflow answers a request that loses the race
    with the scheduler or dag-processor with HTTP 500 "Database error": every call is retried
    with backoff, and each is safe to repeat (a trigger names its run, so a repeat is a 409).
    """

    def __init__(
        self, base_url: str, username: str, password: str, retry_delay: float = 0.5
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry_delay = retry_delay
        self._credentials = {"username": username, "password": password}
        self._token: str | None = None

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        for attempt in range(1, API_ATTEMPTS + 1):
            try:
                return self._request_once(method, path, body)
            except AirflowApiError as exc:
                if not exc.transient or attempt == API_ATTEMPTS:
                    raise
                time.sleep(self.retry_delay * 2**attempt)
        raise AssertionError("unreachable")

    def _request_once(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            method=method,
            headers=headers,
            data=json.dumps(body).encode() if body is not None else None,
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise AirflowApiError(f"{method} {path}: HTTP {exc.code} {detail}", exc.code) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise AirflowApiError(f"{method} {path}: no answer ({exc})") from None

    def login(self) -> None:
        self._token = None
        self._token = self._request("POST", "/auth/token", self._credentials)["access_token"]

    def wait_for_dag(self, dag_id: str, timeout: float = 180.0) -> None:
        """Wait until the dag-processor has parsed the DAG (the API answers 404 before)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._request("GET", f"/api/v2/dags/{dag_id}")
                return
            except AirflowApiError as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(1.0)

    def unpause(self, dag_id: str) -> None:
        self.set_paused(dag_id, False)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})

    def trigger(
        self,
        dag_id: str,
        conf: dict[str, Any] | None = None,
        logical_date: datetime | None = None,
        data_interval: tuple[datetime, datetime] | None = None,
    ) -> str:
        """Start a run and return its id. The id is chosen here, so a retried POST whose first
        attempt did land finds its own run (409) instead of starting a second one. Without a
        ``logical_date`` the run has no data interval; with one, the timetable infers it unless
        ``data_interval`` is given. (Airflow 3 never starts a run whose logical date is in the
        future: it stays "running" with no task scheduled.)"""
        run_id = f"api__{datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%S')}__{uuid.uuid4().hex[:8]}"
        day = logical_date.isoformat() if logical_date else None
        body: dict[str, Any] = {"dag_run_id": run_id, "logical_date": day, "conf": conf or {}}
        if data_interval is not None:
            body["data_interval_start"], body["data_interval_end"] = (
                moment.isoformat() for moment in data_interval
            )
        try:
            self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
        except AirflowApiError as exc:
            if exc.status != 409:  # the id is unique: a conflict means an earlier attempt landed
                raise
        return run_id

    def run_state(self, dag_id: str, run_id: str) -> str:
        quoted = urllib.request.quote(run_id, safe="")
        return str(self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}")["state"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300.0) -> str:
        """Poll until the run finishes; return its final state ('success' or 'failed')."""
        deadline = time.monotonic() + timeout
        while (state := self.run_state(dag_id, run_id)) not in {"success", "failed"}:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} run {run_id} still {state} after {timeout:.0f} s")
            time.sleep(1.0)
        return state

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"])

    def every_dag_run(self) -> list[dict[str, Any]]:
        """The latest runs of every DAG (``~`` stands for all DAGs)."""
        return list(self._request("GET", "/api/v2/dags/~/dagRuns?limit=100")["dag_runs"])

    def wait_for_new_run(self, dag_id: str, earlier: set[str], timeout: float = 120.0) -> str:
        """The id of a run of ``dag_id`` not in ``earlier`` (one an Asset event started)."""
        deadline = time.monotonic() + timeout
        while not (new := [r for r in self.dag_runs(dag_id) if r["dag_run_id"] not in earlier]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no new {dag_id} run after {timeout:.0f} s")
            time.sleep(1.0)
        return str(new[0]["dag_run_id"])

    def mark_run(self, dag_id: str, run_id: str, state: str) -> None:
        """Set a run's state, as the UI's "Mark as ..." does."""
        quoted = urllib.request.quote(run_id, safe="")
        self._request("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}", {"state": state})

    def health(self) -> dict[str, Any]:
        return dict(self._request("GET", "/api/v2/monitor/health"))
