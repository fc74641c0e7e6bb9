"""Which AWS keys each Airflow component of the local platform signs with: the api-server, which
serves the dashboard, the dashboard principal's (infra/iam/dashboard-policy.json); the others the
administrator's as before (their tasks use aws_default, the deployment principal). Checked here,
as Airflow's processes overwrite /proc/PID/environ with their titles (setproctitle)."""

from __future__ import annotations

import json
from pathlib import Path

from storepulse.config import Settings
from storepulse_local.iam import ADMIN, DASHBOARD, DEPLOYER
from storepulse_local.platform.airflow_local import COMPONENTS, airflow_env, component_env


def _settings(tmp_path: Path, embedded_aws: bool = True) -> Settings:
    return Settings("dev", "us-east-1", embedded_aws, 5055, 8080, tmp_path / "state", None)


def test_only_the_api_server_signs_as_the_dashboard(tmp_path: Path) -> None:
    config = _settings(tmp_path)
    env = airflow_env(config)
    keys = {part: component_env(config, part, env)["AWS_ACCESS_KEY_ID"] for part in COMPONENTS}
    assert keys == {
        "api-server": DASHBOARD.access_key_id,
        "scheduler": ADMIN.access_key_id,
        "dag-processor": ADMIN.access_key_id,
        "triggerer": ADMIN.access_key_id,
    }
    api_server = component_env(config, "api-server", env)
    assert api_server["AWS_SECRET_ACCESS_KEY"] == DASHBOARD.secret_access_key
    connection = json.loads(api_server["AIRFLOW_CONN_AWS_DEFAULT"])
    assert connection["login"] == DEPLOYER.access_key_id  # aws_default is unchanged
    assert env["AWS_ACCESS_KEY_ID"] == ADMIN.access_key_id  # the platform's own is untouched


def test_on_a_real_account_every_part_keeps_the_usual_chain(tmp_path: Path) -> None:
    config = _settings(tmp_path, embedded_aws=False)
    env = airflow_env(config)
    assert all(component_env(config, part, env) == env for part in COMPONENTS)
