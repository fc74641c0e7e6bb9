"""What ``deploy_realtime_stack`` would deploy now, and whether the stack already is exactly that.

The DAG builds each function's zip (deterministic: unchanged code, unchanged hash and key) and
deploys the template with the parameters naming those keys; a stack that has this template and
these parameters is left alone. ``make up`` asks the same question before it triggers the DAG:
a restart on a restored, current stack need not wait for a no-op run (minutes on a loaded
machine). One answer for both: the DAG's tasks and the check share these functions.

The check's inputs (each function's code key, the template's parameter defaults) are recorded
under the build folder by a digest of everything they derive from (``source_digest``): a restart
whose sources are unchanged reads them in milliseconds, where deriving them imports cfn-lint
(sympy), parses uv.lock and the handlers' imports and hashes the vendored wheels (5-8 s of CPU:
over a minute of a restart at a load of 24).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from storepulse.config import REPO_ROOT
from storepulse.deploy.package import (
    LIBRARY_DIR,
    LOCK_FILE,
    BuiltPackage,
    artifact_key,
    artifacts_bucket,
    build_lambda_zip,
    find_uv,
    function_name,
    uv_version,
)
from storepulse.deploy.stack import (
    describe_stack,
    function_runtime,
    is_deployed,
    load_parameters,
    parameter_defaults,
    parse_template,
)

TEMPLATE: Final = REPO_ROOT / "infra" / "cloudformation" / "realtime.yaml"
FUNCTION_DIR: Final = REPO_ROOT / "lambdas" / "stream_processor"
CAPTURE_DIR: Final = REPO_ROOT / "lambdas" / "change_capture"
# Each function's zip is built for the Runtime the template gives it, found by its code key.
CODE_KEY_PARAMETERS: Final = {
    FUNCTION_DIR.name: "LambdaCodeKey",
    CAPTURE_DIR.name: "ChangeCaptureCodeKey",
}


def function_package(function_dir: str, build_dir: Path, template_body: str) -> BuiltPackage:
    """The function's zip, built for its template Runtime (reused when its inputs are unchanged)."""
    runtime = function_runtime(parse_template(template_body), CODE_KEY_PARAMETERS[function_dir])
    return build_lambda_zip(REPO_ROOT / "lambdas" / function_dir, build_dir, runtime=runtime)


@dataclass(frozen=True)
class Verdict:
    current: bool
    reason: str  # one line, for the log


def stack_is_current(
    cfn: Any, stack_name: str, *, env: str, account_id: str, build_dir: Path
) -> Verdict:
    """Whether ``stack_name`` is settled with the template, parameters and code keys a deploy
    would give it now (``cfn``: a boto3 CloudFormation client)."""
    stack = describe_stack(cfn, stack_name)
    if stack is None:
        return Verdict(False, f"stack {stack_name} does not exist")
    template_body = TEMPLATE.read_text()
    inputs = deploy_inputs(build_dir, template_body)
    keys = inputs.keys
    parameters = load_parameters(
        env,
        code_bucket=artifacts_bucket(env, account_id),
        code_key=keys[FUNCTION_DIR.name],
        capture_code_key=keys[CAPTURE_DIR.name],
    )
    if not is_deployed(cfn, stack, template_body, parameters, inputs.defaults):
        return Verdict(
            False,
            f"stack {stack_name} ({stack['StackStatus']}) differs from {TEMPLATE.name}"
            " with these parameters and code",
        )
    code = ", ".join(f"{name} {key.rsplit('/', 1)[-1][:12]}" for name, key in keys.items())
    return Verdict(
        True,
        f"stack {stack_name} is {stack['StackStatus']} with {TEMPLATE.name}, its parameters "
        f"and the functions' code ({code})",
    )


@dataclass(frozen=True)
class DeployInputs:
    keys: dict[str, str]  # handler folder -> its zip's artifact key
    defaults: dict[str, str]  # the template's parameter defaults


def deploy_inputs(build_dir: Path, template_body: str) -> DeployInputs:
    """What a deploy of ``template_body`` would pass for the code, read from the record of the
    same sources (module doc) or derived (building the zips) and recorded."""
    record = build_dir / f".deploy-inputs-{source_digest(template_body)[:32]}.json"
    try:
        return DeployInputs(**json.loads(record.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        pass
    inputs = DeployInputs(
        keys={
            directory: artifact_key(
                function_package(directory, build_dir, template_body),
                function_name(REPO_ROOT / "lambdas" / directory),
            )
            for directory in CODE_KEY_PARAMETERS
        },
        defaults=parameter_defaults(template_body),
    )
    build_dir.mkdir(parents=True, exist_ok=True)
    staging = record.with_suffix(f".{os.getpid()}.tmp")
    staging.write_text(json.dumps(asdict(inputs)))
    staging.replace(record)  # a concurrent reader sees all of it or none
    return inputs


def source_digest(template_body: str) -> str:
    """A digest of every input of the functions' zips: the template (their Runtimes), the
    handler folders, the whole storepulse library (the modules they import, and the packaging
    code itself), uv.lock (the vendored pins) and uv's version (the wheels it picks)."""
    digest = hashlib.sha256(template_body.encode())
    digest.update(uv_version(find_uv()).encode())
    for path in [LOCK_FILE, *_files(FUNCTION_DIR), *_files(CAPTURE_DIR), *_files(LIBRARY_DIR)]:
        digest.update(f"\0{path}\0".encode() + path.read_bytes())
    return digest.hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(
        path for path in root.rglob("*") if path.is_file() and "__pycache__" not in path.parts
    )
