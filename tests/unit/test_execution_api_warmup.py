"""The api-server's execution API is built as the server starts, in the background: the UI answers
meanwhile, and a request to the execution API waits for the build instead of starting another."""

from __future__ import annotations

import threading
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from storepulse.execution_api_warmup import ExecutionApiWarmUp

WAIT = 30.0  # seconds any step may take on a loaded machine (never reached when it works)


class LazyExecutionApi:
    """An ASGI app that builds itself on its first request, as Airflow's (Cadwyn) does, blocking
    the event loop that calls it; the build lasts until the test releases it."""

    def __init__(self) -> None:
        self.building, self.release, self.built = (
            threading.Event(),
            threading.Event(),
            threading.Event(),
        )
        self.builders: list[str] = []  # the threads that built it
        self.served_before_built: list[str] = []  # paths answered by a half-built app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not self.builders:
            self.builders.append(threading.current_thread().name)
            self.building.set()
            self.release.wait(WAIT)  # blocking on purpose: the build holds its loop
            self.built.set()
        elif not self.built.is_set():
            self.served_before_built.append(scope["path"])
        await PlainTextResponse("execution")(scope, receive, send)


def api_server(execution: LazyExecutionApi, middleware: list[Middleware]) -> Starlette:
    async def ui(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ui")

    routes = [Mount("/execution", app=execution), Route("/ui", ui)]
    return Starlette(routes=routes, middleware=middleware)


def test_the_execution_api_is_built_at_start_while_the_ui_answers() -> None:
    execution = LazyExecutionApi()
    with TestClient(api_server(execution, [Middleware(ExecutionApiWarmUp)])) as client:
        assert execution.building.wait(WAIT)  # started by the server's start, no request made
        assert client.get("/ui").text == "ui"  # the build does not hold the server's loop
        assert not execution.built.is_set()
        execution.release.set()
        assert execution.built.wait(WAIT)
    assert execution.builders == ["execution-api-warm-up"]


def test_a_request_to_the_execution_api_waits_for_the_build_instead_of_building_again() -> None:
    execution = LazyExecutionApi()
    with TestClient(api_server(execution, [Middleware(ExecutionApiWarmUp)])) as client:
        assert execution.building.wait(WAIT)
        answers: list[str] = []
        answered = threading.Event()
        threading.Thread(
            target=lambda: (answers.append(client.get("/execution/health").text), answered.set()),
            daemon=True,
        ).start()
        assert not answered.wait(0.5)  # still building: it waits (it can only be early, never late)
        execution.release.set()
        assert answered.wait(WAIT)
    assert answers == ["execution"]
    assert execution.builders == ["execution-api-warm-up"]
    assert execution.served_before_built == []


def test_without_the_warm_up_the_first_request_builds_it_on_the_servers_loop() -> None:
    """What the middleware is for: the same server without it builds on the request path."""
    execution = LazyExecutionApi()
    execution.release.set()
    with TestClient(api_server(execution, [])) as client:
        assert not execution.building.is_set()
        assert client.get("/execution/health").text == "execution"
    assert len(execution.builders) == 1 and execution.builders[0] != "execution-api-warm-up"


def test_an_api_server_without_the_execution_api_starts_and_serves_as_before() -> None:
    async def ui(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ui")

    app = Starlette(routes=[Route("/ui", ui)], middleware=[Middleware(ExecutionApiWarmUp)])
    with TestClient(app) as client:
        assert client.get("/ui").text == "ui"


def test_a_failed_warm_up_leaves_the_build_to_the_first_request() -> None:
    class Broken(LazyExecutionApi):
        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            if threading.current_thread().name == "execution-api-warm-up":
                raise RuntimeError("no database yet")
            await super().__call__(scope, receive, send)

    execution = Broken()
    execution.release.set()
    with TestClient(api_server(execution, [Middleware(ExecutionApiWarmUp)])) as client:
        assert client.get("/execution/health").text == "execution"
    assert len(execution.builders) == 1 and execution.builders[0] != "execution-api-warm-up"


def test_the_plugin_installs_the_warm_up_in_every_api_server() -> None:
    import storepulse_plugin

    (middleware,) = storepulse_plugin.StorePulsePlugin.fastapi_root_middlewares
    assert middleware["middleware"] is ExecutionApiWarmUp
