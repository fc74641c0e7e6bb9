"""The scale profile's switch (``STOREPULSE_PROFILE``): what it changes in Airflow's environment
and in the platform's components, and that the default profile is left exactly as it was."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from storepulse.config import ConfigError, Settings, load_settings
from storepulse_local.platform import __main__ as platform_cli
from storepulse_local.platform.airflow_local import airflow_env
from storepulse_local.platform.scale import profile_env, scale_settings
from storepulse_local.platform.stack import PlatformError, components
from tests.platform_process import free_port


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        {
            "STOREPULSE_STATE_DIR": str(tmp_path),
            "STOREPULSE_AWS_PORT": str(free_port()),
            "STOREPULSE_AIRFLOW_PORT": str(free_port()),
        }
    )


@pytest.fixture
def scale(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    variables = {
        "STOREPULSE_PROFILE": "scale",
        "STOREPULSE_POSTGRES_PORT": str(free_port()),
        "STOREPULSE_REDIS_PORT": str(free_port()),
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return variables


@pytest.mark.parametrize("profile", [None, "default"])
def test_the_default_profile_is_unchanged(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, profile: str | None
) -> None:
    if profile:
        monkeypatch.setenv("STOREPULSE_PROFILE", profile)
    else:
        monkeypatch.delenv("STOREPULSE_PROFILE", raising=False)
    env = airflow_env(settings)
    assert profile_env(settings, env) == env
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert [c.name for c in components(settings)] == [
        "embedded-aws",
        "airflow",
        "lambda-runtime",
        "deploy",
        "demo-business",
        "simulator",
    ]


def test_an_unknown_profile_is_refused(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREPULSE_PROFILE", "scaled")
    with pytest.raises(ConfigError, match="STOREPULSE_PROFILE='scaled'"):
        components(settings)


def test_fewer_than_two_workers_are_refused(
    settings: Settings, scale: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOREPULSE_CELERY_WORKERS", "1")
    with pytest.raises(ConfigError, match="STOREPULSE_CELERY_WORKERS=1"):
        components(settings)


def test_scale_runs_celery_on_postgres_and_redis_on_loopback(
    settings: Settings, scale: dict[str, str]
) -> None:
    env = profile_env(settings, airflow_env(settings))
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    database = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert database.startswith("postgresql+psycopg2://airflow:")
    assert database.endswith(f"@127.0.0.1:{scale['STOREPULSE_POSTGRES_PORT']}/airflow")
    assert env["AIRFLOW__CELERY__BROKER_URL"].endswith(
        f"@127.0.0.1:{scale['STOREPULSE_REDIS_PORT']}/0"
    )
    # SQLite's lock timeout is not a PostgreSQL connect argument.
    assert not any(key.startswith("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT") for key in env)
    profile = scale_settings(settings)
    for secret in (profile.postgres_dir / "password", profile.redis_dir / "password"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    assert profile_env(settings, airflow_env(settings)) == env  # the passwords are kept


def test_scale_starts_the_engines_before_airflow_and_its_workers_after(
    settings: Settings, scale: dict[str, str]
) -> None:
    """Stopped in reverse: the workers finish their tasks while Airflow still runs, the
    database and the broker go last but for the embedded AWS."""
    assert [c.name for c in components(settings)] == [
        "embedded-aws",
        "postgres",
        "redis",
        "airflow",
        "celery-workers",
        "lambda-runtime",
        "deploy",
        "demo-business",
        "simulator",
    ]


def test_a_busy_database_port_is_named_with_its_variable(
    settings: Settings, scale: dict[str, str]
) -> None:
    port = int(scale["STOREPULSE_POSTGRES_PORT"])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        with pytest.raises(PlatformError, match=rf"port {port} .*STOREPULSE_POSTGRES_PORT"):
            platform_cli.preflight(settings)
