"""docker-compose.yaml against what `make up` runs: no Docker engine runs here to start it.

The list of processes comes from the platform itself (``storepulse_local.platform.stack
.launches``): a component added to `make up` and missing from compose fails here, and so does a
service that runs another module, other arguments or another environment than `make up` gives
that process (values that differ by design are listed below, each with its reason)."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from storepulse.config import REPO_ROOT, Settings, load_settings
from storepulse_local.platform.airflow_local import airflow_env
from storepulse_local.platform.stack import Launch, launches

COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
_DEFAULTED_VARIABLE = re.compile(r"\$\{(\w+):-([^}]*)\}")
# The variables `make up` sets (not those it passes through from the caller's shell).
PLATFORM_PREFIXES = ("STOREPULSE_", "AWS_", "AIRFLOW")
# Same variable, another value on purpose.
DIFFERS_BY_DESIGN = {
    "STOREPULSE_STATE_DIR": "a volume path instead of the checkout's .run",
    "AIRFLOW_HOME": "under that volume path",
    "AIRFLOW__CORE__DAGS_FOLDER": "the image's copy of the repository",
    "AIRFLOW__CORE__PLUGINS_FOLDER": "the image's copy of the repository",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": "under that volume path",
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor, as Airflow's official compose file",
    "AIRFLOW__API__HOST": "every interface of the container (published on loopback only)",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "the api-server's service name",
    "AIRFLOW__API_AUTH__JWT_SECRET": "a secret: `make up` draws one per state directory",
    "AWS_ENDPOINT_URL": "the embedded AWS's service name",
    "AIRFLOW_CONN_AWS_DEFAULT": "the same connection, to the service name (checked below)",
}
# `make up`'s variables compose does not need.
REPLACED_IN_COMPOSE = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "SQLite's lock timeout; compose has PostgreSQL",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": "the same, for the async engine",
}
# Arguments whose value is a host path or address in `make up`.
PATH_ARGUMENTS = {"--state-dir", "--passwords-file", "--airflow-url"}

Service = dict[str, Any]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Service]:
    return compose["services"]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The defaults, with the state (where `make up` writes its secrets) in a temporary dir."""
    return load_settings({"STOREPULSE_STATE_DIR": str(tmp_path_factory.mktemp("state"))})


@pytest.fixture(scope="module")
def platform_env(settings: Settings) -> dict[str, str]:
    """What `make up` gives every process, without the caller's own variables."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ["PATH"] = saved.get("PATH", "")
    try:
        env = airflow_env(settings)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {name: value for name, value in env.items() if name.startswith(PLATFORM_PREFIXES)}


def unset(value: str) -> str:
    """``value`` as Compose interpolates it when no variable is set: ``${VAR:-x}`` -> ``x``."""
    return _DEFAULTED_VARIABLE.sub(lambda match: match[2], str(value))


def command(service: Service) -> list[str]:
    raw = service["command"]
    return [unset(part) for part in (shlex.split(raw) if isinstance(raw, str) else raw)]


def platform_launches() -> Iterator[Launch]:
    yield from launches(load_settings({}))


def _program(argv: list[str]) -> list[str]:
    """``python -m module`` or ``airflow part`` without the interpreter's path."""
    return argv[1:3] if Path(argv[0]).name.startswith("python") else argv[:1]


def _options(argv: list[str]) -> dict[str, str]:
    rest = argv[len(_program(argv)) + (1 if Path(argv[0]).name.startswith("python") else 0) :]
    return {rest[i]: rest[i + 1] for i in range(len(rest) - 1) if rest[i].startswith("--")}


@pytest.mark.parametrize("launch", platform_launches(), ids=lambda launch: launch.name)
def test_every_process_of_make_up_is_a_service(services: dict[str, Service], launch: Launch):
    assert launch.name in services, f"docker-compose.yaml lacks {launch.name!r} (`make up` runs it)"


@pytest.mark.parametrize("launch", platform_launches(), ids=lambda launch: launch.name)
def test_each_service_runs_the_same_module_and_arguments(
    services: dict[str, Service], launch: Launch
) -> None:
    argv = command(services[launch.name])
    assert Path(argv[0]).name.startswith("python") == Path(launch.argv[0]).name.startswith("python")
    assert _program(argv) == _program(launch.argv)
    positional = [a for a in launch.argv[len(_program(launch.argv)) :] if not a.startswith("-")]
    expected, found = _options(launch.argv), _options(argv)
    assert expected.keys() <= found.keys()
    for name, value in expected.items():
        if name not in PATH_ARGUMENTS:
            assert found[name] == value, name
    if not expected:  # `airflow db migrate`, `airflow scheduler`: the words themselves
        assert argv[-len(positional) :] == positional if positional else True


@pytest.mark.parametrize("launch", platform_launches(), ids=lambda launch: launch.name)
def test_each_service_has_the_environment_make_up_gives_it(
    services: dict[str, Service], platform_env: dict[str, str], launch: Launch
) -> None:
    expected = {**platform_env, **launch.env}
    found = {name: unset(value) for name, value in services[launch.name]["environment"].items()}
    assert expected.keys() - REPLACED_IN_COMPOSE.keys() <= found.keys()
    for name in expected.keys() - REPLACED_IN_COMPOSE.keys() - DIFFERS_BY_DESIGN.keys():
        assert found[name] == expected[name], name


def test_the_aws_connection_is_make_ups_on_the_service_name(
    services: dict[str, Service], platform_env: dict[str, str]
) -> None:
    env = services["airflow-scheduler"]["environment"]
    connection = json.loads(unset(env["AIRFLOW_CONN_AWS_DEFAULT"]))
    expected = json.loads(platform_env["AIRFLOW_CONN_AWS_DEFAULT"])
    port = load_settings({}).aws_port
    assert connection["extra"]["endpoint_url"] == f"http://embedded-aws:{port}"
    connection["extra"]["endpoint_url"] = expected["extra"]["endpoint_url"]
    assert connection == expected
    assert unset(env["AWS_ENDPOINT_URL"]) == f"http://embedded-aws:{port}"


def test_airflow_runs_celery_on_postgres_and_redis(services: dict[str, Service]) -> None:
    env = {
        name: unset(value) for name, value in services["airflow-scheduler"]["environment"].items()
    }
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert (
        env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        and "@redis:" in env["AIRFLOW__CELERY__BROKER_URL"]
    )
    assert command(services["airflow-worker"]) == ["airflow", "celery", "worker"]
    assert {"postgres", "redis"} <= services.keys()


def test_every_long_running_service_has_a_healthcheck_or_restarts(
    services: dict[str, Service],
) -> None:
    for name, service in services.items():
        one_shot = service.get("restart") is None and "healthcheck" not in service
        if name in {"postgres", "redis", "embedded-aws", "airflow-api-server", "airflow-worker"}:
            assert "healthcheck" in service, name
        assert one_shot or service.get("restart") in {"always", "no"}, name


def test_dependencies_wait_for_health_or_completion(services: dict[str, Service]) -> None:
    one_shots = {launch.name for launch in platform_launches() if launch.one_shot}
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, f"{name}: unknown {dependency}"
            wanted = (
                "service_completed_successfully"
                if dependency in one_shots
                else ("service_healthy" if "healthcheck" in services[dependency] else None)
            )
            if wanted:
                assert spec["condition"] == wanted, f"{name} -> {dependency}"


def test_the_demo_is_an_optional_profile(services: dict[str, Service]) -> None:
    assert services["demo-business"]["profiles"] == ["demo"]
    assert services["simulator"]["profiles"] == ["demo"]
    assert all(
        "profiles" not in s for n, s in services.items() if n not in {"demo-business", "simulator"}
    )


def test_the_image_is_built_from_the_lock(compose: dict[str, Any]) -> None:
    """The project's own image, from the Dockerfile: uv.lock inside, installed with --locked."""
    dockerfile = DOCKERFILE.read_text()
    assert "COPY pyproject.toml uv.lock ./" in dockerfile
    assert re.findall(r"uv sync --locked\b", dockerfile)
    assert "STOREPULSE_PROJECT_ROOT=/opt/storepulse" in dockerfile
    assert compose["x-storepulse"]["build"] == "."
    uv_version = re.search(r"^UV_VERSION := (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M)[1]
    assert f"ghcr.io/astral-sh/uv:{uv_version} " in dockerfile


def test_ports_are_on_loopback(services: dict[str, Service]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert unset(port).startswith("127.0.0.1:"), name
