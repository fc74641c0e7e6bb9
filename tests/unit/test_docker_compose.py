"""docker-compose.yaml, checked against the repository: no Docker engine runs here to start it."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from storepulse.config import REPO_ROOT, Settings, load_settings
from storepulse_local.embedded_aws import MOTO_CONFIG

COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
AIRFLOW_COMMANDS = {
    "airflow-init": "db migrate",
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
RUNTIME_SERVICES = sorted(set(AIRFLOW_COMMANDS) - {"airflow-init"})
CONTAINER_HOME = "/opt/airflow"
_DEFAULTED_VARIABLE = re.compile(r"\$\{(\w+):-([^}]*)\}")
_PIN = re.compile(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.]+)")

Service = dict[str, Any]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Service]:
    return compose["services"]


@pytest.fixture(scope="module")
def airflow_env(services: dict[str, Service]) -> dict[str, str]:
    return services["airflow-apiserver"]["environment"]


@pytest.fixture(scope="module")
def defaults() -> Settings:
    return load_settings({})


def unset(value: str) -> str:
    """``value`` as Compose interpolates it when no variable is set: ``${VAR:-x}`` -> ``x``."""
    return _DEFAULTED_VARIABLE.sub(lambda match: match[2], value)


def volumes(service: Service) -> list[tuple[str, str]]:
    """(source, target) of each volume: a host path or a named volume, and a container path."""
    pairs = [volume.split(":") for volume in service.get("volumes", [])]
    return [(source, target) for source, target, *_mode in pairs]


def test_every_expected_service_exists(services: dict[str, Service]) -> None:
    assert {"postgres", "moto", "moto-config", *AIRFLOW_COMMANDS} <= services.keys()


@pytest.mark.parametrize(("name", "command"), AIRFLOW_COMMANDS.items())
def test_airflow_service_runs_its_command(
    services: dict[str, Service], compose: dict[str, Any], name: str, command: str
) -> None:
    assert services[name]["command"] == command  # the image's entrypoint prefixes `airflow`
    assert services[name]["image"] == compose["x-airflow-common"]["image"]


def test_airflow_services_share_one_environment(
    services: dict[str, Service], airflow_env: dict[str, str]
) -> None:
    # One JWT secret, one database, one connection for every part of Airflow.
    assert all(services[name]["environment"] == airflow_env for name in AIRFLOW_COMMANDS)
    api = urlsplit(airflow_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert (api.hostname, api.port, api.path) == ("airflow-apiserver", 8080, "/execution/")


def test_ports_default_to_the_settings_defaults(
    services: dict[str, Service], defaults: Settings
) -> None:
    airflow_port = f"${{STOREPULSE_AIRFLOW_PORT:-{defaults.airflow_port}}}"
    aws_port = f"${{STOREPULSE_AWS_PORT:-{defaults.aws_port}}}"
    assert services["airflow-apiserver"]["ports"] == [f"127.0.0.1:{airflow_port}:8080"]
    assert services["moto"]["ports"] == [f"127.0.0.1:{aws_port}:{aws_port}"]
    # The project's embedded AWS (moto and its patches), not plain moto_server.
    assert services["moto"]["entrypoint"] == ["python3", "-m", "storepulse_local.embedded_aws"]
    assert services["moto"]["command"] == ["--host", "0.0.0.0", "--port", aws_port]


def test_containers_resolve_the_default_settings(
    airflow_env: dict[str, str], defaults: Settings
) -> None:
    container = load_settings({name: unset(value) for name, value in airflow_env.items()})
    assert (container.env, container.region, container.embedded_aws, container.aws_port) == (
        defaults.env,
        defaults.region,
        defaults.embedded_aws,
        defaults.aws_port,
    )


def test_every_host_path_exists(compose: dict[str, Any], services: dict[str, Service]) -> None:
    for name, service in services.items():
        for source, _target in volumes(service):
            if source.startswith((".", "/")):
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: {source}"
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"


def test_repository_folders_keep_their_names_under_airflow_home(
    services: dict[str, Service], airflow_env: dict[str, str]
) -> None:
    # storepulse.config.REPO_ROOT is then /opt/airflow in the containers.
    for source, target in volumes(services["airflow-scheduler"]):
        if source.startswith("."):
            assert target == f"{CONTAINER_HOME}/{Path(source).name}"
    assert airflow_env["PYTHONPATH"] == f"{CONTAINER_HOME}/plugins"


def test_aws_connection_points_at_the_embedded_aws(
    airflow_env: dict[str, str], defaults: Settings
) -> None:
    connection = json.loads(unset(airflow_env["AIRFLOW_CONN_AWS_DEFAULT"]))
    endpoint = urlsplit(connection["extra"]["endpoint_url"])
    assert connection["conn_type"] == "aws"
    assert (endpoint.hostname, endpoint.port) == ("moto", defaults.aws_port)
    assert connection["extra"]["region_name"] == defaults.region
    assert unset(airflow_env["AWS_ENDPOINT_URL"]) == connection["extra"]["endpoint_url"]


def test_moto_config_applies_the_platform_configuration(
    services: dict[str, Service], defaults: Settings
) -> None:
    command = services["moto-config"]["command"]
    assert json.loads(command[command.index("--data") + 1]) == MOTO_CONFIG
    assert unset(command[-1]) == f"http://moto:{defaults.aws_port}/moto-api/config"


def test_every_dependency_is_a_service(services: dict[str, Service]) -> None:
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= services.keys(), name


@pytest.mark.parametrize("name", RUNTIME_SERVICES)
def test_airflow_starts_after_database_schema_and_moto_config(
    services: dict[str, Service], name: str
) -> None:
    conditions = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
    assert conditions["postgres"] == "service_healthy"
    assert conditions["airflow-init"] == "service_completed_successfully"
    assert conditions["moto-config"] == "service_completed_successfully"


def test_image_pins_equal_pyproject_pins(compose: dict[str, Any]) -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pyproject_pins = dict(
        _PIN.fullmatch(dependency).groups() for dependency in project["dependencies"]
    )
    dockerfile = compose["x-airflow-common"]["build"]["dockerfile_inline"]
    assert dict(_PIN.findall(dockerfile)) == pyproject_pins
    assert dockerfile.startswith(
        f"FROM apache/airflow:{pyproject_pins['apache-airflow']}-python3.11\n"
    )


def test_the_admin_login_has_a_known_password(
    compose: dict[str, Any], airflow_env: dict[str, str]
) -> None:
    dockerfile = compose["x-airflow-common"]["build"]["dockerfile_inline"]
    password_file = f"{CONTAINER_HOME}/simple_auth_manager_passwords.json.generated"
    seeded = json.loads(re.search(rf"echo '(\{{.*\}})' > {password_file}\n", dockerfile)[1])
    users = [
        user.split(":")[0]
        for user in airflow_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")
    ]
    assert seeded == {"admin": "admin"}
    assert set(users) <= seeded.keys()


def test_database_url_matches_the_postgres_service(
    services: dict[str, Service], airflow_env: dict[str, str]
) -> None:
    url = urlsplit(airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    postgres = services["postgres"]["environment"]
    assert url.hostname == "postgres"
    assert (url.username, url.password, url.path.lstrip("/")) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )


def test_the_moto_container_mounts_the_embedded_aws(services: dict[str, Service]) -> None:
    """moto's image runs ``storepulse_local.embedded_aws`` from the mounted folders: each
    PYTHONPATH entry is a mounted folder of the repository holding its package."""
    mounts = dict(
        reversed(volume.removesuffix(":ro").split(":", 1)) for volume in services["moto"]["volumes"]
    )
    paths = services["moto"]["environment"]["PYTHONPATH"].split(":")
    packages = {"storepulse_local", "storepulse"}
    for path in paths:
        folder = REPO_ROOT / mounts[path]
        packages -= {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
    assert not packages, f"not on the container's PYTHONPATH: {packages}"
