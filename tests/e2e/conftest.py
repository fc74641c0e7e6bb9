"""The whole platform as a user gets it (``python -m storepulse.platform up`` on free ports) and a
real headless Chromium to look at it.

Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright for Python: a browser that
Playwright would download cannot be fetched here. Tests are skipped when either is missing.
The flags keep Chromium off the network (only loopback answers on this machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from storepulse.config import REPO_ROOT

CHROMIUM = Path(os.environ.get("STOREPULSE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
READY = re.compile(r"login admin / (\S+)")
READY_SECONDS = 420


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Platform:
    """``storepulse.platform up`` in a subprocess, with its own state folder and ports."""

    def __init__(self, state_dir: Path) -> None:
        self.aws_port, self.airflow_port = _free_port(), _free_port()
        self.state_dir = state_dir
        env = {
            **os.environ,
            "STOREPULSE_STATE_DIR": str(state_dir),
            "STOREPULSE_AWS_PORT": str(self.aws_port),
            "STOREPULSE_AIRFLOW_PORT": str(self.airflow_port),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "storepulse.platform", "up"],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.airflow_port}"

    @property
    def aws_url(self) -> str:
        return f"http://127.0.0.1:{self.aws_port}"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if READY.search(line):
                self._ready.set()

    def wait_ready(self, timeout: float) -> str:
        if not self._ready.wait(timeout):
            pytest.fail("platform not ready:\n" + "".join(self.output))
        return next(m.group(1) for line in self.output if (m := READY.search(line)))

    def child_pid(self, name: str) -> int:
        state = json.loads((self.state_dir / "platform.json").read_text())
        return int(state["children"][name])

    def pause_traffic(self) -> None:
        """Freeze the simulator (SIGSTOP), so the numbers hold still while a test compares;
        stopping it would take the whole platform down with it."""
        os.kill(self.child_pid("simulator"), signal.SIGSTOP)

    def resume_traffic(self) -> None:
        os.kill(self.child_pid("simulator"), signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(OSError, KeyError, ValueError):
            self.resume_traffic()  # a stopped process would only take SIGKILL
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.aws_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def table(self, name: str) -> Any:
        return boto3.resource(
            "dynamodb",
            endpoint_url=self.aws_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).Table(name)


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    running = Platform(tmp_path_factory.mktemp("platform"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def password(platform: Platform) -> str:
    return platform.wait_ready(timeout=READY_SECONDS)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies): a new user each test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def log_in(page: Any, platform: Platform, password: str, next_path: str = "/dashboard/") -> None:
    """Through Airflow's own login page, as a person would."""
    page.goto(f"{platform.url}/auth/login?next={platform.url}{next_path}")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{platform.url}{next_path}*")
