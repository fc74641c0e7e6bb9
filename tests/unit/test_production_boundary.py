"""Production code (the ``storepulse`` library, ``dags/``, ``lambdas/``) never imports the local
platform (``storepulse_local``): the Lambda zip and a managed Airflow install only
``storepulse``. Nor does it ask where it runs: real AWS or the embedded AWS is configuration
(the ``aws_default`` connection, ``AWS_ENDPOINT_URL``), and what the embedded AWS lacks is filled
inside it (``storepulse_local``), not by branches on the endpoint."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from storepulse.config import REPO_ROOT

PRODUCTION_DIRS = ("plugins", "dags", "lambdas")
LOCAL_PACKAGE = "storepulse_local"
# Names of a check for the embedded AWS (the former ``is_embedded_endpoint``, ``LOOPBACK_HOSTS``).
ENDPOINT_CHECK_NAME = re.compile(r"(?i)is_?embedded|embedded_?endpoint|loopback_?hosts|is_?local")
# Settings of the local platform: they configure it, and no production path may read them.
LOCAL_SETTINGS = frozenset({"embedded_aws", "embedded_aws_url"})
LOOPBACK_VALUES = frozenset({"localhost", "::1", "LOOPBACK"})


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


def _is_loopback(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value in LOOPBACK_VALUES or node.value.startswith("127.")
    return (isinstance(node, ast.Name) and node.id in LOOPBACK_VALUES) or (
        isinstance(node, ast.Attribute) and node.attr in LOOPBACK_VALUES
    )


def endpoint_checks(source: str) -> Iterator[str]:
    """Where code asks whether it runs on the embedded AWS, from the AST (comments and
    docstrings that explain a gap are not code): names of such a check, reads of the local
    platform's settings, loopback hosts compared with or gathered into a collection."""
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
            if node.attr in LOCAL_SETTINGS and isinstance(node.ctx, ast.Load):
                yield f"line {node.lineno}: reads the setting .{node.attr}"
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names = [node.name]
        elif isinstance(node, ast.alias):
            names = [node.name.rsplit(".", 1)[-1], node.asname or ""]
        elif isinstance(node, ast.Compare) and any(
            _is_loopback(n) for n in (node.left, *node.comparators)
        ):
            yield f"line {node.lineno}: compares with a loopback host"
        elif isinstance(node, ast.Set | ast.List | ast.Tuple) and any(
            _is_loopback(n) for n in node.elts
        ):
            yield f"line {node.lineno}: a collection of loopback hosts"
        for name in names:
            if name and ENDPOINT_CHECK_NAME.search(name):
                yield f"line {getattr(node, 'lineno', '?')}: {name}"


@pytest.mark.parametrize(
    "path", list(production_files()), ids=lambda p: str(p.relative_to(REPO_ROOT))
)
def test_production_code_does_not_ask_whether_it_runs_on_the_embedded_aws(path: Path) -> None:
    found = sorted(set(endpoint_checks(path.read_text())))
    assert not found, f"{path.relative_to(REPO_ROOT)} branches on where it runs: {found}"


def test_the_endpoint_check_finds_the_former_branches() -> None:
    """The checks of the code this test replaced, each found (so the test above can fail)."""
    former = {
        "def is_embedded_endpoint(url): ...": "is_embedded_endpoint",
        'LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})': "loopback hosts",
        "from storepulse.deploy.stack import deploy_stack, is_embedded_endpoint": "is_embedded",
        "gaps = f() if settings().embedded_aws else {}": ".embedded_aws",
        'if urlparse(url).hostname == "localhost": pass': "compares with a loopback",
        "if host in (LOOPBACK, other): pass": "loopback hosts",
    }
    for source, expected in former.items():
        assert any(expected in f for f in endpoint_checks(source)), source
    explained = '"""The embedded AWS (moto on 127.0.0.1) skips alarms."""  # is_embedded_endpoint'
    assert list(endpoint_checks(explained)) == []


def test_the_project_wheel_holds_only_the_library() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        "plugins/storepulse"
    ]
    dependencies = " ".join(project["project"]["dependencies"])
    for local_only in ("moto", "storepulse-local", "duckdb", "psutil"):
        assert local_only not in dependencies, f"{local_only} is a runtime dependency"
