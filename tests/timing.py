"""Where the time of a run goes: per xdist worker and per test file, printed at the end of
every run (tests/conftest.py) and written whole to ``.run/test-times.json``.

``--durations`` names slow tests; this says what bounds the wall time: how long each worker was
busy and when it finished (the other one idle meanwhile), and which files cost the most, split
into setup, call and teardown (a platform or an Airflow started by a fixture shows as setup).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHOWN_FILES = 15


@dataclass
class FileTime:
    worker: str = ""
    tests: set[str] = field(default_factory=set)
    phases: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    first_start: float = float("inf")
    last_stop: float = 0.0

    @property
    def seconds(self) -> float:
        return sum(self.phases.values())


class RunTimes:
    """Fed every test report of the run (in the controller, the workers' reports)."""

    def __init__(self) -> None:
        self.files: dict[str, FileTime] = defaultdict(FileTime)

    def add(self, report: Any) -> None:
        gateway = getattr(getattr(report, "node", None), "gateway", None)
        entry = self.files[report.nodeid.split("::", 1)[0]]
        entry.worker = gateway.id if gateway else "main"
        entry.tests.add(report.nodeid)
        entry.phases[report.when] += report.duration
        if report.start:  # start and stop: epoch seconds of the phase
            entry.first_start = min(entry.first_start, report.start)
            entry.last_stop = max(entry.last_stop, report.stop)

    def lines(self, session_start: float) -> list[str]:
        if not self.files:
            return []
        workers: dict[str, list[FileTime]] = defaultdict(list)
        for entry in self.files.values():
            workers[entry.worker].append(entry)
        out = ["busy s  last test ended (s after start)  files  worker"]
        for name, entries in sorted(workers.items()):
            busy = sum(e.seconds for e in entries)
            ended = max(e.last_stop for e in entries) - session_start
            out.append(f"{busy:6.0f}  {ended:31.0f}  {len(entries):5d}  {name}")
        out += ["", "     s   setup    call  teardown  tests  worker  file (the slowest)"]
        ranked = sorted(self.files.items(), key=lambda kv: -kv[1].seconds)[:SHOWN_FILES]
        for path, e in ranked:
            setup, call, teardown = (e.phases.get(p, 0.0) for p in ("setup", "call", "teardown"))
            out.append(
                f"{e.seconds:6.0f} {setup:7.0f} {call:7.0f} {teardown:9.0f} {len(e.tests):6d}"
                f"  {e.worker:>6}  {path}"
            )
        return out

    def write(self, path: Path, session_start: float) -> None:
        rows = {
            file: {
                "worker": e.worker,
                "tests": len(e.tests),
                "seconds": round(e.seconds, 2),
                "phases": {k: round(v, 2) for k, v in e.phases.items()},
                "started_after": round(e.first_start - session_start, 1),
                "ended_after": round(e.last_stop - session_start, 1),
            }
            for file, e in sorted(self.files.items(), key=lambda kv: -kv[1].seconds)
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows, indent=1) + "\n")
