"""The local Lambda runtime's workers and package cache: a deployed package runs in its own
interpreter, with only the package and the runtime-provided libraries on its import path."""

from __future__ import annotations

import io
import logging
import os
import textwrap
import time
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from storepulse.config import REPO_ROOT
from storepulse_local.lambda_context import LambdaContext
from storepulse_local.lambda_runtime.common import FunctionError, LambdaRuntimeError
from storepulse_local.lambda_runtime.package_cache import PackageCache, code_sha256
from storepulse_local.lambda_runtime.worker import (
    DeployedFunction,
    FunctionSpec,
    link_runtime_provided,
)

FUNCTION = "storepulse-dev-probe"
ROLE_ARN = "arn:aws:iam::123456789012:role/probe"
KEYS = {"AWS_ACCESS_KEY_ID": "ASIAROLE", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"}

PROBE = """
import importlib.util, os, sys

print("hello from the handler")  # the runtime's log, never the protocol channel
CALLS = []

def handler(event, context):
    CALLS.append(event)
    if event.get("raise"):
        raise ValueError("cannot digest this record")
    if event.get("exit"):
        os._exit(3)
    if event.get("sleep"):
        import time
        time.sleep(event["sleep"])
    if event.get("unmarshallable"):
        return {"when": object()}
    return {
        "pid": os.getpid(),
        "calls": len(CALLS),
        "path": sys.path,
        "environ": dict(os.environ),
        "importable": {
            name: importlib.util.find_spec(name) is not None
            for name in ("boto3", "botocore", "dateutil", "storepulse", "pydantic", "pytest")
        },
        "context": {
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "remaining": context.get_remaining_time_in_millis(),
        },
    }
"""


def zipped(**files: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, textwrap.dedent(text))
    return buffer.getvalue()


@pytest.fixture
def cache(tmp_path: Path) -> PackageCache:
    return PackageCache(tmp_path / "code")


@pytest.fixture
def runtime_dir(tmp_path: Path) -> Path:
    return link_runtime_provided(tmp_path / "runtime-provided")


class Deployer:
    def __init__(self, cache: PackageCache, runtime_dir: Path) -> None:
        self.cache, self.runtime_dir = cache, runtime_dir
        self.assumed: list[str] = []
        self.functions: list[DeployedFunction] = []

    def spec(self, code: bytes, **overrides: Any) -> FunctionSpec:
        sha = code_sha256(code)
        spec = FunctionSpec(
            name=FUNCTION,
            arn=f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}",
            handler="handler.handler",
            code_sha256=sha,
            package_dir=self.cache.unpacked(sha, lambda: code),
            role_arn=ROLE_ARN,
            region="eu-west-1",
            environment={"GREETING": "hello"},
            memory_size=256,
            timeout=30,
        )
        return replace(spec, **overrides)

    def credentials(self, spec: FunctionSpec) -> dict[str, str]:
        self.assumed.append(spec.role_arn)
        return KEYS

    def deploy(self, code: bytes, lifetime: float = 3300, **overrides: Any) -> DeployedFunction:
        function = DeployedFunction(
            self.spec(code, **overrides), self.credentials, self.runtime_dir, lifetime
        )
        self.functions.append(function)
        return function


@pytest.fixture
def deployer(cache: PackageCache, runtime_dir: Path) -> Iterator[Deployer]:
    deployer = Deployer(cache, runtime_dir)
    yield deployer
    for function in deployer.functions:
        function.close()


def invoke(function: DeployedFunction, event: dict[str, Any] | None = None, timeout: int = 30):
    return function(event or {}, LambdaContext(FUNCTION, timeout_seconds=timeout))


# --- package cache ------------------------------------------------------------------------


def test_the_cache_unpacks_a_package_once_per_code_sha256(cache: PackageCache) -> None:
    code = zipped(**{"handler.py": "X = 1\n", "lib/data.txt": "d"})
    fetches: list[int] = []

    def fetch() -> bytes:
        fetches.append(1)
        return code

    folder = cache.unpacked(code_sha256(code), fetch)
    assert (folder / "handler.py").read_text() == "X = 1\n"
    assert (folder / "lib" / "data.txt").read_text() == "d"
    assert cache.unpacked(code_sha256(code), fetch) == folder
    assert len(fetches) == 1

    redeployed = zipped(**{"handler.py": "X = 2\n"})  # a new CodeSha256: fetched again
    other = cache.unpacked(code_sha256(redeployed), lambda: redeployed)
    assert other != folder and (other / "handler.py").read_text() == "X = 2\n"


def test_the_cache_refuses_code_that_does_not_match_its_hash(cache: PackageCache) -> None:
    deployed, tampered = zipped(**{"handler.py": "X = 1\n"}), zipped(**{"handler.py": "X = 3\n"})
    with pytest.raises(LambdaRuntimeError, match="SHA-256"):
        cache.unpacked(code_sha256(deployed), lambda: tampered)
    assert not cache.path(code_sha256(deployed)).exists()


# --- workers ------------------------------------------------------------------------------


def test_the_handler_runs_isolated_with_lambdas_environment(
    deployer: Deployer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="storepulse_local.lambda_runtime")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("SOMETHING_OF_THE_RUNTIME", "leaked")
    function = deployer.deploy(zipped(**{"handler.py": PROBE}))
    first, second = invoke(function), invoke(function)

    assert (first["pid"], first["calls"], second["calls"]) == (second["pid"], 1, 2)  # warm
    assert function.cold_starts == 1 and deployer.assumed == [ROLE_ARN]
    assert first["path"][:2] == [str(function.spec.package_dir), str(deployer.runtime_dir)]
    assert not any("site-packages" in p for p in first["path"])
    assert first["importable"] == {
        "boto3": True,
        "botocore": True,
        "dateutil": True,
        "storepulse": False,  # not in this zip
        "pydantic": False,
        "pytest": False,
    }
    environ = first["environ"]
    assert environ["GREETING"] == "hello"
    assert {k: environ[k] for k in KEYS} == KEYS
    assert (environ["AWS_REGION"], environ["AWS_DEFAULT_REGION"]) == ("eu-west-1", "eu-west-1")
    assert environ["AWS_LAMBDA_FUNCTION_NAME"] == FUNCTION
    assert environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert environ["_HANDLER"] == "handler.handler"
    assert environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1"
    assert "SOMETHING_OF_THE_RUNTIME" not in environ
    context = first["context"]
    assert (context["function_name"], context["memory_limit_in_mb"]) == (FUNCTION, "256")
    assert context["invoked_function_arn"] == function.spec.arn
    assert context["log_group_name"] == f"/aws/lambda/{FUNCTION}"
    assert 25_000 < context["remaining"] <= 30_000
    deadline = time.monotonic() + 5  # the handler's print reaches the log, read by a thread
    while "hello from the handler" not in caplog.messages and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "hello from the handler" in caplog.messages


def test_an_import_failure_is_reported_as_aws_does(deployer: Deployer) -> None:
    function = deployer.deploy(zipped(**{"handler.py": "import not_vendored_here\n"}))
    with pytest.raises(FunctionError) as failure:
        invoke(function)
    assert failure.value.payload["errorType"] == "Runtime.ImportModuleError"
    assert str(failure.value) == (
        "Unable to import module 'handler': No module named 'not_vendored_here'"
    )
    with pytest.raises(FunctionError):
        invoke(function)
    assert function.cold_starts == 2  # every invocation tries the init again


def test_a_missing_handler_function(deployer: Deployer) -> None:
    function = deployer.deploy(zipped(**{"handler.py": PROBE}), handler="handler.nope")
    with pytest.raises(FunctionError, match="Handler 'nope' missing on module 'handler'"):
        invoke(function)


def test_handler_errors_crashes_and_timeouts_are_function_errors(deployer: Deployer) -> None:
    function = deployer.deploy(zipped(**{"handler.py": PROBE}))
    with pytest.raises(FunctionError, match="cannot digest") as failure:
        invoke(function, {"raise": True})
    assert failure.value.error_type == "ValueError"
    assert invoke(function)["calls"] == 2  # the worker survives a handler's exception

    with pytest.raises(FunctionError, match="Runtime exited with error: exit status 3") as crash:
        invoke(function, {"exit": True})
    assert crash.value.error_type == "Runtime.ExitError"
    assert invoke(function)["calls"] == 1  # a new worker
    assert function.cold_starts == 2

    with pytest.raises(FunctionError, match=r"Task timed out after 1\.00 seconds"):
        invoke(function, {"sleep": 5}, timeout=1)
    with pytest.raises(FunctionError, match="Unable to marshal response") as marshal:
        invoke(function, {"unmarshallable": True})
    assert marshal.value.error_type == "Runtime.MarshalError"
    assert function.cold_starts == 3


def test_workers_are_replaced_before_their_credentials_expire(deployer: Deployer) -> None:
    function = deployer.deploy(zipped(**{"handler.py": PROBE}), lifetime=0)
    pids = {invoke(function)["pid"] for _ in range(2)}
    assert len(pids) == 2 and deployer.assumed == [ROLE_ARN, ROLE_ARN]


def test_a_redeploy_reaches_the_next_invocation(deployer: Deployer) -> None:
    function = deployer.deploy(zipped(**{"handler.py": PROBE}))
    before = invoke(function)
    function.update(deployer.spec(zipped(**{"handler.py": "def handler(e, c):\n    return 2\n"})))
    assert invoke(function) == 2
    assert function.cold_starts == 2
    with pytest.raises(ProcessLookupError):
        os.kill(before["pid"], 0)  # the old worker was stopped


def test_the_clock_shift_of_make_test_clock_reaches_the_worker(
    deployer: Deployer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The isolated interpreter ignores PYTHONPATH, yet its clock must agree with the tests'."""
    expected_offset = 0.0
    if not os.environ.get("STOREPULSE_CLOCK_SHIFT_SECONDS"):  # a plain run: shift the worker only
        expected_offset = 3650 * 86400.0
        monkeypatch.setenv("STOREPULSE_CLOCK_SHIFT_SECONDS", str(expected_offset))
        monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT / "tests" / "clock_shift"))
    clock = "import os, time\ndef handler(e, c):\n    return [time.time(), sorted(os.environ)]\n"
    function = deployer.deploy(zipped(**{"handler.py": clock}))
    before = time.time()
    worker_time, variables = invoke(function)
    assert abs(worker_time - before - expected_offset) < 60
    assert not any("CLOCK_SHIFT" in name for name in variables)  # not the function's business
