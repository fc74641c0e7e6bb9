"""Airflow's api-server builds its execution API on the first request that reaches it, not at
start: a Cadwyn app, which then generates a copy of every route and model for each API version.
That is seconds of CPU with the server's event loop blocked, so every UI and REST request waits
through it: after a restart on 2 cores, the first task's first call to ``/execution`` froze the UI
for 10-40 s (2026-12-07; the browser test's first page timed out at 20 s).

:class:`ExecutionApiWarmUp`, a root middleware the StorePulse plugin installs in every api-server
(``make up``'s and a deployment's alike), makes that first request itself as the server starts
(once its lifespan has started, before the first request), in a thread of its own with its own
event loop: the server's loop keeps answering meanwhile. Requests to the execution API that
arrive before the build is done wait for it without blocking the loop (they would have waited
for the build anyway). Only the ASGI interface is used: whatever else the execution API does
lazily on its first request is done ahead too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

EXECUTION_PREFIX = "/execution"  # where Airflow mounts its execution API (a reserved prefix)
WARM_UP_PATH = "/health"  # the execution API's unauthenticated liveness route

log = logging.getLogger(__name__)


class ExecutionApiWarmUp:
    """ASGI middleware: at lifespan startup, one request to the execution API's ``/health`` in a
    background thread; until it has answered, requests under ``/execution`` wait for it."""

    def __init__(self, app: ASGIApp, prefix: str = EXECUTION_PREFIX) -> None:
        self.app = app
        self.prefix = prefix
        self._mount: Any = None  # the Mount route the execution API is served from
        self._warm: concurrent.futures.Future[int | None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._on_started(scope, send))
            return
        if self._warm is not None and not self._warm.done() and self._is_execution(scope):
            # Shielded: a client that gives up must not cancel the warm-up's future.
            await asyncio.shield(asyncio.wrap_future(self._warm))
        await self.app(scope, receive, send)

    @property
    def warmed(self) -> concurrent.futures.Future[int | None] | None:
        """The warm-up's status code once done (None: it failed); None before the start."""
        return self._warm

    def _on_started(self, scope: Scope, send: Send) -> Send:
        """``send`` that starts the warm-up when the lifespan reports its startup complete: the
        execution API's own lifespan (its services registry) has run by then."""

        async def send_after_starting(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete" and self._warm is None:
                self._start(scope.get("app"))
            await send(message)

        return send_after_starting

    def _start(self, root: Any) -> None:
        self._mount = execution_mount(root, self.prefix)
        if self._mount is None:  # an api-server started without the execution API
            return
        self._warm = concurrent.futures.Future()
        threading.Thread(
            target=self._warm_up, args=(self._mount.app,), name="execution-api-warm-up", daemon=True
        ).start()

    def _warm_up(self, execution_app: ASGIApp) -> None:
        assert self._warm is not None
        status: int | None = None
        try:
            status = asyncio.run(get(execution_app, WARM_UP_PATH))
            log.info(
                "execution API built ahead of its first request (GET %s: %s)", WARM_UP_PATH, status
            )
        except Exception:  # the first real request builds it then, as without this middleware
            log.warning("execution API warm-up failed", exc_info=True)
        finally:
            self._warm.set_result(status)

    def _is_execution(self, scope: Scope) -> bool:
        from starlette.routing import Match

        return (
            scope["type"] in ("http", "websocket") and self._mount.matches(scope)[0] is Match.FULL
        )


def execution_mount(root: Any, prefix: str = EXECUTION_PREFIX) -> Any:
    """The Mount route serving ``prefix`` in the root app (None if there is none)."""
    from starlette.routing import Mount

    for route in getattr(root, "routes", ()):
        if isinstance(route, Mount) and route.path == prefix:
            return route
    return None


async def get(app: ASGIApp, path: str) -> int:
    """One GET to ``app`` through its ASGI interface, as a server would send it; its status."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost")],
        "client": None,  # in process: no socket at either end (ASGI allows None)
        "server": None,
        "state": {},
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return next(int(m["status"]) for m in sent if m["type"] == "http.response.start")
