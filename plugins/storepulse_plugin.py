"""The StorePulse Airflow plugin: the real-time dashboard in Airflow's UI, and the api-server's
execution API built as the server starts (``storepulse.execution_api_warmup``).

Every Airflow process imports this file (scheduler, workers, dag-processor, triggerer), and only
the api-server serves the dashboard, so it stays light: the FastAPI app (and with it boto3,
pyarrow and Airflow's security module) is built on the first request that reaches
``/dashboard``, not at import.
"""

from __future__ import annotations

import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from storepulse.execution_api_warmup import ExecutionApiWarmUp

URL_PREFIX = "/dashboard"


class LazyDashboard:
    """An ASGI app that builds ``storepulse.dashboard.app.create_app()`` when first called."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    def _build(self) -> Any:
        with self._lock:
            if self._app is None:
                from storepulse.dashboard.app import create_app

                self._app = create_app()
        return self._app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        app = self._app or self._build()
        await app(scope, receive, send)

    def __repr__(self) -> str:
        return "storepulse.dashboard.app:create_app (built on first request)"


class StorePulsePlugin(AirflowPlugin):
    name = "storepulse"
    fastapi_apps = [  # noqa: RUF012 (the plugin interface declares class attributes)
        {"app": LazyDashboard(), "url_prefix": URL_PREFIX, "name": "StorePulse dashboard"}
    ]
    fastapi_root_middlewares = [  # noqa: RUF012
        {
            "middleware": ExecutionApiWarmUp,
            "args": [],
            "kwargs": {},
            "name": "execution API warm-up",
        }
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "Dashboard",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "storepulse-dashboard",
        }
    ]
