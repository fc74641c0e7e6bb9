"""The platform's REST client rides out SQLite's "database is busy" answers without ever
starting a DAG run twice."""

from __future__ import annotations

import importlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from storepulse.config import load_settings
from storepulse_local.platform.airflow_local import (
    API_ATTEMPTS,
    AirflowApiError,
    AirflowClient,
    airflow_env,
)

DATABASE_ERROR = {"detail": {"reason": "Database error", "message": "look for ID X"}}


class FakeAirflow:
    """Answers requests from a script: each path gets its queued (status, body) answers,
    then success; every request is recorded. A scripted trigger still creates its run, as a
    commit whose answer is lost would."""

    def __init__(self) -> None:
        self.script: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.runs: dict[str, dict[str, Any]] = {}

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        self.requests.append((method, path, body))
        queued = self.script.get((method, path))
        if queued:
            status, answer = queued.pop(0)
            if method == "POST" and path.endswith("/dagRuns"):
                self.runs[body["dag_run_id"]] = body
            return status, answer
        if method == "POST" and path.endswith("/dagRuns"):
            if body["dag_run_id"] in self.runs:
                return 409, {"detail": "already exists"}
            self.runs[body["dag_run_id"]] = body
            return 200, {"dag_run_id": body["dag_run_id"], "state": "queued"}
        if path == "/auth/token":
            return 201, {"access_token": "token"}
        return 200, {"state": "success"}


@pytest.fixture
def fake() -> Iterator[tuple[FakeAirflow, AirflowClient]]:
    airflow = FakeAirflow()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, answer = airflow.answer(self.command, self.path, body)
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PATCH(self) -> None:
            self._serve()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    yield airflow, AirflowClient(url, "admin", "pw", retry_delay=0.001)
    server.shutdown()


def test_a_database_error_is_retried_until_the_call_succeeds(
    fake: tuple[FakeAirflow, AirflowClient],
) -> None:
    airflow, client = fake
    path = "/api/v2/dags/deploy_realtime_stack"
    airflow.script[("PATCH", path)] = [(500, DATABASE_ERROR), (500, DATABASE_ERROR)]

    client.unpause("deploy_realtime_stack")

    assert [r[0:2] for r in airflow.requests] == [("PATCH", path)] * 3


def test_a_persistent_database_error_fails_with_airflows_answer(
    fake: tuple[FakeAirflow, AirflowClient],
) -> None:
    airflow, client = fake
    path = "/api/v2/dags/deploy_realtime_stack"
    airflow.script[("PATCH", path)] = [(500, DATABASE_ERROR)] * API_ATTEMPTS

    with pytest.raises(AirflowApiError, match=r"HTTP 500.*Database error") as raised:
        client.unpause("deploy_realtime_stack")

    assert raised.value.status == 500
    assert len(airflow.requests) == API_ATTEMPTS


def test_a_client_error_is_not_retried(fake: tuple[FakeAirflow, AirflowClient]) -> None:
    airflow, client = fake
    airflow.script[("PATCH", "/api/v2/dags/nope")] = [(404, {"detail": "DAG not found"})]

    with pytest.raises(AirflowApiError, match="HTTP 404"):
        client.unpause("nope")

    assert len(airflow.requests) == 1


def test_a_trigger_whose_first_attempt_landed_starts_one_run(
    fake: tuple[FakeAirflow, AirflowClient],
) -> None:
    """The server commits the run but the answer is lost as a 500: the retry meets its own
    run (409) and reports it, rather than starting a second deploy."""
    airflow, client = fake
    airflow.script[("POST", "/api/v2/dags/deploy_realtime_stack/dagRuns")] = [(500, DATABASE_ERROR)]

    run_id = client.trigger("deploy_realtime_stack", {"why": "test"})

    assert list(airflow.runs) == [run_id]
    posts = [r for r in airflow.requests if r[0] == "POST"]
    assert len(posts) == 2 and posts[0][2] == posts[1][2]  # the same run id both times


def test_the_trigger_names_its_run_within_airflows_allowed_pattern(
    fake: tuple[FakeAirflow, AirflowClient],
) -> None:
    airflow, client = fake
    run_id = client.trigger("platform_check")
    assert airflow.runs[run_id]["logical_date"] is None
    # Airflow's default [scheduler] allowed_run_id_pattern
    assert re.fullmatch(r"[A-Za-z0-9_.~:+-]+", run_id)


def test_no_answer_is_retried_then_reported() -> None:
    client = AirflowClient("http://127.0.0.1:9", "admin", "pw", retry_delay=0.001)
    with pytest.raises(AirflowApiError, match="no answer") as raised:
        client.login()
    assert raised.value.status is None


def test_every_airflow_process_waits_for_sqlites_lock(tmp_path: Path) -> None:
    env = airflow_env(load_settings({"STOREPULSE_STATE_DIR": str(tmp_path)}))
    for key in ("SQL_ALCHEMY_CONNECT_ARGS", "SQL_ALCHEMY_CONNECT_ARGS_ASYNC"):
        module, _, name = env[f"AIRFLOW__DATABASE__{key}"].rpartition(".")
        assert getattr(importlib.import_module(module), name)["timeout"] >= 30


def test_a_dag_not_parsed_yet_is_waited_for(fake: tuple[FakeAirflow, AirflowClient]) -> None:
    airflow, client = fake
    path = "/api/v2/dags/deploy_realtime_stack"
    airflow.script[("GET", path)] = [(404, {"detail": "DAG not found"})] * 2

    client.wait_for_dag("deploy_realtime_stack", timeout=30)

    assert [r[0:2] for r in airflow.requests] == [("GET", path)] * 3
