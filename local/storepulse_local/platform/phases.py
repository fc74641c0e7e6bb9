"""Where a start's time goes: each phase of ``make up`` with its wall time and the CPU time of
the processes doing it (what a loaded machine does not inflate: a phase whose wall time is far
above its CPU time waited for the machine), logged in one line once start-up is over."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

LINE_PREFIX = "start-up phases"
# The embedded AWS's restore, as storepulse_local.persistence logs it.
RESTORED = re.compile(r"restored the state of .* in ([0-9.]+) s \(CPU ([0-9.]+) s\)")


@dataclass(frozen=True)
class Phase:
    name: str
    wall: float  # seconds it took
    cpu: float  # CPU seconds of the processes doing it
    ended: float  # seconds since the start


@dataclass
class StartPhases:
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)
    phases: list[Phase] = field(default_factory=list)
    expected: set[str] = field(default_factory=set)  # phases that end after start-up returns
    _done: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def __post_init__(self) -> None:
        self.started = self.started or self.clock()

    def since_start(self) -> float:
        return self.clock() - self.started

    def add(self, name: str, wall: float, cpu: float) -> None:
        with self._done:
            self.phases.append(Phase(name, wall, cpu, self.since_start()))
            self.expected.discard(name)
            self._done.notify_all()

    def expect(self, name: str) -> None:
        with self._done:
            self.expected.add(name)

    def forget(self, name: str) -> None:
        """An expected phase that will not end (e.g. nothing to process)."""
        with self._done:
            self.expected.discard(name)
            self._done.notify_all()

    def wait_complete(self, timeout: float) -> bool:
        with self._done:
            return self._done.wait_for(lambda: not self.expected, timeout=timeout)

    def since(self, name: str, began: float, cpu: float) -> None:
        """A phase that began at ``began`` (this clock) and ends now."""
        self.add(name, self.clock() - began, cpu)

    def line(self, serving: float | None, ready: float) -> str:
        with self._done:
            parts = [f"{p.name} {p.wall:.1f} s (CPU {p.cpu:.1f})" for p in self.phases]
        at = f"serving at {serving:.0f} s, " if serving is not None else ""
        return (
            f"{LINE_PREFIX} (wall s, CPU s of its processes): {'; '.join(parts)}; "
            f"{at}ready at {ready:.0f} s; load {os.getloadavg()[0]:.1f}"
        )


def tree_cpu(pids: Iterable[int | None]) -> float:
    """CPU seconds of the processes and their living descendants (those that exited and were
    waited for count in their parent's children times)."""
    total = 0.0
    for pid in pids:
        if pid is None:
            continue
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                times = process.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        except psutil.Error:  # gone meanwhile: what it used is lost with it
            continue
    return total


def own_cpu() -> float:
    """This process's CPU seconds, its waited-for children's included."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def restore_phase(log_path: Path, offset: int) -> tuple[float, float] | None:
    """(wall, CPU) of the restore the embedded AWS logged past ``offset``, None if none."""
    found = RESTORED.search(log_since(log_path, offset))
    return (float(found[1]), float(found[2])) if found else None


def log_since(log_path: Path, offset: int) -> str:
    """What a log (appended to by every start) holds past ``offset``: this start's part."""
    try:
        with log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def log_size(log_path: Path) -> int:
    try:
        return log_path.stat().st_size
    except FileNotFoundError:
        return 0
