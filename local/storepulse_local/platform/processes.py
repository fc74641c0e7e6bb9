"""Child processes of ``make up``: each in its own session, logged to a file, stopped by PID.

Stopping walks the whole process tree (Airflow's components fork workers of their own), sends
SIGTERM to every member, and SIGKILLs what is still alive after a grace period, so nothing is left
behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from storepulse_local.platform.private import UMASK, open_private_log

STOP_GRACE_SECONDS = 15.0


@dataclass
class ManagedProcess:
    """A long-running child process of the platform."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        # Logs can hold secrets (the api-server prints the passwords it generates).
        with open_private_log(self.log_path) as log:
            # A new session: a Ctrl-C in the terminal reaches only the supervisor, which then
            # stops the children in order instead of leaving them half-interrupted.
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                umask=UMASK,  # what the children create (database, logs) is private too
            )

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def exit_code(self) -> int | None:
        """None while running (or never started), the exit code once it ended."""
        return self.popen.poll() if self.popen else None

    def log_tail(self, lines: int = 15) -> str:
        return file_tail(self.log_path, lines)


def file_tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a log file ("" if it does not exist yet)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_trees(pids: Iterable[int], grace: float = STOP_GRACE_SECONDS) -> list[int]:
    """Stop every process in the trees rooted at ``pids``; return the PIDs that had to be killed."""
    members = [proc for pid in pids for proc in _tree(pid)]
    for proc in members:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(members, timeout=grace)
    # Children forked after the walk (a worker started during shutdown) are caught here too.
    stragglers = alive + [child for proc in alive for child in _children(proc)]
    for proc in stragglers:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(stragglers, timeout=5)
    return [proc.pid for proc in stragglers]


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
