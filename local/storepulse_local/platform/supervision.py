"""Keeping the platform up: a component that exits is restarted with back-off; one that cannot
stay up (too many failures in a window) or cannot be restarted stops the platform, cleanly.

The clock and the sleep are parameters, so the policy is tested without waiting.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from storepulse_local.platform.processes import ManagedProcess, StopResult, stop_tree

BACKOFF_FIRST, BACKOFF_CAP = 1.0, 30.0
MAX_FAILURES, FAILURE_WINDOW = 5, 60.0
POLL_SECONDS = 0.5


class GiveUp(Exception):  # noqa: N818 (a decision, not an error)
    """A component cannot stay up: the platform must stop."""


@dataclass
class RestartPolicy:
    """Back-off 1 s, 2 s, 4 s ... capped; give up at ``max_failures`` within ``window`` s."""

    first: float = BACKOFF_FIRST
    cap: float = BACKOFF_CAP
    max_failures: int = MAX_FAILURES
    window: float = FAILURE_WINDOW
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def failed(self, name: str, now: float) -> float | None:
        """Record a failure; return the delay before the restart, or None to give up."""
        recent = self._failures.setdefault(name, deque())
        recent.append(now)
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if len(recent) >= self.max_failures:
            return None
        return min(self.cap, self.first * 2 ** (len(recent) - 1))


@dataclass
class Supervisor:
    """Watches the running processes; restarts those that exit, as the policy says.

    ``fatal`` names processes that are not restarted (their exit stops the platform), with why.
    ``dependants``: processes stopped before a process restarts, and started again once it is
    ready (``ready``, checked at every poll; ready at once without one): the Lambda runtime must
    start after the embedded AWS restored its state and set the checkpoints back to it, which it
    cannot do while a runtime holds them.
    """

    processes: list[ManagedProcess]
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    fatal: dict[str, str] = field(default_factory=dict)
    before_restart: dict[str, Callable[[], None]] = field(default_factory=dict)
    dependants: dict[str, list[str]] = field(default_factory=dict)
    ready: dict[str, Callable[[], bool]] = field(default_factory=dict)
    stop: Callable[[ManagedProcess], object] = lambda process: stop_in_order([process])
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    log: Callable[[str], None] = print
    on_restart: Callable[[], None] = lambda: None
    _due: dict[str, float] = field(default_factory=dict)  # name -> when to restart it
    _after: dict[str, str] = field(default_factory=dict)  # dependant -> what it waits for

    def run(self) -> None:
        """Until a stop is requested (a signal raises in here) or a component gives up."""
        while True:
            self.check()
            self.sleep(POLL_SECONDS)

    def check(self) -> None:
        now = self.clock()
        for process in self.processes:
            if process.name in self._due:
                if now >= self._due[process.name] and self._awaited_ready(process.name):
                    self._restart(process)
            elif process.exit_code() is not None:
                self._exited(process, now)

    def _exited(self, process: ManagedProcess, now: float) -> None:
        process.kill_leftovers()
        why = f"{process.name} exited unexpectedly ({process.exit_reason()})"
        tail = f"last lines of {process.log_path}:\n{process.log_tail()}"
        if process.name in self.fatal:
            raise GiveUp(f"{why}; {self.fatal[process.name]}; {tail}")
        delay = self.policy.failed(process.name, now)
        if delay is None:
            raise GiveUp(
                f"{why}: {self.policy.max_failures} failures within "
                f"{self.policy.window:.0f} s, giving up; {tail}"
            )
        self.log(f"{why}; restarting it in {delay:.0f} s; {tail}")
        self._due[process.name] = now + delay

    def _restart(self, process: ManagedProcess) -> None:
        del self._due[process.name]
        for dependant in self._dependants(process.name):
            self.log(f"stopping {dependant.name}: it restarts after {process.name}")
            self.stop(dependant)
            self._due[dependant.name] = self.clock()  # started again once ``process`` is ready
            self._after[dependant.name] = process.name
        if prepare := self.before_restart.get(process.name):
            prepare()
        process.restarts += 1
        process.start()
        self.log(f"{process.name} restarted (pid {process.pid}, restart {process.restarts})")
        self.on_restart()

    def _awaited_ready(self, name: str) -> bool:
        awaited = self._after.get(name)
        if awaited is None or self.ready.get(awaited, lambda: True)():
            self._after.pop(name, None)
            return True
        return False

    def _dependants(self, name: str) -> list[ManagedProcess]:
        names = self.dependants.get(name, [])
        return [p for p in self.processes if p.name in names and p.name not in self._due]


def stop_in_order(
    processes: Iterable[ManagedProcess],
    stop: Callable[[int, float, str], StopResult] = stop_tree,
) -> list[StopResult]:
    """Stop each process tree in turn, each within its own grace period: the caller passes them
    dependants first (reverse start order: the simulator first, the embedded AWS last)."""
    results = []
    for process in processes:
        if process.pid is None or process.exit_code() is not None:
            continue
        results.append(stop(process.pid, process.stop_grace, process.name))
    return results


def stop_summary(results: list[StopResult]) -> str:
    """One line: how many stopped gracefully, how many were forced (and which)."""
    forced = [r for r in results if not r.graceful or r.killed]
    text = f"stopped {len(results)} component(s): {len(results) - len(forced)} gracefully"
    text += f", {len(forced)} forced"
    if forced:
        details = ", ".join(f"{r.name} ({len(r.killed)} killed)" for r in forced)
        text += f": {details}"
    killed = sum(len(r.killed) for r in results)
    return f"{text}; {killed} process(es) force-killed in total"
