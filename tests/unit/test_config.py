from __future__ import annotations

from pathlib import Path

import pytest

from storepulse.config import REPO_ROOT, ConfigError, load_settings


def test_defaults_are_the_local_platform() -> None:
    settings = load_settings({})
    assert (settings.env, settings.region, settings.embedded_aws) == ("dev", "us-east-1", True)
    assert settings.embedded_aws_url == "http://127.0.0.1:5055"
    assert settings.airflow_url == "http://127.0.0.1:8080"
    assert settings.aws_endpoint_url is None  # boto3's default endpoints unless told otherwise
    assert settings.state_dir == REPO_ROOT / ".run"


def test_environment_prefixes_every_resource_name() -> None:
    settings = load_settings({"STOREPULSE_ENV": "prod", "AWS_DEFAULT_REGION": "eu-west-1"})
    assert settings.resource_name("events") == "storepulse-prod-events"
    assert settings.region == "eu-west-1"


def test_real_aws_is_a_matter_of_configuration() -> None:
    settings = load_settings({"STOREPULSE_EMBEDDED_AWS": "0"})
    assert settings.embedded_aws is False
    assert settings.aws_endpoint_url is None


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"STOREPULSE_ENV": "Prod!"}, "STOREPULSE_ENV"),
        ({"STOREPULSE_AWS_PORT": "http"}, "STOREPULSE_AWS_PORT"),
        ({"STOREPULSE_AIRFLOW_PORT": "70000"}, "STOREPULSE_AIRFLOW_PORT"),
        ({"STOREPULSE_EMBEDDED_AWS": "maybe"}, "STOREPULSE_EMBEDDED_AWS"),
    ],
)
def test_invalid_values_name_their_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(environ)


def test_the_project_root_is_configured_or_bundled_or_the_checkout(tmp_path) -> None:
    """On managed Airflow no checkout exists: the templates, Lambda source and lock are found in
    the package (what `make dist` bundles) or where STOREPULSE_PROJECT_ROOT says."""
    from storepulse.config import BUNDLED_PROJECT, project_root

    package = tmp_path / "plugins" / "storepulse"
    package.mkdir(parents=True)
    assert project_root({}, package) == tmp_path  # a checkout: plugins/storepulse
    (package / BUNDLED_PROJECT).mkdir()
    assert project_root({}, package) == package / BUNDLED_PROJECT
    elsewhere = tmp_path / "opt" / "project"
    assert project_root({"STOREPULSE_PROJECT_ROOT": str(elsewhere)}, package) == elsewhere
    assert (REPO_ROOT / "uv.lock").is_file() and (REPO_ROOT / "infra").is_dir()


def test_the_lambda_build_dir_is_the_state_dirs_unless_set(tmp_path: Path) -> None:
    default = load_settings({"STOREPULSE_STATE_DIR": str(tmp_path / "state")})
    assert default.lambda_build_dir == tmp_path / "state" / "build"
    shared = load_settings(
        {"STOREPULSE_STATE_DIR": str(tmp_path / "state"), "STOREPULSE_BUILD_DIR": str(tmp_path)}
    )
    assert shared.lambda_build_dir == tmp_path
