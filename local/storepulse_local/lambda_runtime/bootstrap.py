"""A Lambda worker's entry point: ``python -I -S -u bootstrap.py``, started by ``worker.Worker``.

Standard library only: isolated (``-I``) and without ``site`` (``-S``), the interpreter sees
nothing of the runtime's virtualenv. The import path becomes what Lambda's Python runtime gives:
the unpacked deployment package (``LAMBDA_TASK_ROOT``), then the runtime-provided packages
(``LAMBDA_RUNTIME_DIR``: boto3, botocore and their dependencies), then the standard library.

Protocol (JSON lines): the worker imports the handler and writes ``{"ready": true}`` or
``{"error": {...}}`` (then exits, as a failed init does); then, for each line
``{"request_id", "remaining_ms", "invoked_function_arn", "event"}`` read, it writes
``{"response": ...}`` or ``{"error": {"errorMessage", "errorType", "stackTrace"}}``. The protocol
uses private copies of fds 0 and 1: the handler's stdout and stderr both go to fd 2, which the
runtime logs, and its stdin is /dev/null.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import IO, Any

# Test-only (``make test-clock``): the runtime passes its PYTHONPATH and site-packages here when
# STOREPULSE_CLOCK_SHIFT_SECONDS is set, so this worker's clock is shifted like every other.
CLOCK_SHIFT_PATH = "_STOREPULSE_CLOCK_SHIFT_PATH"
# Local only (``worker.abi_shim``): this interpreter's builds of packages the zip holds compiled
# for another Python, put before the package.
ABI_SHIM_PATH = "_STOREPULSE_ABI_SHIM"


def _shift_clock() -> None:
    paths = os.environ.pop(CLOCK_SHIFT_PATH, "")
    shift = os.environ.pop("STOREPULSE_CLOCK_SHIFT_SECONDS", "")
    if not (paths and shift):
        return
    saved, loaded = list(sys.path), set(sys.modules)
    borrowed = paths.split(os.pathsep)
    sys.path[:0] = borrowed
    os.environ["STOREPULSE_CLOCK_SHIFT_SECONDS"] = shift  # read by sitecustomize
    try:
        importlib.import_module("sitecustomize")
    finally:
        del os.environ["STOREPULSE_CLOCK_SHIFT_SECONDS"]
        sys.path[:] = saved
    # Only time_machine stays (it keeps the clock shifted): the handler must not find pytest,
    # say, already imported from the runtime's virtualenv.
    for name in set(sys.modules) - loaded:
        origin = getattr(sys.modules[name], "__file__", None) or ""
        if not name.startswith(("time_machine", "_time_machine")) and origin.startswith(
            tuple(borrowed)
        ):
            del sys.modules[name]


class Context:
    """Lambda's context object (attributes as AWS's Python runtime sets them)."""

    def __init__(self, request_id: str, remaining_ms: int, invoked_function_arn: str) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.client_context = None
        self.identity = None
        self._deadline = time.monotonic() + remaining_ms / 1000  # monotonic: no clock shift

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def error(error_type: str, message: str, exc: BaseException | None = None) -> dict[str, Any]:
    stack = traceback.format_tb(exc.__traceback__) if exc is not None else []
    return {"errorMessage": message, "errorType": error_type, "stackTrace": stack}


def load_handler(name: str) -> Any:
    """Import the handler as AWS's runtime does, with its error types and messages."""
    module_name, _, function_name = name.rpartition(".")
    if not module_name:
        raise InitError(error("Runtime.MalformedHandlerName", f"Bad handler '{name}'"))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        message = f"Unable to import module '{module_name}': {exc}"
        raise InitError(error("Runtime.ImportModuleError", message, exc)) from exc
    except SyntaxError as exc:
        message = f"Syntax error in module '{module_name}': {exc}"
        raise InitError(error("Runtime.UserCodeSyntaxError", message, exc)) from exc
    except Exception as exc:
        raise InitError(error(type(exc).__name__, str(exc), exc)) from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        message = f"Handler '{function_name}' missing on module '{module_name}'"
        raise InitError(error("Runtime.HandlerNotFound", message))
    return function


class InitError(Exception):
    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload["errorMessage"])
        self.payload = payload


def send(channel: IO[str], message: dict[str, Any]) -> None:
    channel.write(json.dumps(message) + "\n")
    channel.flush()


def invoke(handler: Any, request: dict[str, Any]) -> dict[str, Any]:
    context = Context(
        request["request_id"], request["remaining_ms"], request["invoked_function_arn"]
    )
    try:
        response = handler(request["event"], context)
    except Exception as exc:
        print(f"[ERROR] {type(exc).__name__}: {exc}", file=sys.stderr)
        traceback.print_exc()
        return {"error": error(type(exc).__name__, str(exc), exc)}
    try:
        json.dumps(response)
    except (TypeError, ValueError) as exc:
        return {"error": error("Runtime.MarshalError", f"Unable to marshal response: {exc}")}
    return {"response": response}


def main() -> None:
    _shift_clock()
    shim = os.environ.pop(ABI_SHIM_PATH, "")
    task_root, runtime_dir = os.environ["LAMBDA_TASK_ROOT"], os.environ["LAMBDA_RUNTIME_DIR"]
    sys.path[:0] = [*([shim] if shim else []), task_root, runtime_dir]
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # print() and logging to stdout end in the runtime's log, not the protocol
    os.chdir(os.environ["LAMBDA_TASK_ROOT"])
    try:
        handler = load_handler(os.environ["_HANDLER"])
    except InitError as exc:
        print(f"[ERROR] {exc.payload['errorType']}: {exc}", file=sys.stderr)
        send(replies, {"error": exc.payload})
        return
    send(replies, {"ready": True})
    for line in requests:
        send(replies, invoke(handler, json.loads(line)))


if __name__ == "__main__":
    main()
