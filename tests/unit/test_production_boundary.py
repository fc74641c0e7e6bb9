"""Production code (the ``storepulse`` library, ``dags/``, ``lambdas/``) never imports the local
platform (``storepulse_local``): the Lambda zip and a managed Airflow install only
``storepulse``."""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from storepulse.config import REPO_ROOT

PRODUCTION_DIRS = ("plugins", "dags", "lambdas")
LOCAL_PACKAGE = "storepulse_local"


def production_files() -> Iterator[Path]:
    for folder in PRODUCTION_DIRS:
        yield from sorted((REPO_ROOT / folder).rglob("*.py"))


def imported_modules(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


@pytest.mark.parametrize(
    "path", list(production_files()), ids=lambda p: str(p.relative_to(REPO_ROOT))
)
def test_production_code_does_not_import_the_local_platform(path: Path) -> None:
    local = [m for m in imported_modules(path) if m.split(".")[0] == LOCAL_PACKAGE]
    assert not local, f"{path.relative_to(REPO_ROOT)} imports the local platform: {local}"


def test_the_project_wheel_holds_only_the_library() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        "plugins/storepulse"
    ]
    dependencies = " ".join(project["project"]["dependencies"])
    for local_only in ("moto", "storepulse-local", "duckdb", "psutil"):
        assert local_only not in dependencies, f"{local_only} is a runtime dependency"
