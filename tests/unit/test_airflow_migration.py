"""What Airflow's start waits for: `make up` migrates Airflow's SQLite database only when its
schema may be behind (after a migration of the same Airflow left it at the same revision, a
restart skips `airflow db migrate`, a whole Airflow start), and the api-server starts before the
step that fails interrupted runs, not after it."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from storepulse.config import Settings, load_settings
from storepulse_local.platform.airflow_local import (
    airflow_env,
    airflow_home,
    migration_is_current,
    record_migration,
)
from storepulse_local.platform.stack import AirflowComponent, start_order


def _database_at(settings: Settings, revision: str) -> None:
    """An Airflow SQLite database whose schema is at ``revision`` (alembic's own table)."""
    airflow_home(settings).mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(airflow_home(settings) / "airflow.db")) as db:
        db.execute("CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32))")
        db.execute("DELETE FROM alembic_version")
        db.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
        db.commit()


def test_a_database_is_migrated_until_a_migration_recorded_its_revision(tmp_path: Path) -> None:
    settings = load_settings({"STOREPULSE_STATE_DIR": str(tmp_path)})
    env = airflow_env(settings)
    assert not migration_is_current(settings, env)  # no database yet
    _database_at(settings, "d2f4e1b3c5a7")
    assert not migration_is_current(settings, env)  # never recorded
    record_migration(settings)
    assert migration_is_current(settings, env)
    _database_at(settings, "0000older000")  # e.g. restored from an older state dir
    assert not migration_is_current(settings, env)


def test_another_database_than_sqlite_is_always_migrated(tmp_path: Path) -> None:
    settings = load_settings({"STOREPULSE_STATE_DIR": str(tmp_path)})
    _database_at(settings, "d2f4e1b3c5a7")
    record_migration(settings)
    env = {**airflow_env(settings), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://x"}
    assert not migration_is_current(settings, env)


def test_the_api_server_and_dag_processor_start_beside_the_history_repair(tmp_path: Path) -> None:
    """Before the scheduler (which would adopt interrupted runs) only the repair must run."""
    settings = load_settings({"STOREPULSE_STATE_DIR": str(tmp_path)})
    names = [launch.name for launch in start_order(AirflowComponent().launches(settings))]
    assert names == [
        "airflow-db-migrate",
        "airflow-api-server",
        "airflow-dag-processor",
        "airflow-fail-interrupted",
        "airflow-scheduler",
        "airflow-triggerer",
    ]
