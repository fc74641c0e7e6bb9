"""The real-time path in ``make up``: the local Lambda runtime, the deploy through Airflow, the
demo business, and the traffic simulator (components for ``storepulse_local.platform.stack``)."""

from __future__ import annotations

import json
from collections.abc import Callable

from storepulse.config import Settings
from storepulse_local.lambda_runtime.checkpoints import (
    CHECKPOINT_FILE,
    remove_orphaned_temp_files,
)
from storepulse_local.platform import airflow_local
from storepulse_local.platform.restored import history_sent
from storepulse_local.platform.stack import PlatformError, StackContext, python_module

DEPLOY_DAG = "deploy_realtime_stack"
# Scheduled on the Asset the deploy emits: make up waits for the run that asset starts, so
# QuickSight exists before any export publishes what refresh_quicksight refreshes.
QUICKSIGHT_DAG = "deploy_quicksight"
DEMO_SEED, DEMO_STORES = 7, 2
# The demo is alive at any hour: the simulator first sends about BACKFILL_EVENTS events of
# history (today so far, yesterday and last week up to the same time: 20-30 s for the local stream
# processor), then runs live at the clock's pace (never ahead of it) at SIMULATOR_RATE events/s
# at the weekly peak, so the dashboard's charts move every refresh. Both are simulator options.
SIMULATOR_RATE, BACKFILL_EVENTS = 2.0, 4000


class LambdaRuntimeComponent:
    """Runs the stack's event source mappings (moto cannot run Lambda code), each function's
    deployed package in a worker interpreter. Started before the deploy: it waits for the
    mapping, and the deploy's smoke test needs it."""

    name = "lambda-runtime"
    # On SIGTERM it lets each shard finish the batch in flight, whose checkpoint it then saves.
    stop_grace = 30.0

    def ports(self, settings: Settings) -> list[tuple[int, str]]:
        return []

    def start(self, ctx: StackContext) -> None:
        _remove_checkpoint_temp_files(ctx)
        ctx.spawn(
            self.name, python_module("storepulse_local.lambda_runtime"), stop_grace=self.stop_grace
        )

    def before_restart(self, ctx: StackContext) -> dict[str, Callable[[], None]]:
        """A runtime killed mid-write leaves its temp file: removed before the next one runs."""
        return {self.name: lambda: _remove_checkpoint_temp_files(ctx)}

    def wait_ready(self, ctx: StackContext, timeout: float) -> None:
        """Nothing to wait for: it polls for mappings by itself."""

    def banner(self, ctx: StackContext) -> list[str]:
        return [f"Lambda runtime polling the stream (log {ctx.log_dir / 'lambda-runtime.log'})"]


def _remove_checkpoint_temp_files(ctx: StackContext) -> None:
    state = ctx.settings.state_dir / "lambda-runtime" / CHECKPOINT_FILE
    if removed := remove_orphaned_temp_files(state):
        print(f"  removed {len(removed)} orphaned checkpoint temp file(s)", flush=True)


class DeployComponent:
    """Deploys the real-time stack by triggering its DAG, as an operator would, and waits."""

    name = "deploy"

    def __init__(self) -> None:
        self.run_id = self.quicksight_run_id = ""

    def ports(self, settings: Settings) -> list[tuple[int, str]]:
        return []

    def start(self, ctx: StackContext) -> None:
        password = airflow_local.admin_password(ctx.settings)
        if not password:
            raise PlatformError("Airflow generated no admin password; see its api-server log")
        client = airflow_local.AirflowClient(
            ctx.settings.airflow_url, airflow_local.ADMIN_USER, password
        )
        try:
            client.login()
            for dag_id in (DEPLOY_DAG, QUICKSIGHT_DAG):
                client.wait_for_dag(dag_id)
                client.unpause(dag_id)
            earlier = {run["dag_run_id"] for run in client.dag_runs(QUICKSIGHT_DAG)}
            self.run_id = client.trigger(DEPLOY_DAG)
            print(f"  triggered {DEPLOY_DAG} ({self.run_id}); waiting ...", flush=True)
            _succeeded(ctx, client, DEPLOY_DAG, self.run_id)
            self.quicksight_run_id = client.wait_for_new_run(QUICKSIGHT_DAG, earlier)
            followed = f"{QUICKSIGHT_DAG} ({self.quicksight_run_id})"
            print(f"  {followed} followed the deploy; waiting ...", flush=True)
            _succeeded(ctx, client, QUICKSIGHT_DAG, self.quicksight_run_id)
        except (airflow_local.AirflowApiError, TimeoutError) as exc:
            raise PlatformError(
                f"the deploy through Airflow did not finish: {exc}; see "
                f"{ctx.log_dir / 'airflow-api-server.log'}"
            ) from None

    def wait_ready(self, ctx: StackContext, timeout: float) -> None:
        """The run already succeeded in start()."""

    def banner(self, ctx: StackContext) -> list[str]:
        return [
            f"Real-time stack deployed by {DEPLOY_DAG} (run {self.run_id}), QuickSight by "
            f"{QUICKSIGHT_DAG} (run {self.quicksight_run_id})"
        ]


def _succeeded(
    ctx: StackContext, client: airflow_local.AirflowClient, dag_id: str, run_id: str
) -> None:
    state = client.wait_for_run(dag_id, run_id, timeout=900)
    if state != "success":
        raise PlatformError(
            f"{dag_id} run {run_id} ended {state}: open it in the Airflow UI "
            f"({ctx.settings.airflow_url}) for the task logs"
        )


class DemoBusinessComponent:
    """Seeds the simulated business and the default alert rules; creates the alerts inbox."""

    name = "demo-business"

    def __init__(self) -> None:
        self.summary: dict[str, object] = {}

    def ports(self, settings: Settings) -> list[tuple[int, str]]:
        return []

    def start(self, ctx: StackContext) -> None:
        ctx.run_step(
            self.name,
            python_module(
                "storepulse_local.platform.demo",
                "--seed",
                str(DEMO_SEED),
                "--stores",
                str(DEMO_STORES),
            ),
            timeout=120,
        )
        log = (ctx.log_dir / f"{self.name}.log").read_text().strip().splitlines()
        self.summary = json.loads(log[-1])

    def wait_ready(self, ctx: StackContext, timeout: float) -> None:
        """Done in start()."""

    def banner(self, ctx: StackContext) -> list[str]:
        return [f"Alerts inbox   {self.summary.get('alerts_inbox')} (SQS, subscribed to alerts)"]


class SimulatorComponent:
    """Simulated traffic: history first, then live (``storepulse.simulator.backfill``)."""

    name = "simulator"

    def ports(self, settings: Settings) -> list[tuple[int, str]]:
        return []

    def start(self, ctx: StackContext) -> None:
        live = python_module(
            "storepulse.simulator",
            "run",
            *("--seed", str(DEMO_SEED), "--stores", str(DEMO_STORES)),
            *("--rate", str(SIMULATOR_RATE)),
        )
        # The history is sent once: a restarted simulator only goes on live, and so does the
        # first one when the embedded AWS restored the history of an earlier run.
        first = [*live, "--backfill", str(BACKFILL_EVENTS)]
        if history_sent(ctx):
            print("  the restored state holds the demo's history: not sent again", flush=True)
            first = live
        ctx.spawn(self.name, first, restart_argv=live, stop_grace=10.0)

    def wait_ready(self, ctx: StackContext, timeout: float) -> None:
        """It sends from its first second on."""

    def banner(self, ctx: StackContext) -> list[str]:
        return [
            f"Simulator      {DEMO_STORES} stores, live after ~{BACKFILL_EVENTS} events of "
            f"history (log {ctx.log_dir / 'simulator.log'})"
        ]
