"""Issue 13's dashboard findings against Airflow's real api-server: the platform's Airflow
configuration (``airflow_env``), its simple auth manager, and tokens it issues from the passwords
it generated for an ADMIN, an OP and VIEWERs. Nothing here overrides ``current_viewer``.

One api-server serves the module (``airflow db migrate`` and its start take 20-60 s); each test
gets a fresh embedded AWS (``realtime_stack``) and grants what it needs. The api-server caches a
user's grant for a few seconds, so every user here keeps one grant for the whole module."""

from __future__ import annotations

import json
import socket
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from storepulse.config import Settings
from storepulse.layout import Table
from storepulse.settings import AccessStore, StoreAccess
from storepulse_local.platform.airflow_local import airflow_env, component_env, passwords_file
from storepulse_local.platform.processes import ManagedProcess, stop_trees
from tests.integration.conftest import STORES, RealtimeStack

USERS = {"admin": "admin", "op": "op", "viewer": "viewer", "limited": "viewer", "nobody": "viewer"}
GRANTS: dict[str, tuple[str, ...]] = {"admin": (), "op": (), "viewer": (), "limited": ("s-001",)}
START_SECONDS = 240.0


@dataclass
class AirflowApi:
    url: str
    config: Settings
    passwords: dict[str, str]

    def client(self, username: str | None) -> httpx.Client:
        """A client logged in as ``username`` with a token from ``POST /auth/token``."""
        headers = {}
        if username is not None:
            login = {"username": username, "password": self.passwords[username]}
            response = httpx.post(f"{self.url}/auth/token", json=login, timeout=30)
            response.raise_for_status()
            headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        return httpx.Client(base_url=f"{self.url}/dashboard", headers=headers, timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v2/version", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _start(process: ManagedProcess, url: str) -> None:
    process.start()
    deadline = time.monotonic() + START_SECONDS
    while not _answers(url):
        if process.exit_code() is not None or time.monotonic() > deadline:
            pytest.fail(f"the api-server did not start:\n{process.log_tail(40)}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def airflow_api(_embedded_aws_server: Any, tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("airflow-api") / "state"
    config = Settings(
        env="dev",
        region="us-east-1",
        embedded_aws=True,
        aws_port=_embedded_aws_server.port,
        airflow_port=_free_port(),
        state_dir=state,
        aws_endpoint_url=None,
    )
    users = ",".join(f"{name}:{role}" for name, role in USERS.items())
    # As the platform starts it: signing as the dashboard principal (its policy only).
    env = component_env(config, "api-server", airflow_env(config)) | {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": users,
        "STOREPULSE_LAKE_BUCKET": config.resource_name("lake"),
    }
    migrate = ManagedProcess("migrate", ["airflow", "db", "migrate"], env, state / "migrate.log")
    migrate.start()
    assert migrate.popen is not None and migrate.popen.wait(timeout=300) == 0, migrate.log_tail()
    argv = ["airflow", "api-server", "--apps", "core", "--workers", "1"]
    server = ManagedProcess("api-server", argv, env, state / "logs" / "api-server.log")
    try:
        _start(server, config.airflow_url)
        passwords = json.loads(passwords_file(config).read_text())
        yield AirflowApi(config.airflow_url, config, passwords)
    finally:
        stop_trees([pid for pid in (server.pid,) if pid])


@pytest.fixture
def api(airflow_api: AirflowApi, realtime_stack: RealtimeStack) -> Iterator[AirflowApi]:
    access = AccessStore(realtime_stack.table(Table.SETTINGS))
    for username, stores in GRANTS.items():
        grant = StoreAccess(username=username, store_ids=stores, all_stores=not stores)
        access.put(grant, STORES)
    yield airflow_api


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- editing -----------------------------------------------------------------------------------

RULE_OFF = {"type": "low_stock", "enabled": False}


def test_a_viewer_cannot_edit_but_op_and_admin_can(api: AirflowApi) -> None:
    for username, may_edit in (("viewer", False), ("op", True), ("admin", True)):
        with api.client(username) as client:
            assert client.get("/api/me").json()["can_edit"] is may_edit, username
    with api.client("viewer") as viewer:
        assert viewer.put("/api/settings/kpis", json={"kpis": ["orders"]}).status_code == 403
        assert viewer.put("/api/settings/alert-rules/low-stock", json=RULE_OFF).status_code == 403
        assert viewer.delete("/api/settings/kpis").status_code == 403
        rules = {r["rule_id"]: r for r in viewer.get("/api/settings/alert-rules").json()}
        assert rules["low-stock"]["enabled"] is True
        assert viewer.get("/api/settings/kpis").json()["saved"] is False
    with api.client("op") as op:
        assert op.put("/api/settings/alert-rules/low-stock", json=RULE_OFF).status_code == 200
        assert op.put("/api/settings/kpis", json={"kpis": ["orders"]}).status_code == 200
    with api.client("admin") as admin:
        assert admin.get("/api/settings/kpis").json()["kpis"] == ["orders"]


def test_without_a_valid_token_nothing_answers(api: AirflowApi) -> None:
    with api.client(None) as anonymous:
        assert anonymous.get("/api/me").status_code == 401
        assert anonymous.put("/api/settings/kpis", json={"kpis": ["orders"]}).status_code == 401
    forged = {"Authorization": "Bearer eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhZG1pbiJ9.c2ln"}
    assert httpx.get(f"{api.url}/dashboard/api/me", headers=forged).status_code == 403


# --- store limits ------------------------------------------------------------------------------


def test_store_limits_hold_for_real_users(api: AirflowApi, realtime_stack: RealtimeStack) -> None:
    with api.client("limited") as limited:
        me = limited.get("/api/me").json()
        assert [s["store_id"] for s in me["stores"]] == ["s-001"] and not me["all_stores"]
        assert limited.get("/api/live", params={"store": "s-001"}).status_code == 200
        assert limited.get("/api/live", params={"store": "s-002"}).status_code == 403
        assert limited.get("/api/live").status_code == 403  # the business total
        assert limited.put("/api/settings/kpis", json={"kpis": ["orders"]}).status_code == 403
    with api.client("nobody") as nobody:  # never granted: fails closed
        assert nobody.get("/api/me").json()["stores"] == []
        for path in ("/api/live", "/api/settings/kpis", "/api/settings/alert-rules"):
            assert nobody.get(path).status_code == 403, path
        assert nobody.get("/api/live", params={"store": "s-002"}).status_code == 403


# --- hostile input -----------------------------------------------------------------------------


def test_hostile_parameters_and_bodies_are_4xx(api: AirflowApi) -> None:
    headers = {"Content-Type": "application/json"}
    with api.client("op") as op:
        old = op.get("/api/history/trend", params={"end": "0001-01-01"})
        assert old.status_code == 422 and old.json()["detail"][0].startswith("end: must be")
        path = "/api/settings/alert-rules/low-stock"
        assert op.put(path, content="[" * 100_000, headers=headers).status_code == 413
        deep = op.put(path, content="[" * 50_000, headers=headers)
        assert deep.json() == {"detail": ["body: nested deeper than 8 levels"]}
    with api.client("viewer") as viewer:  # refused before its body is even read
        assert viewer.put(path, content="[" * 50_000, headers=headers).status_code == 403


# --- secrets on disk ---------------------------------------------------------------------------


def test_airflows_secrets_are_private(airflow_api: AirflowApi) -> None:
    config = airflow_api.config
    assert set(json.loads(passwords_file(config).read_text())) == set(USERS)  # Airflow wrote it
    home = passwords_file(config).parent
    for path in (passwords_file(config), home / "jwt_secret", home / "airflow.db"):
        assert _mode(path) == 0o600, path
    assert _mode(config.state_dir) == 0o700
    log = config.state_dir / "logs" / "api-server.log"
    assert "Password for user 'admin'" in log.read_text() and _mode(log) == 0o600
