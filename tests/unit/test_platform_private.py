"""Secrets on disk are private from their first byte, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from storepulse.config import Settings
from storepulse_local.platform.airflow_local import admin_password, airflow_env, passwords_file
from storepulse_local.platform.private import create_private, open_private_log, private_dir


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The worst umask: without an explicit mode, files would be world-writable."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_secret_is_created_0600_without_a_chmod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chmodded: list[Path] = []
    real_chmod = Path.chmod
    monkeypatch.setattr(Path, "chmod", lambda p, m: (chmodded.append(p), real_chmod(p, m)))
    path = tmp_path / "state" / "secret"

    assert create_private(path, b"s3cret") is True

    assert (_mode(path), path.read_bytes()) == (0o600, b"s3cret")
    assert path not in chmodded  # never readable by others, not even for a moment
    assert _mode(path.parent) == 0o700


def test_an_existing_file_is_kept_and_tightened(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("old")
    path.chmod(0o644)

    assert create_private(path, b"new") is False
    assert (_mode(path), path.read_text()) == (0o600, "old")
    private_dir(tmp_path)
    assert _mode(tmp_path) == 0o700


def test_logs_are_private(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "api-server.log"
    with open_private_log(path) as log:
        log.write(b"Password for user 'admin': x\n")
    path.chmod(0o644)
    with open_private_log(path) as log:
        log.write(b"again\n")
    assert _mode(path) == 0o600 and path.read_text().count("\n") == 2


def test_airflow_env_prepares_the_jwt_secret_and_the_passwords_file(tmp_path: Path) -> None:
    config = Settings("dev", "us-east-1", True, 5055, 8080, tmp_path / "state", None)

    env = airflow_env(config)

    secret = tmp_path / "state" / "airflow" / "jwt_secret"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == secret.read_text() and _mode(secret) == 0o600
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == str(passwords_file(config))
    assert _mode(passwords_file(config)) == 0o600
    assert admin_password(config) is None  # empty until the api-server appends the passwords
    assert airflow_env(config)["AIRFLOW__API_AUTH__JWT_SECRET"] == secret.read_text()  # stable
