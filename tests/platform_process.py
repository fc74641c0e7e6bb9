"""``python -m storepulse_local.platform up`` in a subprocess on free ports, as a user runs it:
shared by the platform's integration tests and the browser tests."""

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
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from storepulse.config import REPO_ROOT
from storepulse_local.iam import ADMIN
from storepulse_local.platform.processes import file_tail, stop_trees

READY = re.compile(r"login admin / (\S+)")
# The deploy waits for deploy_realtime_stack and the deploy_quicksight run it starts; at a
# load of 13-25 on 2 cores (other platforms running) the first took 2+ minutes.
READY_SECONDS = 900


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Platform:
    """``storepulse_local.platform up`` in a subprocess, with its own state folder and ports."""

    def __init__(
        self,
        state_dir: Path,
        ports: tuple[int, int] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """``ports``: (embedded AWS, Airflow), to start again on an earlier run's state;
        ``env``: more variables (a profile, its ports)."""
        self.aws_port, self.airflow_port = ports or (free_port(), free_port())
        self.state_dir = state_dir
        env = {
            **os.environ,
            "STOREPULSE_STATE_DIR": str(state_dir),
            "STOREPULSE_AWS_PORT": str(self.aws_port),
            "STOREPULSE_AIRFLOW_PORT": str(self.airflow_port),
            # A fifth of the demo's history: counted in seconds, not minutes, on a busy CI
            # machine (the tests look at today's numbers, not at how many there are).
            "STOREPULSE_DEMO_HISTORY_EVENTS": "800",
            **(env or {}),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "storepulse_local.platform", "up"],
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
        deadline = time.monotonic() + timeout
        while not self._ready.wait(1.0):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("platform not ready:\n" + "".join(self.output) + self._log_tails())
        return next(m.group(1) for line in self.output if (m := READY.search(line)))

    def _log_tails(self, lines: int = 25) -> str:
        """The end of every component's log: CI keeps only what the test prints."""
        logs = sorted((self.state_dir / "logs").glob("*.log"))
        return "".join(f"\n--- {log.name} ---\n{file_tail(log, lines)}" for log in logs)

    def child_pid(self, name: str) -> int:
        state = json.loads((self.state_dir / "platform.json").read_text())
        return int(state["children"][name])

    def pause_traffic(self) -> None:
        """Freeze the simulator (SIGSTOP), so the numbers hold still while a test compares;
        stopping it would only have the supervisor restart it."""
        os.kill(self.child_pid("simulator"), signal.SIGSTOP)

    def resume_traffic(self) -> None:
        os.kill(self.child_pid("simulator"), signal.SIGCONT)

    def stop(self, timeout: float = 120) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(OSError, KeyError, ValueError):
            self.resume_traffic()  # a stopped process would only take SIGKILL
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            # What the killed supervisor had not stopped yet, by PID, as `make down` does.
            with contextlib.suppress(OSError, ValueError):
                stop_trees(self.started_pids())

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.aws_url,
            region_name="us-east-1",
            aws_access_key_id=ADMIN.access_key_id,
            aws_secret_access_key=ADMIN.secret_access_key,
        )

    def table(self, name: str) -> Any:
        return boto3.resource(
            "dynamodb",
            endpoint_url=self.aws_url,
            region_name="us-east-1",
            aws_access_key_id=ADMIN.access_key_id,
            aws_secret_access_key=ADMIN.secret_access_key,
        ).Table(name)

    def started_pids(self) -> list[int]:
        """The supervisor and every child it recorded in its pid file."""
        state = json.loads((self.state_dir / "platform.json").read_text())
        return [state["supervisor"], *state["children"].values()]
