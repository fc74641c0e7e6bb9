"""Running a function's deployed package in its own interpreter, as Lambda's Python runtime does.

A ``Worker`` is one execution environment: ``python -I -S -u bootstrap.py`` with the unpacked
package and the runtime-provided packages as its only import path, the function's environment
and its execution role's credentials. It imports the handler once (cold start) and then serves
invocations (warm) over JSON lines on its stdin/stdout; whatever the handler prints is logged.

A ``DeployedFunction`` is the runtime's handler for a function: each invocation takes an idle
worker or starts one (one per concurrent invocation, as Lambda scales per shard), and a worker
whose credentials are about to expire, or whose deployment was replaced, is stopped.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from storepulse_local.lambda_runtime import bootstrap
from storepulse_local.lambda_runtime.common import FunctionError, log

BOOTSTRAP: Final = Path(bootstrap.__file__)
# What AWS's Python runtime puts on the path besides the package (its /var/runtime): boto3,
# botocore and their dependencies, by distribution, linked from this virtualenv.
RUNTIME_PROVIDED: Final = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3")
RUNTIME_PROVIDED += ("python-dateutil", "six")
INIT_SECONDS: Final = 10.0  # Lambda's limit for a cold start, on top of the function's timeout
CREDENTIALS_SECONDS: Final = 3600  # assume_role's default session
CREDENTIALS_MARGIN: Final = 300.0  # a worker is replaced this long before its credentials expire
PASSED_THROUGH: Final = ("AWS_ENDPOINT_URL",)  # the local network: where AWS is
RESERVED_DEFAULTS: Final = {
    "LANG": "en_US.UTF-8",
    "TZ": ":UTC",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
}


def link_runtime_provided(target: Path) -> Path:
    """``target`` holds links to the runtime-provided packages (and their metadata)."""
    staging = target.with_name(target.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in RUNTIME_PROVIDED:
        distribution = importlib.metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in distribution.files or ()}
        for top in tops - {"..", "__pycache__", "bin"}:
            source = Path(str(distribution.locate_file(top)))
            if source.exists() and not (staging / top).exists():
                (staging / top).symlink_to(source)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


@functools.cache
def abi_shim(package_dir: Path) -> Path | None:
    """Links to this virtualenv's copies of the packages whose compiled extensions the zip holds
    for another Python (a python3.12 function's pyarrow: this runtime has one interpreter, the
    platform's). The worker puts them before the package; None when every extension fits.
    A recorded gap (infra/local/embedded_aws_gaps.json): the zip's own binaries are not run."""
    own = f".cpython-{sys.version_info[0]}{sys.version_info[1]}-"
    foreign = {
        extension.relative_to(package_dir).parts[0]
        for extension in package_dir.rglob("*.cpython-*.so")
        if own not in extension.name
    }
    if not foreign:
        return None
    shim = package_dir.with_name(package_dir.name + ".abi-shim")
    if not shim.is_dir():
        staging = shim.with_name(shim.name + f".{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        site = Path(sysconfig.get_paths()["platlib"])
        for top in sorted(foreign):
            if (site / top).exists():
                (staging / top).symlink_to(site / top)
        try:
            staging.rename(shim)
        except OSError:  # another worker made it first
            shutil.rmtree(staging, ignore_errors=True)
    return shim


@dataclass(frozen=True)
class FunctionSpec:
    """One deployment of one function: what its workers are started from."""

    name: str
    arn: str
    handler: str
    code_sha256: str
    package_dir: Path
    role_arn: str
    region: str
    environment: Mapping[str, str]
    memory_size: int = 128
    timeout: int = 3
    version: str = "$LATEST"


Credentials = Callable[[FunctionSpec], Mapping[str, str]]


def function_environment(
    spec: FunctionSpec, credentials: Mapping[str, str], runtime_dir: Path
) -> dict[str, str]:
    """The worker's whole environment: Lambda's, the function's variables and the role's keys."""
    environment = dict(RESERVED_DEFAULTS) | dict(spec.environment)
    environment |= {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    environment |= {
        "AWS_REGION": spec.region,
        "AWS_DEFAULT_REGION": spec.region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info[0]}.{sys.version_info[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
        "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"local/{spec.code_sha256[:8]}",
        "LAMBDA_TASK_ROOT": str(spec.package_dir),
        "LAMBDA_RUNTIME_DIR": str(runtime_dir),
        "_HANDLER": spec.handler,
        **credentials,
    }
    shim = abi_shim(spec.package_dir)
    if shim is not None:
        environment[bootstrap.ABI_SHIM_PATH] = str(shim)
    shift = os.environ.get("STOREPULSE_CLOCK_SHIFT_SECONDS")
    if shift:  # make test-clock: the isolated interpreter ignores PYTHONPATH, bootstrap does not
        paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
        paths += [p for p in sys.path if p.endswith("site-packages")]  # time_machine
        environment["STOREPULSE_CLOCK_SHIFT_SECONDS"] = shift
        environment[bootstrap.CLOCK_SHIFT_PATH] = os.pathsep.join(
            str(Path(p).resolve()) for p in paths if p
        )
    return environment


class Worker:
    """One interpreter running one deployment; ``invoke`` returns the worker's reply."""

    def __init__(self, spec: FunctionSpec, environment: Mapping[str, str], lifetime: float) -> None:
        self.spec = spec
        self.retire_at = time.monotonic() + lifetime
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._logger = logging.getLogger(f"{log.name}.function.{spec.name}")
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-u", str(BOOTSTRAP)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(environment),
            cwd=spec.package_dir,
            text=True,
            encoding="utf-8",
        )
        assert self.process.stdout and self.process.stderr
        for target, stream in (
            (self._read_replies, self.process.stdout),
            (self._read_log, self.process.stderr),
        ):
            threading.Thread(target=target, args=(stream,), daemon=True).start()

    def _read_replies(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self._replies.put(json.loads(line))
        self._replies.put(None)  # the process ended

    def _read_log(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self._logger.info("%s", line.rstrip("\n"))

    def init(self) -> dict[str, Any] | None:
        """Wait for the handler's import: None when ready, else the error AWS would report."""
        reply = self._reply(self.spec.timeout + INIT_SECONDS, "")
        return None if reply is None else reply["error"]

    def invoke(self, event: Any, request_id: str, remaining_ms: int) -> dict[str, Any]:
        request = {
            "request_id": request_id,
            "remaining_ms": remaining_ms,
            "invoked_function_arn": self.spec.arn,
            "event": event,
        }
        assert self.process.stdin
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except OSError:
            pass  # it died: the reply queue says so
        return self._reply(remaining_ms / 1000, request_id) or {}

    def _reply(self, seconds: float, request_id: str) -> dict[str, Any] | None:
        try:
            reply = self._replies.get(timeout=max(seconds, 0.001))
        except queue.Empty:
            self.stop()
            message = f"RequestId: {request_id} Task timed out after {seconds:.2f} seconds"
            return {"error": {"errorMessage": message, "errorType": "Sandbox.Timedout"}}
        if reply is None:
            code = self.process.wait()
            message = (
                f"RequestId: {request_id} Error: Runtime exited with error: exit status {code}"
            )
            return {"error": {"errorMessage": message, "errorType": "Runtime.ExitError"}}
        return None if reply.get("ready") else reply

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdin:  # stdout and stderr: their readers close them at EOF
            with contextlib.suppress(OSError):
                self.process.stdin.close()


class DeployedFunction:
    """The runtime's handler for a function: runs each invocation in a worker."""

    def __init__(
        self,
        spec: FunctionSpec,
        credentials: Credentials,
        runtime_dir: Path,
        worker_lifetime: float = CREDENTIALS_SECONDS - CREDENTIALS_MARGIN,
    ) -> None:
        self.spec = spec
        self.cold_starts = 0
        self._credentials = credentials
        self._runtime_dir = runtime_dir
        self._lifetime = worker_lifetime  # the credentials' lifetime, less a margin
        self._idle: list[Worker] = []
        self._lock = threading.Lock()

    def update(self, spec: FunctionSpec) -> None:
        """A redeploy or a new configuration: later invocations start new workers."""
        with self._lock:
            if spec == self.spec:
                return
            self.spec, retired, self._idle = spec, self._idle, []
        log.info("%s: new deployment (CodeSha256 %s)", spec.name, spec.code_sha256)
        for worker in retired:
            worker.stop()

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        worker, init_error = self._acquire()
        if init_error is not None:
            raise FunctionError(init_error)
        try:
            remaining = context.get_remaining_time_in_millis()
            reply = worker.invoke(event, context.aws_request_id, remaining)
        finally:
            self._release(worker)
        if "error" in reply:
            raise FunctionError(reply["error"])
        return reply.get("response")

    def _acquire(self) -> tuple[Worker, dict[str, Any] | None]:
        with self._lock:
            spec = self.spec
            while self._idle:
                worker = self._idle.pop()
                if worker.alive and time.monotonic() < worker.retire_at:
                    return worker, None
                worker.stop()
        environment = function_environment(spec, self._credentials(spec), self._runtime_dir)
        worker = Worker(spec, environment, self._lifetime)
        self.cold_starts += 1
        init_error = worker.init()
        if init_error is not None:
            worker.stop()  # Lambda starts a new environment for the next invocation
        return worker, init_error

    def _release(self, worker: Worker) -> None:
        with self._lock:
            if worker.alive and worker.spec == self.spec:
                self._idle.append(worker)
                return
        worker.stop()  # crashed, timed out, or its deployment was replaced

    def close(self) -> None:
        with self._lock:
            workers, self._idle = self._idle, []
        for worker in workers:
            worker.stop()
