"""The real-time path in ``make up``: the local Lambda runtime, the deploy through Airflow, the
demo business, and the traffic simulator (components for ``storepulse_local.platform.stack``)."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from storepulse.config import Settings
from storepulse.simulator.backfill import HISTORY_SENT
from storepulse_local.lambda_runtime.checkpoints import (
    CHECKPOINT_FILE,
    remove_orphaned_temp_files,
)
from storepulse_local.platform import airflow_local, first_start
from storepulse_local.platform.deploy import DEPLOY_DAG, QUICKSIGHT_DAG, RUN_TIMEOUT
from storepulse_local.platform.phases import log_since, log_size, own_cpu, tree_cpu
from storepulse_local.platform.processes import file_tail
from storepulse_local.platform.restored import deploy_not_needed, embedded_client, history_sent
from storepulse_local.platform.stack import (
    AIRFLOW_PARTS,
    READY_TIMEOUT,
    Launch,
    PlatformError,
    StackContext,
    python_module,
    wait_airflow_settled,
)

DEMO_SEED, DEMO_STORES = 7, 2
# The demo is alive at any hour: the simulator first sends about BACKFILL_EVENTS events of
# history (today so far, yesterday and last week up to the same time: 20-30 s for the local stream
# processor), then runs live at the clock's pace (never ahead of it) at SIMULATOR_RATE events/s
# at the weekly peak, so the dashboard's charts move every refresh. Both are simulator options.
SIMULATOR_RATE, BACKFILL_EVENTS = 2.0, 4000
# A smaller history for platforms that need one sooner (the tests' platforms: each one's runtime
# would otherwise spend minutes of a shared CI machine on it).
HISTORY_EVENTS_VARIABLE = "STOREPULSE_DEMO_HISTORY_EVENTS"


def history_events(environ: Mapping[str, str] = os.environ) -> int:
    text = environ.get(HISTORY_EVENTS_VARIABLE) or str(BACKFILL_EVENTS)
    if not text.isdigit() or int(text) < 1:
        raise PlatformError(f"{HISTORY_EVENTS_VARIABLE}={text!r}: give a number of events >= 1")
    return int(text)


class LambdaRuntimeComponent:
    """Runs the stack's event source mappings (moto cannot run Lambda code), each function's
    deployed package in a worker interpreter. Started before the deploy: it waits for the
    mapping, and the deploy's smoke test needs it."""

    name = "lambda-runtime"
    independent_of = AIRFLOW_PARTS
    # On SIGTERM it lets each shard finish the batch in flight, whose checkpoint it then saves.
    stop_grace = 30.0

    def ports(self, settings: Settings) -> list[tuple[int, str]]:
        return []

    def launches(self, settings: Settings) -> list[Launch]:
        return [Launch(self.name, python_module("storepulse_local.lambda_runtime"))]

    def start(self, ctx: StackContext) -> None:
        _remove_checkpoint_temp_files(ctx)
        (launch,) = self.launches(ctx.settings)
        log_path = ctx.log_dir / f"{self.name}.log"
        offset, started = log_size(log_path), time.monotonic()
        process = ctx.spawn(launch.name, launch.argv, stop_grace=self.stop_grace)
        ctx.phases.expect(FIRST_BATCH)
        threading.Thread(
            target=_first_batch,
            args=(ctx, log_path, offset, started, process.pid),
            name="first-batch",
            daemon=True,
        ).start()

    def before_restart(self, ctx: StackContext) -> dict[str, Callable[[], None]]:
        """A runtime killed mid-write leaves its temp file: removed before the next one runs."""
        return {self.name: lambda: _remove_checkpoint_temp_files(ctx)}

    def wait_ready(self, ctx: StackContext, timeout: float) -> None:
        """Nothing to wait for: it polls for mappings by itself."""

    def banner(self, ctx: StackContext) -> list[str]:
        return [f"Lambda runtime polling the stream (log {ctx.log_dir / 'lambda-runtime.log'})"]


FIRST_BATCH = "Lambda runtime to its first batch"
INVOKED = re.compile(r" invoke \S+ shard=\S+ records=[1-9]")  # runtime's log: a batch processed


def _first_batch(
    ctx: StackContext, log_path: Path, offset: int, started: float, pid: int | None
) -> None:
    """The start-up phase from the runtime's start to its first processed batch (restarts:
    the records put while it was down, or the simulator's first)."""
    deadline, unread = started + READY_TIMEOUT, ""
    while time.monotonic() < deadline:
        text = log_since(log_path, offset)
        offset += len(text.encode())
        lines = unread + text
        if INVOKED.search(lines):
            ctx.phases.since(FIRST_BATCH, started, tree_cpu([pid]))
            return
        unread = lines.rpartition("\n")[2]  # a line being written: searched again, whole
        time.sleep(0.25)
    ctx.phases.forget(FIRST_BATCH)


def _remove_checkpoint_temp_files(ctx: StackContext) -> None:
    state = ctx.settings.state_dir / "lambda-runtime" / CHECKPOINT_FILE
    if removed := remove_orphaned_temp_files(state):
        print(f"  removed {len(removed)} orphaned checkpoint temp file(s)", flush=True)


class DeployComponent:
    """Deploys the real-time stack and QuickSight through their DAGs, and waits
    (``storepulse_local.platform.deploy``).

    With ``skip_when_current`` (the embedded AWS), a restart whose restored stack is already what
    a deploy would make (``restored.deploy_not_needed``) does not wait for that no-op run (minutes
    on a loaded machine): the real-time path serves from the restored state at once, the reason
    is logged, and only ``deploy_quicksight`` (a no-op when QuickSight matches) is triggered,
    in the background. A first start or a changed template, parameter or code deploys as before."""

    name = "deploy"
    independent_of = AIRFLOW_PARTS  # it waits for Airflow itself when it deploys

    def __init__(self, hold_for_demo: bool = False, skip_when_current: bool = False) -> None:
        self.runs: dict[str, str] = {}
        self.skipped = ""  # why no deploy ran
        # With the demo: its first start holds the nightly export until the history is counted.
        self.hold_for_demo = hold_for_demo
        self.skip_when_current = skip_when_current

    def ports(self, settings: Settings) -> list[tuple[int, str]]:
        return []

    def launches(self, settings: Settings) -> list[Launch]:
        argv = python_module(
            "storepulse_local.platform.deploy",
            *("--airflow-url", settings.airflow_url),
            *("--passwords-file", str(airflow_local.passwords_file(settings))),
        )
        return [Launch(self.name, argv, one_shot=True)]

    def start(self, ctx: StackContext) -> None:
        reason = self._check_stack(ctx) if self.skip_when_current else None
        if reason is None:
            ctx.await_ready()
            wait_airflow_settled(ctx, READY_TIMEOUT)
        if self.hold_for_demo and not history_sent(ctx):
            ctx.await_ready()  # paused through Airflow's API
            held = first_start.hold(_airflow_client(ctx), ctx.settings.state_dir)
            print(f"  {', '.join(held)} paused until the demo's history is counted", flush=True)
        if reason:
            self.skipped = reason
            print(f"  not deployed: {reason}", flush=True)
            threading.Thread(
                target=_quicksight_in_background, args=(ctx,), name="quicksight", daemon=True
            ).start()
            return
        (launch,) = self.launches(ctx.settings)
        print(f"  deploying through {DEPLOY_DAG} and {QUICKSIGHT_DAG} ...", flush=True)
        ctx.run_step(launch.name, launch.argv, timeout=2 * RUN_TIMEOUT + 300)
        self.runs = json.loads(file_tail(ctx.log_dir / f"{self.name}.log", 1))

    @staticmethod
    def _check_stack(ctx: StackContext) -> str | None:
        began, cpu = time.monotonic(), own_cpu()
        reason = deploy_not_needed(ctx)
        ctx.phases.since("current-stack check", began, own_cpu() - cpu)
        return reason

    def wait_ready(self, ctx: StackContext, timeout: float) -> None:
        """The runs already succeeded in start()."""

    def banner(self, ctx: StackContext) -> list[str]:
        if self.skipped:
            return [
                "Deployed       earlier: the real-time path serves from the restored state "
                f"({self.skipped}; {QUICKSIGHT_DAG} runs in the background)"
            ]
        return [f"Deployed       {', '.join(f'{dag} ({run})' for dag, run in self.runs.items())}"]


def _quicksight_in_background(ctx: StackContext) -> None:
    """QuickSight follows every deploy; a skipped one still brings it up to date (a no-op when
    it matches), without holding ``make up``: triggered once the platform is up, so its tasks'
    CPU is not spent before ready. Their calls to Airflow's execution API no longer freeze the
    UI: the api-server builds that API as it starts, beside its event loop
    (``storepulse.execution_api_warmup``), not on the first call with the loop blocked (10-40 s
    of frozen UI after "StorePulse is up", 2026-12-07)."""
    ctx.up.wait()
    try:
        wait_airflow_settled(ctx, READY_TIMEOUT)
        client = _airflow_client(ctx)
        client.wait_for_dag(QUICKSIGHT_DAG)
        run = client.trigger(QUICKSIGHT_DAG)
        state = client.wait_for_run(QUICKSIGHT_DAG, run, timeout=RUN_TIMEOUT)
    except Exception as exc:  # e.g. stopping meanwhile: the next start (or the UI) runs it
        print(f"  {QUICKSIGHT_DAG} not run in the background: {exc}", flush=True)
        return
    print(f"  {QUICKSIGHT_DAG} ({run}), in the background: {state}", flush=True)


class DemoBusinessComponent:
    """Seeds the simulated business and the default alert rules; creates the alerts inbox."""

    name = "demo-business"
    independent_of = AIRFLOW_PARTS

    def __init__(self) -> None:
        self.summary: dict[str, object] = {}

    def ports(self, settings: Settings) -> list[tuple[int, str]]:
        return []

    def launches(self, settings: Settings) -> list[Launch]:
        argv = python_module(
            "storepulse_local.platform.demo", "--seed", str(DEMO_SEED), "--stores", str(DEMO_STORES)
        )
        return [Launch(self.name, argv, one_shot=True)]

    def start(self, ctx: StackContext) -> None:
        (launch,) = self.launches(ctx.settings)
        ctx.run_step(launch.name, launch.argv, timeout=120)
        log = (ctx.log_dir / f"{self.name}.log").read_text().strip().splitlines()
        self.summary = json.loads(log[-1])

    def wait_ready(self, ctx: StackContext, timeout: float) -> None:
        """Done in start()."""

    def banner(self, ctx: StackContext) -> list[str]:
        users = self.summary.get("quicksight_users")
        seen = ", ".join(f"{u} ({s})" for u, s in users.items()) if isinstance(users, dict) else ""
        return [
            f"Alerts inbox   {self.summary.get('alerts_inbox')} (SQS, subscribed to alerts)",
            f"QuickSight     users from the dashboard grants: {seen}; row-level security within "
            "10 min (sync_quicksight_access)",
        ]


class SimulatorComponent:
    """Simulated traffic: history first, then live (``storepulse.simulator.backfill``)."""

    name = "simulator"
    independent_of = AIRFLOW_PARTS

    def ports(self, settings: Settings) -> list[tuple[int, str]]:
        return []

    def launches(self, settings: Settings) -> list[Launch]:
        return [Launch(self.name, [*self._live(), "--backfill", str(history_events())])]

    @staticmethod
    def _live() -> list[str]:
        return python_module(
            "storepulse.simulator",
            "run",
            *("--seed", str(DEMO_SEED), "--stores", str(DEMO_STORES)),
            *("--rate", str(SIMULATOR_RATE)),
        )

    def __init__(self) -> None:
        self.sends_history = False

    def start(self, ctx: StackContext) -> None:
        # The history is sent once: a restarted simulator only goes on live, and so does the
        # first one when the embedded AWS restored the history of an earlier run.
        (launch,) = self.launches(ctx.settings)
        first, live = launch.argv, self._live()
        if history_sent(ctx):
            print("  the restored state holds the demo's history: not sent again", flush=True)
            first = live
        self.sends_history = first != live
        ctx.spawn(self.name, first, restart_argv=live, stop_grace=10.0)

    def wait_ready(self, ctx: StackContext, timeout: float) -> None:
        """It sends from its first second on. What a first start held is released in the
        background once the history is sent and counted by the runtime (``first_start``):
        ``make up`` is ready meanwhile."""
        if first_start.held(ctx.settings.state_dir):
            threading.Thread(
                target=self._release_when_counted, args=(ctx,), name="first-start", daemon=True
            ).start()

    def _release_when_counted(self, ctx: StackContext) -> None:
        try:
            self._wait_and_release(ctx)
        except Exception as exc:  # e.g. stopping meanwhile: the next start releases it
            print(
                f"  {', '.join(first_start.HELD_DAGS)} stays paused until the next start: {exc}",
                flush=True,
            )

    def _wait_and_release(self, ctx: StackContext) -> None:
        state_dir, log_path = ctx.settings.state_dir, ctx.log_dir / f"{self.name}.log"
        counted = not self.sends_history or (
            first_start.wait_until(
                lambda: HISTORY_SENT in log_path.read_text(errors="replace"),
                first_start.CATCH_UP_TIMEOUT,
                settle=1,
            )
            and first_start.wait_until(
                partial(
                    first_start.stream_caught_up,
                    embedded_client(ctx, "kinesis"),
                    ctx.settings.resource_name("events"),
                    state_dir / "lambda-runtime",
                    datetime.now(UTC),  # the history was sent by now: live traffic follows
                ),
                first_start.CATCH_UP_TIMEOUT,
            )
        )
        released = first_start.release(_airflow_client(ctx), state_dir)
        how = "counted" if counted else "not counted in time (see the simulator log)"
        print(f"  the demo's history {how}: {', '.join(released)} unpaused", flush=True)

    def banner(self, ctx: StackContext) -> list[str]:
        return [
            f"Simulator      {DEMO_STORES} stores, live after ~{history_events()} events of "
            f"history (log {ctx.log_dir / 'simulator.log'})"
        ]


def _airflow_client(ctx: StackContext) -> airflow_local.AirflowClient:
    settings = ctx.settings
    password = airflow_local.admin_password(settings) or ""
    client = airflow_local.AirflowClient(settings.airflow_url, airflow_local.ADMIN_USER, password)
    client.login()
    return client
