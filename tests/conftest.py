"""Shared test fixtures.

Tests under ``tests/unit`` are marked ``unit`` (fast, no servers); tests under
``tests/integration`` are marked ``integration`` and use the ``embedded_aws`` fixture, which
starts a moto server on a free loopback port once per session and resets it for every test;
tests under ``tests/e2e`` are marked ``e2e`` and drive Chromium against a whole platform.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.timing import RunTimes

if TYPE_CHECKING:
    from tests.platform_process import Platform

TESTS_DIR = Path(__file__).parent
# Every platform a test starts deploys the same Lambda zips: build them once per checkout (the
# build is content-addressed and safe to share between processes).
os.environ.setdefault("STOREPULSE_BUILD_DIR", str(TESTS_DIR.parent / ".run" / "test-build"))


def pytest_report_header() -> str:
    """Say which clock the run uses: ``make test-clock`` shifts it (tests/clock_shift/)."""
    from datetime import UTC, datetime

    shift = os.environ.get("STOREPULSE_CLOCK_SHIFT_SECONDS")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return f"clock: {now}" + (f" (shifted by {shift} s)" if shift else "")


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which would answer first
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadfile`` (pyproject.toml) with the platform's modules on one platform and the
    longest files first (tests/scheduling.py); any other ``--dist`` is xdist's own."""
    if config.getvalue("dist") != "loadfile":
        return None
    from tests.scheduling import LongestFirstFileScheduling

    return LongestFirstFileScheduling(config, log)


_RUN_TIMES: RunTimes | None = None
_SESSION_START = 0.0
TIMES_FILE = TESTS_DIR.parent / ".run" / "test-times.json"


def pytest_configure(config: pytest.Config) -> None:
    global _RUN_TIMES, _SESSION_START
    if not hasattr(config, "workerinput"):  # the controller sees every worker's reports
        _RUN_TIMES, _SESSION_START = RunTimes(), time.time()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _RUN_TIMES is not None:
        _RUN_TIMES.add(report)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Where the time went (tests/timing.py): per worker, then the slowest files."""
    if _RUN_TIMES is None or not (lines := _RUN_TIMES.lines(_SESSION_START)):
        return
    terminalreporter.write_sep("=", "time per worker and per file (all: .run/test-times.json)")
    for line in lines:
        terminalreporter.write_line(line)
    _RUN_TIMES.write(TIMES_FILE, _SESSION_START)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = Path(item.fspath).relative_to(TESTS_DIR).parts[0]
        if kind in {"unit", "integration", "e2e"}:
            item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded AWS's administrator keys (storepulse_local.iam), which no real account knows:
    no test can reach one by accident, and the embedded AWS, which enforces IAM, accepts them."""
    from storepulse_local.iam import ADMIN

    for name, value in ADMIN.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    from storepulse.config import settings

    settings.cache_clear()  # read with this environment (a test that changes it clears it too)


@pytest.fixture(scope="session")
def _embedded_aws_server() -> Iterator[object]:
    from storepulse_local.embedded_aws import EmbeddedAws

    server = EmbeddedAws(port=0).start()
    yield server
    server.stop()


@pytest.fixture
def embedded_aws(_embedded_aws_server, monkeypatch: pytest.MonkeyPatch) -> str:
    """URL of a freshly reset embedded AWS; boto3 clients in the test are pointed at it."""
    _embedded_aws_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", _embedded_aws_server.url)
    from storepulse.config import settings

    settings.cache_clear()
    return _embedded_aws_server.url


@pytest.fixture
def aws_client(embedded_aws: str):
    """Factory of fail-fast boto3 clients on the embedded AWS: ``aws_client("s3")``."""
    from storepulse import aws

    def make(service: str):
        return aws.client(service, config=aws.FAIL_FAST_CONFIG)

    return make


# --- the whole platform ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """``storepulse_local.platform up`` on free ports, shared by the modules that need it (the
    browser tests, then the platform's integration tests, whose last tests stop it): it takes a
    minute or two to be ready. In `make test` those modules are one xdist unit, run in one worker
    one after the other (tests/scheduling.py), so the platform does not load the rest of the run
    longer than they need it. Ready (its pid file written, its admin password printed) before
    the first test that uses it: any test of theirs runs alone."""
    from tests.platform_process import READY_SECONDS, Platform

    running = Platform(tmp_path_factory.mktemp("platform"))
    try:
        running.wait_ready(timeout=READY_SECONDS)  # once: later tests find it ready
        yield running
    finally:
        if running.process.poll() is None:
            running.stop()


@pytest.fixture(scope="session")
def password(platform: Platform) -> str:
    """The admin password ``up`` printed when it reported ready."""
    from tests.platform_process import READY_SECONDS

    return platform.wait_ready(timeout=READY_SECONDS)  # ready already: no wait
