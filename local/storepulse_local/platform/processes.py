"""Child processes of ``make up``: each in its own session, logged to a file, stopped by PID.

A tree is stopped from its root: SIGTERM goes to the component's own process, which stops its
children itself (Airflow's scheduler lets its LocalExecutor workers finish their tasks; those
workers, forked from it, inherit a SIGTERM handler that does nothing outside the scheduler, so a
signal sent to them directly is ignored). Trees are stopped one at a time, dependants first:
a task finishing reports through the api-server, which must still be up. Half-way through the
grace period the root's descendants are interrupted (SIGINT, then SIGTERM): Airflow 3's task
runner answers SIGTERM only by calling the operator's ``on_kill()`` and runs on, while SIGINT
raises KeyboardInterrupt in the task, which fails it, and its supervisor (the worker) reports
that. What is still alive after the grace period (or orphaned by the root) is SIGTERMed, then
SIGKILLed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from storepulse_local.platform.private import UMASK, open_private_log

STOP_GRACE_SECONDS = 15.0
ORPHAN_GRACE_SECONDS = 3.0  # for what a root that exited left behind


@dataclass
class ManagedProcess:
    """A long-running child process of the platform."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path | None = None
    restart_argv: list[str] | None = None  # another command line for restarts (None: the same)
    stop_grace: float = STOP_GRACE_SECONDS
    restarts: int = 0
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        argv = self.restart_argv if self.restarts and self.restart_argv else self.argv
        # Logs can hold secrets (the api-server prints the passwords it generates).
        with open_private_log(self.log_path) as log:
            # A new session: a Ctrl-C in the terminal reaches only the supervisor, which then
            # stops the children in order instead of leaving them half-interrupted.
            self.popen = subprocess.Popen(
                argv,
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

    def exit_reason(self) -> str:
        """How it ended, for the log: 'exit code 1' or 'signal SIGKILL'."""
        code = self.exit_code()
        if code is None:
            return "still running"
        return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"

    def kill_leftovers(self) -> None:
        """After it died: SIGKILL what is left of its process group (a killed scheduler's
        LocalExecutor workers would wait forever for work, and ignore SIGTERM)."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)  # its own session: pgid == pid

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


@dataclass(frozen=True)
class StopResult:
    """How one process tree stopped: ``graceful`` if its root exited within its grace period."""

    name: str
    graceful: bool
    killed: list[int]  # PIDs that had to be SIGKILLed
    seconds: float


def stop_tree(pid: int, grace: float = STOP_GRACE_SECONDS, name: str = "") -> StopResult:
    """SIGTERM the root, which stops its own children; half-way through ``grace``, interrupt
    its descendants (a scheduler waiting for a long task: the task is failed, not killed, and
    its supervisor reports that); at the end SIGKILL whatever still refuses."""
    started = time.monotonic()
    members = _tree(pid)
    if not members:
        return StopResult(name or str(pid), True, [], 0.0)
    root = members[0]
    _signal([root], signal.SIGTERM)
    _, root_alive = psutil.wait_procs([root], timeout=grace / 2)
    if root_alive:
        descendants = _alive(members[1:] + _children(root))
        _signal(descendants, signal.SIGINT)  # an Airflow 3 task only fails on this one
        _signal(descendants, signal.SIGTERM)
        _, root_alive = psutil.wait_procs([root], timeout=grace / 2)
    # What the root left behind (or forked after the walk, if it is still there to ask).
    left = _alive(members[1:] + [c for proc in root_alive for c in _children(proc)])
    _signal(left, signal.SIGTERM)
    _, left = psutil.wait_procs(left, timeout=0 if root_alive else ORPHAN_GRACE_SECONDS)
    stragglers = root_alive + [p for p in left if p not in root_alive]
    _signal(stragglers, signal.SIGKILL)
    psutil.wait_procs(stragglers, timeout=5)
    seconds = time.monotonic() - started
    return StopResult(name or str(pid), not root_alive, [p.pid for p in stragglers], seconds)


def stop_trees(pids: Iterable[int], grace: float = STOP_GRACE_SECONDS) -> list[int]:
    """Stop the trees one after the other, in the given order; return the PIDs force-killed."""
    return [pid for root in pids for pid in stop_tree(root, grace).killed]


def _signal(procs: Iterable[psutil.Process], signum: signal.Signals) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signum)


def _alive(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    unique = {proc.pid: proc for proc in procs}.values()
    return [p for p in unique if p.is_running() and _status(p) != psutil.STATUS_ZOMBIE]


def _status(proc: psutil.Process) -> str:
    try:
        return str(proc.status())
    except psutil.NoSuchProcess:
        return psutil.STATUS_ZOMBIE


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
