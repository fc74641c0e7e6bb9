"""``python -m storepulse_local.platform up|down``: what ``make up`` and ``make down``
run."""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from storepulse.config import ConfigError, Settings, load_settings
from storepulse_local.persistence import final_snapshot_grace
from storepulse_local.platform import airflow_local, scale
from storepulse_local.platform.private import private_dir
from storepulse_local.platform.processes import pid_alive, stop_trees
from storepulse_local.platform.stack import (
    AIRFLOW_PARTS,
    READY_TIMEOUT,
    Component,
    PlatformError,
    StackContext,
    components,
    port_in_use,
)
from storepulse_local.platform.supervision import (
    GiveUp,
    Supervisor,
    stop_in_order,
    stop_summary,
)

MIN_PYTHON = (3, 11)
REQUIRED_MODULES = {"airflow": "apache-airflow", "moto": "moto[server]", "boto3": "boto3"}
# `make down` waits this long for the supervisor's ordered stop (the sum of the grace periods,
# 230 s, and a margin), and as much longer as the embedded AWS's final snapshot may take.
DOWN_TIMEOUT = 300.0


class _StopRequested(Exception):  # noqa: N818 (a signal, not an error)
    """Raised in the main thread by SIGINT/SIGTERM."""


def pid_file(settings: Settings) -> Path:
    return settings.state_dir / "platform.json"


def _read_state(settings: Settings) -> dict | None:
    try:
        return json.loads(pid_file(settings).read_text())
    except (FileNotFoundError, ValueError):
        return None


def _write_state(settings: Settings, ctx: StackContext) -> None:
    state = {"supervisor": os.getpid(), "children": {p.name: p.pid for p in ctx.processes if p.pid}}
    # Rewritten on every restart while `make down` or a test may read it: replaced, never torn.
    tmp = pid_file(settings).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(pid_file(settings))


def preflight(settings: Settings) -> None:
    """Refuse to start, with the reason, instead of failing half-way."""
    if sys.version_info < MIN_PYTHON:
        raise PlatformError(
            f"Python {'.'.join(map(str, MIN_PYTHON))}+ is required, "
            f"this is {sys.version.split()[0]}"
        )
    missing = [pkg for mod, pkg in REQUIRED_MODULES.items() if not importlib.util.find_spec(mod)]
    if missing:
        raise PlatformError(f"missing dependencies: {', '.join(missing)}; run `make install`")
    state = _read_state(settings)
    if state and pid_alive(state["supervisor"]):
        raise PlatformError(
            f"the platform is already running (pid {state['supervisor']}); "
            "stop it with `make down` first"
        )
    for component in components(settings):
        for port, variable in component.ports(settings):
            if port_in_use(port):
                raise PlatformError(
                    f"port {port} ({component.name}, set by {variable}) is already "
                    "in use; free it or choose another port"
                )


def up(settings: Settings) -> int:
    preflight(settings)
    private_dir(settings.state_dir)  # logs, Airflow's secrets and database
    env = scale.profile_env(settings, airflow_local.airflow_env(settings))
    ctx = StackContext(settings, env, log_dir=settings.state_dir / "logs")

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        raise _StopRequested(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    started = ctx.phases.started
    stack = components(settings)
    serving: list[float] = []
    try:
        start_all(
            ctx,
            stack,
            on_start=lambda: _write_state(settings, ctx),
            on_serving=lambda: serving.append(_print_serving(started)),
        )
        ready = time.monotonic() - started
        _print_ready(ctx, stack, ready)
        ctx.up.set()
        threading.Thread(
            target=_print_phases, args=(ctx, serving, ready), name="phases", daemon=True
        ).start()
        _supervisor(ctx, stack).run()
    except _StopRequested as stop:
        print(f"\n{stop}: stopping ...", flush=True)
        return _shutdown(ctx, 0)
    except GiveUp as exc:
        print(f"error: {exc}\nstopping the platform ...", file=sys.stderr, flush=True)
        return _shutdown(ctx, 1)
    except PlatformError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return _shutdown(ctx, 1)
    except BaseException:
        # A bug, not a known failure: show the traceback, but never leave processes behind.
        _shutdown(ctx, 1)
        raise
    return _shutdown(ctx, 0)


def start_all(
    ctx: StackContext,
    stack: list[Component],
    on_start: Callable[[], None],
    on_serving: Callable[[], None] = lambda: None,
) -> None:
    """Start each component once what it needs answers (every earlier one but its
    ``independent_of``); return when all answer. ``on_serving``: called when everything but
    Airflow answers, if Airflow does not yet (a restart: the real-time path serves first)."""
    for component in stack:
        ctx.await_ready(skip=getattr(component, "independent_of", ()))
        print(f"starting {component.name} ...", flush=True)
        component.start(ctx)
        on_start()
        ctx.pending[component.name] = functools.partial(component.wait_ready, ctx, READY_TIMEOUT)
    ctx.await_ready(skip=AIRFLOW_PARTS)
    if ctx.pending:
        on_serving()
    ctx.await_ready()


def _print_serving(started: float) -> float:
    seconds = time.monotonic() - started
    print(
        f"StorePulse's real-time path is serving after {seconds:.0f} s: the "
        "embedded AWS (its restored state), the Lambda runtime and the simulator; the Airflow "
        "UI and the dashboard are still starting ('StorePulse is up' follows)",
        flush=True,
    )
    return seconds


def _print_phases(ctx: StackContext, serving: list[float], ready: float) -> None:
    """One line, once the phases that end after ready (the runtime's first batch) ended."""
    ctx.phases.wait_complete(READY_TIMEOUT)
    print(ctx.phases.line(serving[0] if serving else None, ready), flush=True)


def _supervisor(ctx: StackContext, stack: list[Component]) -> Supervisor:
    """Restarts what exits, except what each component says cannot be restarted."""
    fatal: dict[str, str] = {}
    prepare: dict[str, Callable[[], None]] = {}
    dependants: dict[str, list[str]] = {}
    ready: dict[str, Callable[[], bool]] = {}
    for component in stack:
        fatal |= getattr(component, "not_restartable", {})
        prepare |= getattr(component, "before_restart", lambda _ctx: {})(ctx)
        dependants |= getattr(component, "restart_dependants", {})
        ready |= getattr(component, "ready_checks", lambda _ctx: {})(ctx)
    return Supervisor(
        list(ctx.processes),
        fatal=fatal,
        before_restart=prepare,
        dependants=dependants,
        ready=ready,
        log=lambda line: print(line, flush=True),
        on_restart=lambda: _write_state(ctx.settings, ctx),
    )


def _print_ready(ctx: StackContext, stack: list[Component], seconds: float) -> None:
    lines = [
        f"StorePulse is up in {seconds:.0f} s (env {ctx.settings.env}, region "
        f"{ctx.settings.region})"
    ]
    for component in stack:
        lines += [f"  {line}" for line in component.banner(ctx)]
    lines += [f"  Logs           {ctx.log_dir}", "Ctrl-C here, or `make down` elsewhere, stops it."]
    print("\n".join(lines), flush=True)


def _shutdown(ctx: StackContext, code: int) -> int:
    # A second Ctrl-C or SIGTERM must not abort the cleanup.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    results = stop_in_order(reversed(ctx.processes))  # dependants first, embedded AWS last
    for result in results:
        how = "gracefully" if result.graceful and not result.killed else "FORCED"
        print(f"  {result.name}: stopped {how} in {result.seconds:.1f} s", flush=True)
    pid_file(ctx.settings).unlink(missing_ok=True)
    print(stop_summary(results), flush=True)
    return code


def down(settings: Settings) -> int:
    state = _read_state(settings)
    if not state:
        print("the platform is not running")
        return 0
    supervisor = state["supervisor"]
    if pid_alive(supervisor):
        os.kill(supervisor, signal.SIGTERM)  # it stops its children itself, in order
        deadline = time.monotonic() + DOWN_TIMEOUT + final_snapshot_grace(settings.state_dir, 0)
        while pid_alive(supervisor) and time.monotonic() < deadline:
            time.sleep(0.2)
    # Whatever is left (the supervisor was killed hard, or did not finish): stop it by PID.
    leftovers = [pid for pid in [supervisor, *state["children"].values()] if pid_alive(pid)]
    stop_trees(leftovers)
    pid_file(settings).unlink(missing_ok=True)
    print("the platform is stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m storepulse_local.platform", description=__doc__
    )
    parser.add_argument("command", choices=["up", "down"])
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        return up(settings) if args.command == "up" else down(settings)
    except (ConfigError, PlatformError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
