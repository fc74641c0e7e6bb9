"""``make dist``: what a managed Airflow takes, with no repository checkout behind it.

    dist/mwaa/        dags/, plugins.zip, requirements.txt, startup.sh: upload them to the
                      environment's S3 bucket and name them in the MWAA environment
    dist/astronomer/  an Astro project (``astro deploy``): Dockerfile on the Astro Runtime of
                      the project's Airflow, requirements.txt, dags/, plugins/

Both carry the library (``plugins/storepulse``), its Airflow plugin, and what the deploy reads
besides code: ``infra/``, ``lambdas/`` and ``uv.lock``, bundled inside the package as
``storepulse/_project`` (``storepulse.config.project_root`` finds them there). The requirements
are exported from ``uv.lock``: every pin of the production dependencies, nothing of the local
platform or the tests (``apache-airflow`` too, so a platform with another Airflow refuses them).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("infra", "lambdas", "uv.lock")
BUNDLED = "storepulse/_project"  # storepulse.config.BUNDLED_PROJECT, inside the package
# Fixed timestamp: the same sources give the same plugins.zip (MWAA redeploys on a change).
ZIP_DATE = (2026, 1, 1, 0, 0, 0)
# The Astro Runtime line that ships the project's Airflow minor version (runtime "3.3-N" is
# Airflow 3.3.x); `make dist` checks the line against the lock's apache-airflow.
ASTRO_RUNTIME = "astrocrpublic.azurecr.io/runtime:3.3-2"
# Set on every MWAA component before Airflow starts: a real account, and a writable state
# directory for the deploy's build cache (the plugins folder is read-only there).
STARTUP_SH = """#!/bin/sh
# MWAA startup script: runs on every scheduler, worker and web server before Airflow starts.
export STOREPULSE_EMBEDDED_AWS=0
export STOREPULSE_STATE_DIR=/tmp/storepulse
"""
ASTRO_DOCKERFILE = f"""# Astro Runtime with the project's Airflow. The Astro CLI installs
# requirements.txt and copies dags/ and plugins/ (storepulse; infra/, lambdas/ and uv.lock
# in storepulse/_project).
FROM {ASTRO_RUNTIME}
ENV STOREPULSE_EMBEDDED_AWS=0 \\
    STOREPULSE_STATE_DIR=/tmp/storepulse
"""


def _files(root: Path) -> Iterator[Path]:
    """Files under ``root`` (or ``root`` itself), without caches, sorted."""
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path


def plugin_files() -> Iterator[tuple[Path, str]]:
    """(source, name in the plugins folder) of everything the plugins folder holds."""
    plugins = REPO / "plugins"
    for path in _files(plugins):
        yield path, path.relative_to(plugins).as_posix()
    for name in PROJECT_FILES:
        for path in _files(REPO / name):
            yield path, f"{BUNDLED}/{path.relative_to(REPO).as_posix()}"


def write_plugins_zip(target: Path) -> int:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for source, name in plugin_files():
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, source.read_bytes())
        return len(archive.namelist())


def requirements() -> str:
    """Every pin of the production dependencies, from uv.lock (``--locked``: a stale lock fails)."""
    uv = shutil.which("uv", path=str(REPO / ".tools" / "bin")) or "uv"
    export = [uv, "export", "--locked", "--no-default-groups", "--no-emit-workspace"]
    flags = ["--no-hashes", "--no-annotate", "--no-header", "--format", "requirements.txt"]
    result = subprocess.run([*export, *flags], cwd=REPO, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"uv export failed: {result.stderr.strip()}")
    return result.stdout


def check_runtime_matches(pins: str) -> None:
    airflow = re.search(r"^apache-airflow==(\d+)\.(\d+)\.", pins, re.M)
    runtime = re.search(r":(\d+)\.(\d+)-\d+$", ASTRO_RUNTIME)
    if not airflow or not runtime or airflow.groups() != runtime.groups():
        raise SystemExit(f"{ASTRO_RUNTIME} does not ship the locked Airflow: update ASTRO_RUNTIME")


def copy_dags(target: Path) -> None:
    for path in _files(REPO / "dags"):
        destination = target / path.relative_to(REPO / "dags")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)


def build(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    pins = requirements()
    check_runtime_matches(pins)
    mwaa, astro = out / "mwaa", out / "astronomer"
    for folder in (mwaa, astro / "plugins"):
        folder.mkdir(parents=True)
    copy_dags(mwaa / "dags")
    count = write_plugins_zip(mwaa / "plugins.zip")
    (mwaa / "requirements.txt").write_text(pins)
    (mwaa / "startup.sh").write_text(STARTUP_SH)
    (mwaa / "startup.sh").chmod(0o755)
    copy_dags(astro / "dags")
    with zipfile.ZipFile(mwaa / "plugins.zip") as archive:
        archive.extractall(astro / "plugins")
    (astro / "requirements.txt").write_text(pins)
    (astro / "packages.txt").write_text("")
    (astro / "Dockerfile").write_text(ASTRO_DOCKERFILE)
    print(f"{mwaa}: dags/, plugins.zip ({count} files), requirements.txt, startup.sh")
    print(f"{astro}: Dockerfile ({ASTRO_RUNTIME}), requirements.txt, dags/, plugins/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?", default=REPO / "dist")
    build(parser.parse_args(argv).out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
