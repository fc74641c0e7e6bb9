"""The Lambda package: deterministic, exactly the modules the handler imports, the pinned
dependencies the runtime lacks, and importable with nothing but the runtime's boto3."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from storepulse.config import REPO_ROOT
from storepulse.deploy.package import (
    FILE_MODE,
    ZIP_TIMESTAMP,
    BuiltPackage,
    PackagingError,
    artifact_key,
    build_lambda_zip,
    library_modules,
)

FUNCTION_DIR = REPO_ROOT / "lambdas" / "stream_processor"
VENDORED = {  # what the Lambda python3.11 runtime lacks (it has boto3 and botocore)
    "pydantic",
    "pydantic-core",
    "typing-extensions",
    "annotated-types",
    "typing-inspection",
    "aws-lambda-powertools",
    "jmespath",
    "tzdata",
}
# What the runtime provides: the handler's zip must import with only these besides itself.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "dateutil", "urllib3", "six.py", "jmespath")


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the module's builds, so the vendored dependencies are installed once."""
    return tmp_path_factory.mktemp("build")


@pytest.fixture(scope="module")
def package(out_dir: Path) -> BuiltPackage:
    return build_lambda_zip(FUNCTION_DIR, out_dir)


@pytest.fixture(scope="module")
def names(package: BuiltPackage) -> list[str]:
    with zipfile.ZipFile(package.path) as archive:
        return archive.namelist()


def _locked_versions() -> dict[str, str]:
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    return {p["name"]: p["version"] for p in lock["package"]}


def test_two_builds_give_one_hash(package: BuiltPackage, out_dir: Path) -> None:
    again = build_lambda_zip(FUNCTION_DIR, out_dir)
    assert again.sha256 == package.sha256
    assert again.path.read_bytes() == package.path.read_bytes()
    assert package.path.name == f"stream-processor-{package.sha256}.zip"
    assert package.size == package.path.stat().st_size
    assert artifact_key(package) == f"lambda/stream-processor/{package.sha256}.zip"


def test_a_fresh_cache_gives_the_same_bytes(package: BuiltPackage, tmp_path: Path) -> None:
    """Another machine (or an emptied cache) vendors the dependencies again: same zip."""
    assert build_lambda_zip(FUNCTION_DIR, tmp_path).sha256 == package.sha256


def test_changing_one_handler_byte_changes_the_hash(
    package: BuiltPackage, out_dir: Path, tmp_path: Path
) -> None:
    changed = tmp_path / "stream_processor"
    shutil.copytree(FUNCTION_DIR, changed, ignore=shutil.ignore_patterns("__pycache__"))
    handler = changed / "handler.py"
    handler.write_bytes(handler.read_bytes() + b"\n")
    rebuilt = build_lambda_zip(changed, out_dir)
    assert rebuilt.sha256 != package.sha256
    assert rebuilt.dependencies == package.dependencies
    assert package.path.exists(), "recent builds are kept for their upload"


def test_entries_are_sorted_dated_1980_and_read_only(
    names: list[str], package: BuiltPackage
) -> None:
    with zipfile.ZipFile(package.path) as archive:
        infos = archive.infolist()
    assert names == sorted(names)
    assert {i.date_time for i in infos} == {ZIP_TIMESTAMP}
    assert {(i.external_attr >> 16) & 0o777 for i in infos} == {FILE_MODE}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_zip_holds_the_handler_and_the_modules_it_imports(
    names: list[str], package: BuiltPackage
) -> None:
    assert "handler.py" in names
    for module in (
        "storepulse/__init__.py",
        "storepulse/aws.py",
        "storepulse/config.py",
        "storepulse/events.py",
        "storepulse/layout.py",
        "storepulse/stream/__init__.py",
        "storepulse/stream/processor.py",
        "storepulse/stream/smoke.py",
        "storepulse/stream/writer.py",
    ):
        assert module in names
    assert "storepulse.stream.processor" in package.modules
    assert len(package.modules) == len([n for n in names if n.startswith("storepulse/")])


def test_zip_holds_no_other_storepulse_module(names: list[str]) -> None:
    library = [n for n in names if n.startswith("storepulse/")]
    for unwanted in ("platform/", "simulator/", "deploy/", "airflow/", "local/", "producer.py"):
        assert not [n for n in library if n.startswith(f"storepulse/{unwanted}")], unwanted
    assert not [n for n in names if "/tests/" in n or Path(n).name.startswith("test_")]


def test_vendored_dependencies_are_the_pinned_versions(
    names: list[str], package: BuiltPackage
) -> None:
    locked = _locked_versions()
    expected = {f"{name}=={locked[name]}" for name in VENDORED}
    assert set(package.dependencies) == expected
    dist_infos = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
    assert dist_infos == {f"{name.replace('-', '_')}-{locked[name]}.dist-info" for name in VENDORED}
    assert not [n for n in names if n.startswith(("boto3/", "botocore/", "bin/"))]


def test_pydantic_core_is_the_lambda_platform_build(package: BuiltPackage) -> None:
    with zipfile.ZipFile(package.path) as archive:
        binaries = [n for n in archive.namelist() if n.endswith(".so")]
        (wheel,) = [
            n for n in archive.namelist() if n.startswith("pydantic_core-") and n.endswith("/WHEEL")
        ]
        tags = archive.read(wheel).decode()
    assert binaries == ["pydantic_core/_pydantic_core.cpython-311-x86_64-linux-gnu.so"]
    assert "cp311-cp311-manylinux" in tags and "x86_64" in tags


def test_handler_imports_from_the_zip_with_only_the_runtimes_packages(
    package: BuiltPackage, tmp_path: Path
) -> None:
    """The import walk missed nothing: a bare interpreter (no site-packages) with the unzipped
    package and the runtime's own packages imports the handler."""
    task = tmp_path / "task"
    with zipfile.ZipFile(package.path) as archive:
        archive.extractall(task)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    import boto3

    site_packages = Path(boto3.__file__).parent.parent
    for name in RUNTIME_PACKAGES:
        (runtime / name).symlink_to(site_packages / name)
    script = "import sys; sys.path[:0] = sys.argv[1:]; import handler; print(handler.handler)"
    result = subprocess.run(
        [sys.executable, "-S", "-c", script, str(task), str(runtime)],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1"},
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_relative_and_type_checking_imports(tmp_path: Path) -> None:
    library = tmp_path / "storepulse"
    (library / "sub").mkdir(parents=True)
    (library / "__init__.py").write_text("")
    (library / "sub" / "__init__.py").write_text("from . import used\n")
    (library / "sub" / "used.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from storepulse import typing_only\n"
        "def f():\n"
        "    from ..lazy import x\n"
    )
    (library / "lazy.py").write_text("x = 1\n")
    (library / "typing_only.py").write_text("import pandas\n")
    (library / "unused.py").write_text("")
    handler = tmp_path / "handler.py"
    handler.write_text("import storepulse.sub\nimport yaml\n")
    modules, third_party = library_modules([handler], library_dir=library)
    assert set(modules) == {
        "storepulse",
        "storepulse.sub",
        "storepulse.sub.used",
        "storepulse.lazy",
    }
    assert third_party == {"yaml"}


def test_importing_a_missing_library_package_fails(tmp_path: Path) -> None:
    library = tmp_path / "storepulse"
    library.mkdir()
    (library / "__init__.py").write_text("")
    handler = tmp_path / "handler.py"
    handler.write_text("from storepulse.nowhere.module import thing\n")
    with pytest.raises(PackagingError, match=r"storepulse\.nowhere"):
        library_modules([handler], library_dir=library)
