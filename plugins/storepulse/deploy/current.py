"""What ``deploy_realtime_stack`` would deploy now, and whether the stack already is exactly that.

The DAG builds each function's zip (deterministic: unchanged code, unchanged hash and key) and
deploys the template with the parameters naming those keys; a stack that has this template and
these parameters is left alone. ``make up`` asks the same question before it triggers the DAG:
a restart on a restored, current stack need not wait for a no-op run (minutes on a loaded
machine). One answer for both: the DAG's tasks and the check share these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from storepulse.config import REPO_ROOT
from storepulse.deploy.package import (
    BuiltPackage,
    artifact_key,
    artifacts_bucket,
    build_lambda_zip,
    function_name,
)
from storepulse.deploy.stack import (
    describe_stack,
    function_runtime,
    is_deployed,
    load_parameters,
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
    keys = {
        directory: artifact_key(
            function_package(directory, build_dir, template_body),
            function_name(REPO_ROOT / "lambdas" / directory),
        )
        for directory in CODE_KEY_PARAMETERS
    }
    parameters = load_parameters(
        env,
        code_bucket=artifacts_bucket(env, account_id),
        code_key=keys[FUNCTION_DIR.name],
        capture_code_key=keys[CAPTURE_DIR.name],
    )
    if not is_deployed(cfn, stack, template_body, parameters):
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
