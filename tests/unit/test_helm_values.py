"""infra/helm/values.yaml (the official Apache Airflow chart) against the project: its Airflow,
its image's layout, the variables storepulse.config reads, credentials only from IRSA."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
import yaml

from storepulse.config import REPO_ROOT, load_settings

VALUES = REPO_ROOT / "infra" / "helm" / "values.yaml"
TASK_RUNNERS = ("scheduler", "workers", "triggerer")


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load(VALUES.read_text())


def _role(values: dict[str, Any], component: str) -> str:
    return values[component]["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"]


def test_the_chart_runs_the_locked_airflow_with_a_scaling_executor(values: dict[str, Any]) -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = dict(d.split("==") for d in project["dependencies"])
    assert values["airflowVersion"] == pins["apache-airflow"]
    assert values["executor"] in {"CeleryExecutor", "KubernetesExecutor"}


def test_the_image_layout_is_the_dockerfiles(values: dict[str, Any]) -> None:
    root = re.search(r"STOREPULSE_PROJECT_ROOT=(\S+)", (REPO_ROOT / "Dockerfile").read_text())[1]
    env = {item["name"]: item["value"] for item in values["env"]}
    assert env["STOREPULSE_PROJECT_ROOT"] == root
    assert values["config"]["core"]["dags_folder"] == f"{root}/dags"
    assert values["config"]["core"]["plugins_folder"] == f"{root}/plugins"


def test_the_environment_is_valid_for_storepulse(values: dict[str, Any]) -> None:
    env = {item["name"]: item["value"] for item in values["env"]}
    settings = load_settings(env)
    assert settings.embedded_aws is False and settings.env == env["STOREPULSE_ENV"]
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"} & env.keys()


def test_aws_default_comes_from_a_secret_and_credentials_from_irsa(values: dict[str, Any]) -> None:
    [secret] = [s for s in values["secret"] if s["envName"] == "AIRFLOW_CONN_AWS_DEFAULT"]
    assert secret["secretName"] and secret["secretKey"]
    assert {_role(values, c) for c in TASK_RUNNERS} == {
        "arn:aws:iam::REPLACE-ME:role/storepulse-deployment"
    }
    assert _role(values, "apiServer").endswith(":role/storepulse-dashboard")
