"""What every part of the Lambda runtime shares: its logger, its error and the client factory."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

# One logger for the whole runtime, named after the package (under ``python -m`` the CLI's
# __name__ is "__main__").
log = logging.getLogger("storepulse_local.lambda_runtime")

ClientFactory = Callable[[str], Any]


class LambdaRuntimeError(RuntimeError):
    """The runtime cannot do what it was asked (handler missing, state directory in use...)."""


class FunctionError(Exception):
    """The function failed as AWS reports it (``payload``: errorMessage, errorType...)."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload.get("errorMessage", ""))
        self.payload = payload

    @property
    def error_type(self) -> str:
        return str(self.payload.get("errorType") or "Unhandled")
