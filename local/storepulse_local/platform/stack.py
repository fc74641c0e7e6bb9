"""The local stack that ``make up`` runs, as an ordered list of components.

Each component declares the ports it needs and the processes it runs (:class:`Launch`, which
``docker-compose.yaml`` must run too: ``tests/unit/test_docker_compose.py``), starts them and
waits until it answers. Later parts of the platform plug in by adding a component to
:func:`components`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from storepulse.config import LOOPBACK, Settings
from storepulse_local.persistence import final_snapshot_grace
from storepulse_local.platform import airflow_local
from storepulse_local.platform.phases import StartPhases, log_size, restore_phase, tree_cpu
from storepulse_local.platform.processes import STOP_GRACE_SECONDS, ManagedProcess, file_tail


class PlatformError(RuntimeError):
    """A clear, user-facing reason why the platform cannot start or run."""


@dataclass
class StackContext:
    settings: Settings
    env: dict[str, str]
    log_dir: Path
    processes: list[ManagedProcess] = field(default_factory=list)
    # Components started but not waited for yet: name -> their wait (see ``await_ready``).
    pending: dict[str, Callable[[], None]] = field(default_factory=dict)
    phases: StartPhases = field(default_factory=StartPhases)  # where the start's time went
    # Answers about the restored state that hold for the whole start (``restored``): asked once.
    restored: dict[str, Any] = field(default_factory=dict)
    up: threading.Event = field(default_factory=threading.Event)  # set once reported ready

    def await_ready(self, skip: Iterable[str] = ()) -> None:
        """Wait for the started components (but ``skip``), in start order: a component waits
        only for what it needs, so a restart restores the embedded AWS while Airflow starts."""
        for name in [name for name in self.pending if name not in set(skip)]:
            self.pending.pop(name)()

    def spawn(self, name: str, argv: list[str], **options: Any) -> ManagedProcess:
        """Start a long-running process (options: ``restart_argv``, ``stop_grace``, ``env``
        instead of the platform's)."""
        env = options.pop("env", self.env)
        process = ManagedProcess(name, argv, env, self.log_dir / f"{name}.log", **options)
        process.start()
        self.processes.append(process)
        return process

    def run_step(self, name: str, argv: list[str], timeout: float) -> None:
        """Run a one-shot command to completion (stoppable like the rest while it runs)."""
        process = self.spawn(name, argv)
        try:
            assert process.popen is not None
            code = process.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PlatformError(
                f"{name} still running after {timeout:.0f} s; see {process.log_path}"
            ) from None
        if code != 0:
            raise PlatformError(
                f"{name} failed with exit code {code}; last lines of "
                f"{process.log_path}:\n{process.log_tail()}"
            )
        self.processes.remove(process)


@dataclass(frozen=True)
class Launch:
    """One process ``make up`` runs: a service, or a one-shot step it waits for."""

    name: str  # its log file (and docker-compose.yaml's service)
    argv: list[str]
    one_shot: bool = False
    env: Mapping[str, str] = field(default_factory=dict)  # over the platform's environment


READY_TIMEOUT = 240.0  # seconds a component may take to answer once started
MIGRATE = "airflow-db-migrate"  # skipped when the database is current (airflow_local)
EARLY_PARTS = ("airflow-api-server", "airflow-dag-processor")  # see ``start_order``
# Airflow's components: what the real-time path does not wait for (it serves without them).
AIRFLOW_PARTS: tuple[str, ...] = ("airflow", "celery-workers")


class Component(Protocol):
    """``independent_of`` (optional): earlier components whose readiness its start does not
    need (by default it waits for every earlier one)."""

    name: str

    def launches(self, settings: Settings) -> list[Launch]:
        """The processes it runs, in order."""
        ...

    def ports(self, settings: Settings) -> list[tuple[int, str]]:
        """(port, variable that sets it) pairs this component will listen on."""
        ...

    def start(self, ctx: StackContext) -> None: ...

    def wait_ready(self, ctx: StackContext, timeout: float) -> None: ...

    def banner(self, ctx: StackContext) -> list[str]:
        """Lines for the 'ready' message."""
        ...


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def wait_until(check, what: str, timeout: float, ctx: StackContext) -> None:
    """Poll ``check`` until true; fail early, with the log, if a process died meanwhile."""
    deadline = time.monotonic() + timeout
    while not check():
        for process in ctx.processes:
            if (code := process.exit_code()) is not None:
                raise PlatformError(
                    f"{process.name} exited with code {code} while waiting for {what}; "
                    f"last lines of {process.log_path}:\n{process.log_tail()}"
                )
        if time.monotonic() > deadline:
            raise PlatformError(f"{what} not ready after {timeout:.0f} s (logs in {ctx.log_dir})")
        time.sleep(0.5)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


class EmbeddedAwsComponent:
    name = "embedded-aws"
    # It restores its last snapshot when restarted (storepulse_local.persistence); the runtime
    # restarts after it, so it reads the checkpoints set back to that snapshot's moment.
    restart_dependants: ClassVar[dict[str, list[str]]] = {name: ["lambda-runtime"]}
    # Its final snapshot outwaits a long poll (persistence.FINAL_QUIET_TIMEOUT), then takes
    # longer the larger the state (persistence.final_snapshot_grace).
    stop_grace = 40.0
    _started, _log_offset, _process = 0.0, 0, None  # this start's (set by start())

    def ports(self, settings: Settings) -> list[tuple[int, str]]:
        return [(settings.aws_port, "STOREPULSE_AWS_PORT")]

    def launches(self, settings: Settings) -> list[Launch]:
        argv = python_module(
            "storepulse_local.embedded_aws",
            *("--port", str(settings.aws_port)),
            *("--state-dir", str(settings.state_dir)),
        )
        return [Launch(self.name, argv)]

    def start(self, ctx: StackContext) -> None:
        (launch,) = self.launches(ctx.settings)
        self._log_offset = log_size(ctx.log_dir / f"{self.name}.log")
        self._started = time.monotonic()
        grace = final_snapshot_grace(ctx.settings.state_dir, self.stop_grace)
        self._process = ctx.spawn(launch.name, launch.argv, stop_grace=grace)

    def wait_ready(self, ctx: StackContext, timeout: float) -> None:
        wait_until(self.ready_checks(ctx)[self.name], "the embedded AWS", timeout, ctx)
        if restored := restore_phase(ctx.log_dir / f"{self.name}.log", self._log_offset):
            ctx.phases.add("restore", *restored)
        cpu = tree_cpu([self._process.pid if self._process else None])
        ctx.phases.since("embedded AWS answering", self._started, cpu)

    def ready_checks(self, ctx: StackContext) -> dict[str, Callable[[], bool]]:
        """It answers once its snapshot is restored (and the checkpoints set back to it)."""
        from storepulse_local.embedded_aws import is_healthy

        return {self.name: lambda: is_healthy(ctx.settings.embedded_aws_url)}

    def banner(self, ctx: StackContext) -> list[str]:
        return [f"Embedded AWS   {ctx.settings.embedded_aws_url}  (moto; aws_default points here)"]


class AirflowComponent:
    """Ready once its UI and REST API answer (the dashboard is served there); its scheduler,
    dag-processor and triggerer report healthy later, in a line of their own."""

    name = "airflow"
    independent_of = ("embedded-aws",)  # its database is its own: it starts during the restore

    def __init__(self) -> None:
        self.settled = threading.Event()  # every part healthy
        self._started = 0.0

    def ports(self, settings: Settings) -> list[tuple[int, str]]:
        return [(settings.airflow_port, "STOREPULSE_AIRFLOW_PORT")]

    def launches(self, settings: Settings) -> list[Launch]:
        return [
            Launch(MIGRATE, ["airflow", "db", "migrate"], one_shot=True),
            # Before the scheduler: runs a stop or crash interrupted are failed, not resumed.
            Launch(
                "airflow-fail-interrupted",
                python_module("storepulse_local.platform.airflow_history"),
                one_shot=True,
            ),
            *(
                Launch(
                    f"airflow-{part}",
                    ["airflow", part],
                    env=airflow_local.component_env(settings, part, {}),
                )
                for part in airflow_local.COMPONENTS
            ),
        ]

    def start(self, ctx: StackContext) -> None:
        self._started = time.monotonic()
        for launch in start_order(self.launches(ctx.settings)):
            if launch.name == MIGRATE and airflow_local.migration_is_current(ctx.settings, ctx.env):
                print("  Airflow's database is current: not migrated", flush=True)
                continue
            if launch.one_shot:
                ctx.run_step(launch.name, launch.argv, timeout=300)
                if launch.name == MIGRATE:
                    airflow_local.record_migration(ctx.settings)
                continue
            part = launch.name.removeprefix("airflow-")
            grace = airflow_local.STOP_GRACE.get(part, STOP_GRACE_SECONDS)
            ctx.spawn(launch.name, launch.argv, stop_grace=grace, env={**ctx.env, **launch.env})
        print(f"  {file_tail(ctx.log_dir / 'airflow-fail-interrupted.log', 1)}", flush=True)

    def wait_ready(self, ctx: StackContext, timeout: float) -> None:
        url = ctx.settings.airflow_url
        wait_until(
            lambda: http_ok(f"{url}/") and _healthy(url, ["metadatabase"]),
            "Airflow's UI",
            timeout,
            ctx,
        )
        parts = [p.pid for p in ctx.processes if p.name.startswith("airflow-")]
        ctx.phases.since("Airflow API ready", self._started, tree_cpu(parts))
        threading.Thread(
            target=self._report_settled, args=(ctx, timeout), name="airflow-settled", daemon=True
        ).start()

    def _report_settled(self, ctx: StackContext, timeout: float) -> None:
        try:
            wait_airflow_settled(ctx, timeout)
        except PlatformError as exc:  # the supervisor reports a part that exits
            print(f"  Airflow: {exc}", flush=True)
            return
        self.settled.set()
        seconds = time.monotonic() - self._started
        print(
            f"Airflow's scheduler, dag-processor and triggerer healthy ({seconds:.0f} s after "
            "their start): DAG runs are scheduled",
            flush=True,
        )

    def banner(self, ctx: StackContext) -> list[str]:
        password = airflow_local.admin_password(ctx.settings)
        scheduler = "healthy" if self.settled.is_set() else "starting (a line says when healthy)"
        return [
            f"Airflow UI     {ctx.settings.airflow_url}  login {airflow_local.ADMIN_USER} / "
            f"{password}",
            f"Airflow        scheduler, dag-processor, triggerer: {scheduler}",
        ]


def start_order(launches: list[Launch]) -> list[Launch]:
    """The api-server and dag-processor read no history that a stop left unfinished: they start
    right after the migration, while the step that fails interrupted runs (before the scheduler,
    which would adopt them) imports Airflow (6 s of CPU) beside them. The api-server, which the
    UI and "ready" wait for, is still the first and the last stopped (tasks report through it)."""
    early = [launch for launch in launches if launch.name in EARLY_PARTS]
    rest = [launch for launch in launches if launch.name not in EARLY_PARTS]
    after = next((i + 1 for i, launch in enumerate(rest) if launch.name == MIGRATE), 0)
    return rest[:after] + early + rest[after:]


def wait_airflow_settled(ctx: StackContext, timeout: float) -> None:
    """Until every part of Airflow is healthy: what a DAG run needs (the deploy waits for it)."""
    url = ctx.settings.airflow_url
    wait_until(lambda: _healthy(url), "Airflow's scheduler and dag-processor", timeout, ctx)


def _healthy(url: str, parts: list[str] | None = None) -> bool:
    """``parts`` of Airflow's health report (every one by default: metadatabase, scheduler,
    triggerer, dag_processor) say healthy."""
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=3) as response:
            health = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return all(
        part.get("status") == "healthy"
        for name, part in health.items()
        if isinstance(part, dict) and "status" in part and (parts is None or name in parts)
    )


def components(settings: Settings) -> list[Component]:
    """What ``make up`` starts, in order. On real AWS, Lambda runs the handler and no demo
    business or simulated traffic is sent."""
    from storepulse_local.platform import realtime, scale

    if not settings.embedded_aws:
        return scale.profile_components(settings, [AirflowComponent(), realtime.DeployComponent()])
    stack: list[Component] = [
        EmbeddedAwsComponent(),
        AirflowComponent(),
        realtime.LambdaRuntimeComponent(),
        realtime.DeployComponent(hold_for_demo=True, skip_when_current=True),
        realtime.DemoBusinessComponent(),
        realtime.SimulatorComponent(),
    ]
    return scale.profile_components(settings, stack)


def launches(settings: Settings) -> list[Launch]:
    """Every process ``make up`` runs, in start order."""
    return [launch for component in components(settings) for launch in component.launches(settings)]
