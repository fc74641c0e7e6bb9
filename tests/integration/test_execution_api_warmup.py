"""Airflow's own api-server app, with the project's plugins folder as the platform configures it:
the execution API is built by the plugin's warm-up as the server starts, before any request to
it, while the UI answers. Run in a child interpreter: the app reads its configuration (AIRFLOW_HOME,
the plugins folder) once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from storepulse.config import REPO_ROOT

SERVER = r"""
import json, threading, time
from cadwyn import Cadwyn
from starlette.testclient import TestClient
from airflow.api_fastapi.app import create_app

builders = []
build = Cadwyn._cadwyn_initialize

def recorded(self):
    builders.append(threading.current_thread().name)
    build(self)

Cadwyn._cadwyn_initialize = recorded
app = create_app("all")
with TestClient(app) as client:
    ui = client.get("/api/v2/version").status_code  # answered whether or not it is built yet
    deadline = time.monotonic() + 120
    while not builders and time.monotonic() < deadline:
        time.sleep(0.2)
    execution = client.get("/execution/health").status_code
print(json.dumps({"builders": builders, "ui": ui, "execution": execution}))
"""


def test_the_api_server_builds_its_execution_api_as_it_starts(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__API_AUTH__JWT_SECRET": "test-only",
    }
    child = subprocess.run(
        [sys.executable, "-c", SERVER], env=env, capture_output=True, text=True, timeout=600
    )
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result == {"builders": ["execution-api-warm-up"], "ui": 200, "execution": 200}
