"""The supervisor of ``make up``: restarts with back-off, gives up when a component cannot stay
up, stops in dependency order, and stops a process tree from its root."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from storepulse_local.lambda_runtime.checkpoints import (
    remove_orphaned_temp_files,
    write_json_atomic,
)
from storepulse_local.platform.processes import ManagedProcess, StopResult, stop_tree
from storepulse_local.platform.supervision import (
    GiveUp,
    RestartPolicy,
    Supervisor,
    stop_in_order,
    stop_summary,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeProcess(ManagedProcess):
    """Starts nothing: ``crash()`` and ``start()`` flip its exit code."""

    def __init__(self, name: str) -> None:
        super().__init__(name, ["true"], {}, Path(f"/nonexistent/{name}.log"))
        self.code: int | None = None
        self.starts = self.cleanups = 0

    def start(self) -> None:
        self.code, self.starts = None, self.starts + 1

    def crash(self, code: int = -signal.SIGKILL) -> None:
        self.code = code

    def exit_code(self) -> int | None:
        return self.code

    def kill_leftovers(self) -> None:
        self.cleanups += 1

    @property
    def pid(self) -> int | None:
        return 4242


def test_backoff_doubles_and_is_capped() -> None:
    policy = RestartPolicy(first=1, cap=8, max_failures=100, window=60)
    delays = [policy.failed("x", now=float(i)) for i in range(6)]
    assert delays == [1, 2, 4, 8, 8, 8]


def test_gives_up_at_five_failures_within_a_minute() -> None:
    policy = RestartPolicy()
    assert [policy.failed("x", now=t) for t in (0, 10, 20, 30)] == [1, 2, 4, 8]
    assert policy.failed("x", now=40) is None


def test_failures_older_than_the_window_are_forgotten() -> None:
    policy = RestartPolicy()
    for t in (0, 10, 20, 30):
        policy.failed("x", now=t)
    assert policy.failed("x", now=65) == 8  # the failure at 0 s left the window
    assert policy.failed("y", now=65) == 1  # counted per component


def _supervisor(*processes: FakeProcess, **options) -> tuple[Supervisor, FakeClock, list[str]]:
    clock, lines = FakeClock(), []
    return Supervisor(list(processes), clock=clock, log=lines.append, **options), clock, lines


def test_a_crashed_component_is_restarted_after_its_delay_and_why_is_logged() -> None:
    runtime, other = FakeProcess("lambda-runtime"), FakeProcess("scheduler")
    prepared: list[str] = []
    supervisor, clock, lines = _supervisor(
        runtime, other, before_restart={"lambda-runtime": lambda: prepared.append("cleanup")}
    )
    runtime.crash()
    supervisor.check()
    assert "lambda-runtime exited unexpectedly (signal SIGKILL); restarting it in 1 s" in lines[0]
    assert runtime.starts == 0
    clock.now += 1.0
    supervisor.check()
    assert (runtime.starts, runtime.restarts, prepared) == (1, 1, ["cleanup"])
    assert runtime.cleanups == 1  # what was left of its process group
    assert other.starts == 0  # the others are left alone


def test_a_component_that_cannot_stay_up_stops_the_platform() -> None:
    flaky = FakeProcess("simulator")
    supervisor, clock, _ = _supervisor(flaky)
    for _ in range(4):
        flaky.crash(code=1)
        supervisor.check()
        clock.now += 20.0  # past any back-off up to 8 s: restarted
        supervisor.check()
        clock.now -= 10.0  # five failures within a minute in all
    flaky.crash(code=1)
    with pytest.raises(GiveUp, match="5 failures within 60 s, giving up"):
        supervisor.check()
    assert flaky.starts == 4


def test_a_restart_stops_its_dependants_first_and_starts_them_right_after() -> None:
    aws, runtime = FakeProcess("embedded-aws"), FakeProcess("lambda-runtime")
    stopped: list[str] = []

    def stop(process: ManagedProcess) -> None:
        stopped.append(process.name)
        process.crash(code=0)  # type: ignore[attr-defined]

    supervisor, clock, lines = _supervisor(
        aws, runtime, dependants={"embedded-aws": ["lambda-runtime"]}, stop=stop
    )
    aws.crash()
    supervisor.check()
    clock.now += 1.0
    supervisor.check()  # the embedded AWS restarts; the runtime is stopped and due now
    assert (stopped, aws.starts) == (["lambda-runtime"], 1)
    supervisor.check()
    assert runtime.starts == 1
    assert not any("lambda-runtime exited unexpectedly" in line for line in lines)


def test_dependants_wait_until_the_restarted_process_is_ready() -> None:
    """The runtime must not take the checkpoints before the embedded AWS, restoring its
    snapshot, has set them back (it cannot while a runtime holds them)."""
    aws, runtime = FakeProcess("embedded-aws"), FakeProcess("lambda-runtime")
    restored = False
    supervisor, clock, _ = _supervisor(
        aws,
        runtime,
        dependants={"embedded-aws": ["lambda-runtime"]},
        stop=lambda process: process.crash(code=0),  # type: ignore[attr-defined]
        ready={"embedded-aws": lambda: restored},
    )
    aws.crash()
    supervisor.check()
    clock.now += 1.0
    supervisor.check()  # the embedded AWS restarts, restoring; the runtime is stopped
    for _ in range(3):
        clock.now += 5.0
        supervisor.check()
    assert (aws.starts, runtime.starts) == (1, 0)

    restored = True
    supervisor.check()
    assert runtime.starts == 1


def test_a_component_that_cannot_be_restarted_stops_the_platform_with_its_reason() -> None:
    aws = FakeProcess("embedded-aws")
    supervisor, _, _ = _supervisor(aws, fatal={"embedded-aws": "its state is lost"})
    aws.crash(code=-signal.SIGKILL)
    with pytest.raises(GiveUp, match=r"embedded-aws exited unexpectedly \(signal SIGKILL\); its"):
        supervisor.check()


def test_a_restart_can_use_another_command_line(tmp_path: Path) -> None:
    process = ManagedProcess(
        "simulator",
        [sys.executable, "-c", "print('first')"],
        {},
        tmp_path / "simulator.log",
        restart_argv=[sys.executable, "-c", "print('again')"],
    )
    process.start()
    assert process.popen is not None and process.popen.wait(10) == 0
    process.restarts += 1
    process.start()
    assert process.popen.wait(10) == 0
    assert process.log_path.read_text().split() == ["first", "again"]
    assert process.exit_reason() == "exit code 0"


def test_stop_order_is_the_given_one_and_skips_what_already_ended() -> None:
    names = ["simulator", "lambda-runtime", "airflow-scheduler", "embedded-aws"]
    processes = [FakeProcess(name) for name in names]
    processes[1].crash()
    stopped: list[tuple[str, float]] = []

    def fake_stop(pid: int, grace: float, name: str) -> StopResult:
        stopped.append((name, grace))
        return StopResult(name, True, [], 0.1)

    results = stop_in_order(processes, stop=fake_stop)
    assert [name for name, _ in stopped] == ["simulator", "airflow-scheduler", "embedded-aws"]
    assert stop_summary(results) == (
        "stopped 3 component(s): 3 gracefully, 0 forced; 0 process(es) force-killed in total"
    )


# Real processes: a parent that stops its child on SIGTERM, and a child that ignores SIGTERM and
# SIGINT (as Airflow's idle LocalExecutor workers do: the scheduler's SIGTERM handler they
# inherit does nothing outside the scheduler, and they ignore SIGINT).
_PARENT = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
def stop(*_):
    child.kill(); child.wait(); sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(600)
"""
# Every child says "ready" on the parent's stdout (which it inherits) once its signal handlers
# are in place: a signal sent before that would stop a child that is meant to ignore it.
_DEAF_CHILD = (
    "import signal, time; signal.signal(15, 1); signal.signal(2, 1); print('ready', flush=True); "
    "time.sleep(600)"
)
_LONG_CHILD = "import time; print('ready', flush=True); time.sleep(600)"


def _tree_of(script: str, child: str) -> subprocess.Popen[str]:
    parent = subprocess.Popen(
        [sys.executable, "-c", script, child], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    assert [parent.stdout.readline().strip() for _ in range(2)] == ["ready", "ready"]
    return parent


def test_a_tree_whose_root_stops_its_children_stops_gracefully() -> None:
    parent = _tree_of(_PARENT, _DEAF_CHILD)
    child = psutil.Process(parent.pid).children()[0]
    result = stop_tree(parent.pid, grace=10, name="parent")
    assert (result.graceful, result.killed) == (True, [])
    assert not child.is_running()


def test_a_root_waiting_for_a_long_child_gets_it_stopped_half_way_and_stops_gracefully() -> None:
    """A scheduler waiting for its running task: the task is SIGTERMed (failed, not killed)."""
    waiting = _PARENT.replace("child.kill(); child.wait()", "child.wait()")
    parent = _tree_of(waiting, _LONG_CHILD)
    # 6 s: a loaded machine gets 3 s to end the tree after the half-way signal (2 s did not).
    result = stop_tree(parent.pid, grace=6, name="scheduler")
    assert (result.graceful, result.killed) == (True, [])
    assert 3.0 <= result.seconds < 6.0


# Airflow 3's task runner: SIGTERM only calls the operator's on_kill() and the task runs on,
# SIGINT fails it. Said explicitly: a disposition is inherited, and in two whole-suite runs
# (never alone) this task outlived the SIGINT, as a task started with SIGINT ignored would.
_ON_KILL_ONLY_TASK = (
    "import signal, time; signal.pthread_sigmask(signal.SIG_UNBLOCK, {2, 15}); "
    "signal.signal(2, signal.default_int_handler); signal.signal(15, lambda *_: None); "
    "print('ready', flush=True); time.sleep(600)"
)


def test_a_task_that_runs_on_after_sigterm_is_interrupted_half_way_and_nothing_is_forced() -> None:
    """A scheduler waiting for an Airflow 3 task (SIGTERM ignored, SIGINT fails it)."""
    waiting = _PARENT.replace("child.kill(); child.wait()", "child.wait()")
    parent = _tree_of(waiting, _ON_KILL_ONLY_TASK)
    # A grace of 6 s leaves a loaded machine 3 s to end the tree after the SIGINT (2 s did not,
    # at load 16); the SIGINT goes half-way, not before.
    result = stop_tree(parent.pid, grace=6, name="scheduler")
    assert (result.graceful, result.killed) == (True, [])
    assert 3.0 <= result.seconds < 6.0


def test_a_root_that_ignores_sigterm_is_killed_after_its_grace_with_its_children() -> None:
    deaf_parent = _PARENT.replace("signal.signal(signal.SIGTERM, stop)", "signal.signal(15, 1)")
    parent = _tree_of(deaf_parent, _DEAF_CHILD)
    child = psutil.Process(parent.pid).children()[0]
    result = stop_tree(parent.pid, grace=0.5, name="deaf")
    assert result.graceful is False
    assert sorted(result.killed) == sorted([parent.pid, child.pid])
    assert "1 forced: deaf (2 killed)" in stop_summary([result])


def test_orphaned_checkpoint_temp_files_are_removed_and_nothing_else(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints.json"
    write_json_atomic(checkpoints, {"version": 1})
    orphan = tmp_path / ".checkpoints.json.abc123.tmp"
    orphan.write_text("{half")
    other = tmp_path / ".other.json.x.tmp"
    other.write_text("")
    assert remove_orphaned_temp_files(checkpoints) == [orphan]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.x.tmp", "checkpoints.json"]


def test_what_a_dead_component_left_in_its_process_group_is_killed(tmp_path: Path) -> None:
    leaves_a_child = (
        "import subprocess, sys; "
        f"subprocess.Popen([sys.executable, '-c', {_DEAF_CHILD!r}]); print('ready', flush=True)"
    )
    process = ManagedProcess("leaver", [sys.executable, "-c", leaves_a_child], {}, tmp_path / "l")
    process.start()
    assert process.popen is not None and process.popen.wait(10) == 0
    orphans = [p for p in psutil.process_iter() if _pgid(p) == process.pid]
    assert orphans
    process.kill_leftovers()
    psutil.wait_procs(orphans, timeout=5)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in orphans)


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except (ProcessLookupError, PermissionError):
        return None
