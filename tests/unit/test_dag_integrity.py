"""Every DAG in dags/ is checked here automatically: adding a DAG file adds it to these tests."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from storepulse.airflow.conventions import HEAVY_MODULES, OWNER
from storepulse.config import REPO_ROOT

DAGS_DIR = REPO_ROOT / "dags"
DAG_FILES = sorted(p for p in DAGS_DIR.rglob("*.py") if not p.name.startswith("_"))


@cache
def _load_dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


@pytest.fixture(scope="module")
def dagbag():
    return _load_dagbag()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "dag_id" in metafunc.fixturenames:
        metafunc.parametrize("dag_id", sorted(_load_dagbag().dag_ids))


def test_every_dag_file_imports(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert dagbag.dags, "no DAG found in dags/"


def test_every_dag_file_defines_a_dag(dagbag) -> None:
    files_with_dags = {Path(dag.fileloc).resolve() for dag in dagbag.dags.values()}
    assert [p.name for p in DAG_FILES if p.resolve() not in files_with_dags] == []


def test_dag_follows_conventions(dagbag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert dag.tags, "tag the DAG so it can be found in the UI"
    assert dag.doc_md and dag.doc_md.strip(), "give the DAG a doc_md (the module docstring)"
    for task in dag.tasks:
        assert task.owner == OWNER, f"{task.task_id}: owner {task.owner!r}"
        assert task.retries >= 1, f"{task.task_id}: retries={task.retries}"


class _ModuleLevelImports(ast.NodeVisitor):
    """Root packages imported when the file is parsed: function bodies (tasks) are not entered."""

    def __init__(self) -> None:
        self.roots: set[str] = set()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        pass

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]  # noqa: N815

    def visit_Import(self, node: ast.Import) -> None:
        self.roots |= {alias.name.split(".")[0] for alias in node.names}

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and node.level == 0:
            self.roots.add(node.module.split(".")[0])


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_has_no_heavy_module_level_import(path: Path) -> None:
    visitor = _ModuleLevelImports()
    visitor.visit(ast.parse(path.read_text(), filename=str(path)))
    assert visitor.roots & HEAVY_MODULES == set(), "import these inside the task that needs them"


def test_parsing_the_dags_loads_no_heavy_module_indirectly() -> None:
    """A helper module imported at the top of a DAG must not pull heavy modules in either."""
    script = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"DagBag(dag_folder={str(DAGS_DIR)!r})\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert loaded & HEAVY_MODULES == set()


def test_time_scheduled_dags_wait_for_the_stack_and_do_not_catch_up(dagbag) -> None:
    """A first start is green: no burst of catch-up runs, and a run scheduled before the first
    deploy waits for the stack (every other task comes after the sensor) instead of failing."""
    from storepulse.airflow.sensors import StackReadySensor

    unscheduled = {"NullTimetable", "AssetTriggeredTimetable"}
    timed = [d for d in dagbag.dags.values() if type(d.timetable).__name__ not in unscheduled]
    assert {dag.dag_id for dag in timed} >= {"nightly_export", "apply_lifecycle"}
    for dag in timed:
        assert not dag.catchup, dag.dag_id
        sensor = dag.task_dict["wait_for_stack"]
        assert isinstance(sensor, StackReadySensor) and sensor.mode == "reschedule"
        assert sensor.downstream_list, f"{dag.dag_id}: nothing waits for the stack"


def test_a_deploy_of_the_stack_starts_the_quicksight_deploy(dagbag) -> None:
    """deploy_quicksight is scheduled on the Asset deploy_realtime_stack's verification emits:
    QuickSight follows every deploy, `make up`'s first one included, without a manual run."""
    verify = dagbag.dags["deploy_realtime_stack"].task_dict["verify_stack"]
    quicksight = dagbag.dags["deploy_quicksight"]
    emitted = [asset.uri for asset in verify.outlets]
    assert [quicksight.timetable.asset_condition.uri] == emitted
    assert Path(quicksight.fileloc).name == "deploy_quicksight.py"
