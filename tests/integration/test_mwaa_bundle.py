"""`make dist`'s MWAA bundle, unpacked into a bare Airflow home as MWAA does (dags folder,
plugins.zip extracted to the plugins folder and put on the path, startup.sh sourced), in a
temporary directory with no repository around it: the DAGs parse, the library, templates, Lambda
source and lock come from the bundle, and the deploy DAGs run against the embedded AWS."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from storepulse.config import REPO_ROOT
from storepulse.deploy.stack import stack_name
from tests.dag_runs import airflow_home, run_dags


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "dist.py"), str(out)], check=True)
    return out / "mwaa"


def _startup_variables(script: Path) -> dict[str, str]:
    shell = subprocess.run(
        ["sh", "-c", f". {script}; env -0"], env={}, capture_output=True, check=True
    )
    pairs = (item.split("=", 1) for item in shell.stdout.decode().split("\0") if "=" in item)
    return {name: value for name, value in pairs if name.startswith("STOREPULSE_")}


def test_requirements_pin_the_lock_and_leave_the_local_platform_out(bundle: Path) -> None:
    pins = dict(
        line.split("==", 1)
        for line in (bundle / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    for dependency in project["dependencies"]:
        name, version = dependency.split("==")
        assert pins[name] == version, name
    assert not {"moto", "pytest", "storepulse", "storepulse-local"} & pins.keys()


def test_the_unpacked_bundle_parses_and_deploys_with_no_repository_around(
    bundle: Path, tmp_path: Path, embedded_aws: str, aws_client
) -> None:
    home = tmp_path / "airflow"
    plugins = home / "plugins"
    with zipfile.ZipFile(bundle / "plugins.zip") as archive:
        archive.extractall(plugins)
    (home / "dags").parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-r", str(bundle / "dags"), str(home / "dags")], check=True)
    assert REPO_ROOT not in home.parents and home not in REPO_ROOT.parents

    env = airflow_home(home, embedded_aws, cwd=home) | _startup_variables(bundle / "startup.sh")
    env |= {
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
        "PYTHONPATH": str(plugins),  # MWAA puts the plugins folder on the path
    }
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import storepulse.config as c; from storepulse.deploy import package as p; "
            "print(c.__file__); print(c.REPO_ROOT); print(p.LOCK_FILE)",
        ],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        check=True,
    )
    module, root, lock = (Path(line) for line in where.stdout.split())
    assert plugins in module.parents and root == plugins / "storepulse" / "_project"
    assert lock.is_file() and plugins in lock.parents

    deploy, quicksight = run_dags(
        env,
        [
            {"dag_id": "deploy_realtime_stack", "conf": {"smoke_test": False}},
            {"dag_id": "deploy_quicksight"},
        ],
        dag_folder=home / "dags",
        cwd=home,
    )
    assert deploy["state"] == "success", deploy["tasks"]
    assert deploy["events"] == {"cloudformation://storepulse/realtime": {}}
    assert quicksight["state"] == "success", quicksight["tasks"]
    stacks = aws_client("cloudformation").describe_stacks(StackName=stack_name("dev"))["Stacks"]
    assert stacks[0]["StackStatus"].endswith("_COMPLETE")
    outputs = {o["OutputKey"] for o in stacks[0].get("Outputs", [])}
    assert {"StreamName", "LakeBucket", "FactsTable"} <= outputs
    function = aws_client("lambda").list_functions()["Functions"]
    assert function and all(f["CodeSha256"] for f in function)
