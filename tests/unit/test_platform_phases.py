"""`make up` says where its start's time went: each phase's wall and CPU time, in one line."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from storepulse_local.platform import phases
from storepulse_local.platform.phases import StartPhases


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_line_names_each_phase_with_its_wall_and_cpu_time() -> None:
    clock = _Clock()
    start = StartPhases(clock=clock)
    start.add("restore", 3.21, 2.9)
    clock.now += 12
    start.since("current-stack check", began=clock.now - 0.5, cpu=0.01)
    line = start.line(serving=14.2, ready=61.0)
    assert line.startswith(phases.LINE_PREFIX)
    assert "restore 3.2 s (CPU 2.9); current-stack check 0.5 s (CPU 0.0)" in line
    assert "serving at 14 s, ready at 61 s" in line
    assert start.phases[1].ended == 12


def test_the_line_waits_for_a_phase_that_ends_after_ready() -> None:
    start = StartPhases()
    start.expect("Lambda runtime to its first batch")
    assert not start.wait_complete(timeout=0.01)
    threading.Timer(0.05, start.add, ("Lambda runtime to its first batch", 1.0, 0.5)).start()
    assert start.wait_complete(timeout=5)
    start.expect("never")
    start.forget("never")  # e.g. nothing to process
    assert start.wait_complete(timeout=0)


def test_the_restore_is_read_from_this_start_s_part_of_the_log(tmp_path: Path) -> None:
    log = tmp_path / "embedded-aws.log"
    earlier = "x restored the state of 2026-12-06 10:00:00 from s in 9.00 s (CPU 8.00 s)\n"
    log.write_text(earlier)
    offset = phases.log_size(log)
    assert phases.restore_phase(log, offset) is None  # this start restored nothing yet
    with log.open("a") as out:
        out.write("y restored the state of 2026-12-07 10:00:00 from s in 3.25 s (CPU 2.50 s)\n")
    assert phases.restore_phase(log, offset) == (3.25, 2.5)
    assert phases.restore_phase(tmp_path / "missing.log", 0) is None


def test_cpu_time_of_a_process_tree_and_of_this_process() -> None:
    assert phases.tree_cpu([os.getpid(), None]) > 0 and phases.own_cpu() > 0
    assert phases.tree_cpu([2**22 + 12345]) == 0.0  # gone: nothing to count
