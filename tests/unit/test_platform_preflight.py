"""`make up` refuses to start, with a reason, rather than failing half-way."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from storepulse.config import Settings, load_settings
from storepulse_local.platform import __main__ as platform_cli
from storepulse_local.platform.airflow_local import airflow_env
from storepulse_local.platform.processes import ManagedProcess
from storepulse_local.platform.stack import PlatformError, StackContext, port_in_use


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        {
            "STOREPULSE_STATE_DIR": str(tmp_path),
            "STOREPULSE_AWS_PORT": str(_free_port()),
            "STOREPULSE_AIRFLOW_PORT": str(_free_port()),
        }
    )


def test_a_free_machine_passes(settings: Settings) -> None:
    platform_cli.preflight(settings)


def test_port_in_use_is_named_with_its_variable(settings: Settings) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", settings.airflow_port))
        busy.listen()
        assert port_in_use(settings.airflow_port)
        with pytest.raises(
            PlatformError,
            match=rf"port {settings.airflow_port} .*"
            r"STOREPULSE_AIRFLOW_PORT",
        ):
            platform_cli.preflight(settings)


def test_second_up_is_refused(settings: Settings) -> None:
    platform_cli.pid_file(settings).write_text(
        json.dumps({"supervisor": os.getpid(), "children": {}})
    )
    with pytest.raises(PlatformError, match="already running"):
        platform_cli.preflight(settings)


def test_stale_pid_file_does_not_block(settings: Settings) -> None:
    dead_pid = 2**22 + 1  # above the kernel's pid_max default: never alive
    platform_cli.pid_file(settings).write_text(json.dumps({"supervisor": dead_pid, "children": {}}))
    platform_cli.preflight(settings)


def test_missing_dependency_is_named(settings: Settings, monkeypatch) -> None:
    monkeypatch.setitem(platform_cli.REQUIRED_MODULES, "storepulse_not_installed", "some-package")
    with pytest.raises(PlatformError, match="missing dependencies: some-package"):
        platform_cli.preflight(settings)


def test_old_python_is_refused(settings: Settings, monkeypatch) -> None:
    monkeypatch.setattr(platform_cli, "MIN_PYTHON", (9, 0))
    with pytest.raises(PlatformError, match=r"Python 9\.0\+ is required"):
        platform_cli.preflight(settings)


def test_airflow_is_configured_for_the_embedded_aws(settings: Settings) -> None:
    env = airflow_env(settings)
    connection = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert connection["extra"]["endpoint_url"] == settings.embedded_aws_url
    assert env["AIRFLOW_HOME"].startswith(str(settings.state_dir))
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "4"
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"


def test_real_aws_leaves_the_connection_alone(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    settings = load_settings(
        {"STOREPULSE_EMBEDDED_AWS": "0", "STOREPULSE_STATE_DIR": str(tmp_path)}
    )
    env = airflow_env(settings)
    assert "AIRFLOW_CONN_AWS_DEFAULT" not in env
    assert "AWS_ENDPOINT_URL" not in env


def test_plugins_folder_exposes_no_library_module_as_plugin() -> None:
    """Airflow imports every .py of plugins/ by bare name: the storepulse package is skipped."""
    from airflow._shared.module_loading import find_path_from_directory

    from storepulse.config import REPO_ROOT

    found = [
        Path(p).relative_to(REPO_ROOT / "plugins")
        for p in find_path_from_directory(str(REPO_ROOT / "plugins"), ".airflowignore", "glob")
        if p.endswith(".py")
    ]
    assert all(len(path.parts) == 1 and path.name.endswith("_plugin.py") for path in found), found


class _Sleeper:
    """A component that starts a long-running process."""

    name = "sleeper"
    process: ManagedProcess | None = None

    def ports(self, settings: Settings) -> list[tuple[int, str]]:
        return []

    def start(self, ctx: StackContext) -> None:
        self.process = ctx.spawn(self.name, [sys.executable, "-c", "import time; time.sleep(600)"])

    def wait_ready(self, ctx: StackContext, timeout: float) -> None:
        pass


class _Crasher(_Sleeper):
    """A component with a bug: its start raises something no one expected."""

    name = "crasher"

    def start(self, ctx: StackContext) -> None:
        raise KeyError("a bug")


def test_a_crash_half_way_stops_what_was_started(settings: Settings, monkeypatch) -> None:
    sleeper = _Sleeper()
    monkeypatch.setattr(platform_cli, "components", lambda _settings: [sleeper, _Crasher()])
    monkeypatch.setattr(signal, "signal", lambda *_args: None)  # leave pytest's handlers alone

    with pytest.raises(KeyError, match="a bug"):
        platform_cli.up(settings)

    assert sleeper.process is not None and sleeper.process.popen is not None
    assert sleeper.process.popen.poll() is not None  # stopped, not orphaned
    assert not platform_cli.pid_file(settings).exists()


class _CtrlC(_Sleeper):
    """Ctrl-C while this component starts."""

    name = "ctrl-c"

    def start(self, ctx: StackContext) -> None:
        raise platform_cli._StopRequested("SIGINT")


def test_a_stop_goes_in_reverse_start_order_gracefully(settings: Settings, monkeypatch) -> None:
    first, second = _Sleeper(), _Sleeper()
    second.name = "second"
    monkeypatch.setattr(platform_cli, "components", lambda _s: [first, second, _CtrlC()])
    monkeypatch.setattr(signal, "signal", lambda *_args: None)
    stopped: list[str] = []
    real_stop = platform_cli.stop_in_order

    def recording_stop(processes):
        processes = list(processes)
        stopped.extend(p.name for p in processes)
        return real_stop(processes)

    monkeypatch.setattr(platform_cli, "stop_in_order", recording_stop)
    assert platform_cli.up(settings) == 0
    assert stopped == ["second", "sleeper"]
    assert not any(platform_cli.pid_alive(p.pid) for p in (first.process, second.process) if p)


def test_the_platform_stops_dependants_first_and_the_embedded_aws_last(settings: Settings) -> None:
    from storepulse_local.platform import airflow_local
    from storepulse_local.platform.stack import AirflowComponent, components

    started: list[str] = []
    for component in components(settings):
        if isinstance(component, AirflowComponent):
            started += [f"airflow-{part}" for part in airflow_local.COMPONENTS]
        elif component.name not in {"deploy", "demo-business"}:  # no process: one-shot steps
            started.append(component.name)
    assert started[::-1] == [
        "simulator",
        "lambda-runtime",
        "airflow-triggerer",
        "airflow-dag-processor",
        "airflow-scheduler",  # lets its tasks finish: they report through the api-server
        "airflow-api-server",
        "embedded-aws",
    ]


class _Recorded:
    """A component that only records when it starts and when it is waited for."""

    def __init__(self, name: str, events: list[str], independent_of: tuple[str, ...] = ()):
        self.name, self.events, self.independent_of = name, events, independent_of

    def start(self, ctx: StackContext) -> None:
        self.events.append(f"start {self.name}")

    def wait_ready(self, ctx: StackContext, timeout: float) -> None:
        self.events.append(f"ready {self.name}")


def test_a_component_starts_without_waiting_for_what_it_does_not_need(settings: Settings) -> None:
    """Airflow starts while the embedded AWS restores; the real-time path does not wait for
    Airflow; everything answers before start_all returns (then `make up` says ready)."""
    events: list[str] = []
    stack = [
        _Recorded("embedded-aws", events),
        _Recorded("airflow", events, independent_of=("embedded-aws",)),
        _Recorded("lambda-runtime", events, independent_of=("airflow",)),
        _Recorded("simulator", events, independent_of=("airflow",)),
    ]
    ctx = StackContext(settings, {}, settings.state_dir / "logs")
    serving = lambda: events.append("serving")  # noqa: E731
    platform_cli.start_all(ctx, stack, on_start=lambda: None, on_serving=serving)  # type: ignore[arg-type]
    assert events == [
        "start embedded-aws",
        "start airflow",
        "ready embedded-aws",
        "start lambda-runtime",
        "ready lambda-runtime",
        "start simulator",
        "ready simulator",
        "serving",  # the real-time path, before Airflow answers
        "ready airflow",
    ]


def test_the_restored_state_is_asked_once_whether_the_history_was_sent(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deploy asks, then the simulator: one Scan of the metrics table per start (seconds of
    the embedded AWS's CPU at a week of the demo), and both hear the same answer."""
    from storepulse_local.platform import restored

    scans: list[str] = []
    monkeypatch.setattr(restored, "_metrics_beyond_smoke", lambda ctx: scans.append("scan") or 1)
    ctx = StackContext(settings, {}, settings.state_dir / "logs")

    assert restored.history_sent(ctx) and restored.history_sent(ctx)
    assert scans == ["scan"]
    restored.history_sent(StackContext(settings, {}, settings.state_dir / "logs"))
    assert scans == ["scan", "scan"]  # the next start asks again


def test_quicksight_is_brought_up_to_date_only_once_the_platform_is_up(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart's background deploy_quicksight run waits for ready: its tasks' first call to
    Airflow's execution API blocks the api-server for seconds, which "ready" would wait for."""
    import threading

    from storepulse_local.platform import realtime

    triggered = threading.Event()
    monkeypatch.setattr(realtime, "wait_airflow_settled", lambda ctx, timeout: triggered.set())
    monkeypatch.setattr(realtime, "_airflow_client", lambda ctx: (_ for _ in ()).throw(OSError))
    ctx = StackContext(settings, {}, settings.state_dir / "logs")
    thread = threading.Thread(target=realtime._quicksight_in_background, args=(ctx,), daemon=True)
    thread.start()

    assert not triggered.wait(0.3)
    ctx.up.set()
    thread.join(timeout=10)
    assert triggered.is_set() and not thread.is_alive()
