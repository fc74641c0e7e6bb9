"""The real-time stack: its name and parameters, the deployed stack's description and outputs,
and create-or-update through a change set.

Deploy (:func:`deploy_stack`). If the stack exists with the same template and parameters, nothing
is done: AWS rejects an empty change set (the embedded AWS accepts it), so we decide ourselves.
Otherwise one change set (CREATE or UPDATE) is created, its changes logged, executed and waited
for. A failure names the failing resources with CloudFormation's reasons (the stack's
``*_FAILED`` events). On AWS a failed update rolls back (``UPDATE_ROLLBACK_COMPLETE``): the
previous version of every resource keeps serving, and the task fails. The embedded AWS never rolls
back and records no resource events: there the failing resource is named by matching the error
against the template, and a stack left in progress fails the task after the timeout. The outputs
are CloudFormation's own (DescribeStacks), on AWS and on the embedded AWS alike.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import ClientError, WaiterError

from storepulse.config import REPO_ROOT
from storepulse.deploy.intrinsics import Intrinsics, pseudo_parameters, scalar_text

log = logging.getLogger(__name__)

TEMPLATE: Final = REPO_ROOT / "infra" / "cloudformation" / "realtime.yaml"
PARAMETERS_DIR: Final = REPO_ROOT / "infra" / "cloudformation" / "parameters"
CAPABILITIES: Final = ("CAPABILITY_IAM",)
# Parameters the deploy DAG passes itself (the zip's location changes with every build).
CODE_PARAMETERS: Final = frozenset({"LambdaCodeBucket", "LambdaCodeKey"})
# A parameter file value an operator must replace before the environment can be deployed.
PLACEHOLDER: Final = "REPLACE-ME"

SUCCESS: Final = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE"})
# States in which the current template and parameters are what is deployed.
SETTLED: Final = SUCCESS | {
    "UPDATE_ROLLBACK_COMPLETE",
    "IMPORT_COMPLETE",
    "IMPORT_ROLLBACK_COMPLETE",
}
NO_CHANGES: Final = ("didn't contain changes", "No updates are to be performed")
STACK_TYPE: Final = "AWS::CloudFormation::Stack"
# The waits, as the provider's operators state them: seconds between checks, checks at most.
# The first check is immediate (the embedded AWS is done within the call; AWS takes minutes).
WAITER_DELAY: Final = 10.0
WAITER_MAX_ATTEMPTS: Final = 180

Clients = Callable[[str], Any]  # service name -> boto3 client


class DeployError(RuntimeError):
    """The stack could not be deployed, verified or smoke-tested; the message says why."""


@dataclass(frozen=True)
class ResourceFailure:
    logical_id: str
    resource_type: str
    status: str
    reason: str

    def __str__(self) -> str:
        return f"{self.logical_id} ({self.resource_type}) {self.status}: {self.reason}"


class ParametersError(DeployError):
    """An environment's stack parameters are missing or incomplete."""


class StackDeployError(DeployError):
    """A change set failed; ``failures`` names the resources that CloudFormation blamed."""

    def __init__(self, message: str, failures: Sequence[ResourceFailure] = ()) -> None:
        lines = [message, *(f"  {f}" for f in failures)]
        super().__init__("\n".join(lines))
        self.failures = list(failures)


# ------------------------------------------------------------------------------ names, parameters


def stack_name(env: str) -> str:
    return f"storepulse-{env}-realtime"


def load_parameters(
    env: str,
    *,
    code_bucket: str,
    code_key: str,
    capture_code_key: str | None = None,
    parameters_dir: Path = PARAMETERS_DIR,
) -> list[dict[str, str]]:
    """The stack's parameters from ``parameters/<env>.json``, plus the code location, which every
    build changes (``capture_code_key``: the change capture's zip; without it the stack has
    no change capture). Every environment has its own file: none silently inherits another's (dev's
    ``EnforceTls=false`` exists for the embedded AWS, not for production)."""
    path = parameters_dir / f"{env}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in parameters_dir.glob("*.json"))) or "none"
        raise ParametersError(
            f"no stack parameters for environment {env!r}: create {path} (environments with "
            f"parameters: {known}); each environment states its own EnforceTls and AlertEmail"
        )
    values = {p["ParameterKey"]: p["ParameterValue"] for p in json.loads(path.read_text())}
    if values.get("EnvName") != env:
        raise ParametersError(f"{path} sets EnvName={values.get('EnvName')!r}, not {env!r}")
    unset = sorted(k for k, v in values.items() if v.startswith(PLACEHOLDER))
    if unset:
        raise ParametersError(
            f"{path} leaves {', '.join(unset)} as a placeholder ({PLACEHOLDER}...): "
            f"set the real value before deploying {env!r}"
        )
    values |= {"LambdaCodeBucket": code_bucket, "LambdaCodeKey": code_key}
    if capture_code_key:
        values["ChangeCaptureCodeKey"] = capture_code_key
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def function_runtime(template: Mapping[str, Any], code_key_parameter: str) -> str:
    """The ``Runtime`` of the template's function whose code is ``!Ref code_key_parameter``:
    what its zip's wheels are built for."""
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Lambda::Function" and props.get("Code", {}).get(
            "S3Key"
        ) == {"Ref": code_key_parameter}:
            return str(props["Runtime"])
    raise DeployError(f"no function of the template takes its code from {code_key_parameter}")


def parse_template(body: str | Mapping[str, Any]) -> dict[str, Any]:
    """A template as data, short-form tags (``!Ref``, ``!Sub``) expanded to their long form."""
    if isinstance(body, Mapping):  # boto3 decodes JSON template bodies itself
        return dict(body)
    from cfnlint.decode import cfn_yaml  # parses YAML and JSON, keeps CloudFormation's tags

    return cfn_yaml.loads(body)


def describe_stack(cfn: Any, name: str) -> dict[str, Any] | None:
    """The stack, or None if there is none by that name (deleted stacks are not found by name)."""
    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        if "does not exist" in error_message(exc):
            return None
        raise


def stack_outputs(stack: Mapping[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}


def listed_resources(cfn: Any, stack_name: str) -> dict[str, str]:
    """{logical id: physical id} of every resource the stack lists, "" where it lists none (AWS
    gives every resource of a complete stack an id; the embedded AWS lists the types it skipped
    without one)."""
    found: dict[str, str] = {}
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack_name):
        for summary in page["StackResourceSummaries"]:
            if summary.get("LogicalResourceId"):
                found[summary["LogicalResourceId"]] = summary.get("PhysicalResourceId") or ""
    return found


def physical_ids(cfn: Any, stack_name: str) -> dict[str, str]:
    """{logical id: physical id} of the stack's resources that have one."""
    return {lid: pid for lid, pid in listed_resources(cfn, stack_name).items() if pid}


# ------------------------------------------------------------------------------ deploy


@dataclass(frozen=True)
class ResourceChange:
    action: str
    logical_id: str
    resource_type: str
    replacement: str | None = None

    def __str__(self) -> str:
        replacement = f"  replacement: {self.replacement}" if self.replacement else ""
        return f"{self.action:<7} {self.logical_id:<28} {self.resource_type}{replacement}"


@dataclass(frozen=True)
class DeployResult:
    """``action``: ``none`` (already deployed), ``create`` or ``update``."""

    stack_name: str
    action: str
    status: str
    change_set: str | None
    changes: tuple[ResourceChange, ...]
    outputs: dict[str, str]

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable form (for XCom)."""
        return {**asdict(self), "changes": [asdict(c) for c in self.changes]}


def deploy_stack(
    cfn: Any,
    *,
    stack_name: str,
    template_body: str,
    parameters: Sequence[Mapping[str, str]],
    capabilities: Sequence[str] = CAPABILITIES,
    waiter_delay: float = WAITER_DELAY,
    waiter_max_attempts: int = WAITER_MAX_ATTEMPTS,
) -> DeployResult:
    """Create or update ``stack_name`` through one change set (see the module doc); each wait
    (the change set, then its execution) checks at most ``waiter_max_attempts`` times,
    ``waiter_delay`` seconds apart."""
    parameters = [dict(p) for p in parameters]
    stack = describe_stack(cfn, stack_name)
    _check_deployable(stack_name, stack)
    if stack is not None and is_deployed(cfn, stack, template_body, parameters):
        status = stack["StackStatus"]
        log.info("stack %s is %s with this template and parameters: no changes", stack_name, status)
        return _unchanged(stack)
    kind = "UPDATE" if stack and stack["StackStatus"] != "REVIEW_IN_PROGRESS" else "CREATE"
    change_set = _change_set_name(template_body, parameters)
    cfn.create_change_set(
        StackName=stack_name,
        ChangeSetName=change_set,
        ChangeSetType=kind,
        TemplateBody=template_body,
        Parameters=parameters,
        Capabilities=list(capabilities),
        Description="storepulse deploy_realtime_stack",
    )
    wait = Wait(waiter_delay, waiter_max_attempts)
    if not _wait_for_change_set(cfn, stack_name, change_set, wait):
        cfn.delete_change_set(StackName=stack_name, ChangeSetName=change_set)
        log.info("change set %s contains no changes: nothing to execute", change_set)
        return _unchanged(describe_stack(cfn, stack_name) or {})
    changes = _changes(cfn, stack_name, change_set)
    _log_changes(change_set, kind, changes)
    final = _execute(cfn, stack_name, change_set, template_body, parameters, wait)
    log.info("stack %s: %s (%d resource changes)", stack_name, final["StackStatus"], len(changes))
    return DeployResult(
        stack_name=stack_name,
        action=kind.lower(),
        status=final["StackStatus"],
        change_set=change_set,
        changes=tuple(changes),
        outputs=stack_outputs(final),
    )


def deployed_outputs(cfn: Any, name: str) -> dict[str, str]:
    """The outputs of the deployed stack ``name``, as CloudFormation computed them."""
    stack = describe_stack(cfn, name)
    if stack is None:
        raise DeployError(f"stack {name} is not deployed (run the DAG deploy_realtime_stack)")
    return stack_outputs(stack)


def _unchanged(stack: Mapping[str, Any]) -> DeployResult:
    return DeployResult(
        stack_name=stack["StackName"],
        action="none",
        status=stack["StackStatus"],
        change_set=None,
        changes=(),
        outputs=stack_outputs(stack),
    )


def _check_deployable(name: str, stack: Mapping[str, Any] | None) -> None:
    """Refuse stacks that a change set cannot (or must not) touch now."""
    if stack is None or stack["StackStatus"] in SETTLED | {"REVIEW_IN_PROGRESS"}:
        return
    status = stack["StackStatus"]
    if status == "ROLLBACK_COMPLETE":
        hint = "its creation failed and was rolled back: run teardown_realtime_stack first"
    elif status.endswith("_IN_PROGRESS"):
        hint = "another operation is running (on the embedded AWS: a failed one, restart it)"
    else:
        hint = "repair or delete it first (teardown_realtime_stack)"
    reason = stack.get("StackStatusReason")
    raise DeployError(f"stack {name} is {status}{f' ({reason})' if reason else ''}: {hint}")


def is_deployed(
    cfn: Any,
    stack: Mapping[str, Any],
    template_body: str,
    parameters: list[dict[str, str]],
    defaults: Mapping[str, str] | None = None,
) -> bool:
    """True when the stack is settled with exactly this template and these parameters
    (``defaults``: the template's ``parameter_defaults``, when the caller has them)."""
    if stack["StackStatus"] not in SETTLED:
        return False
    deployed = cfn.get_template(StackName=stack["StackName"], TemplateStage="Original")
    body = deployed["TemplateBody"]
    if isinstance(body, str) and body != template_body:
        return False
    if not isinstance(body, str) and body != json.loads(template_body):
        return False
    current = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters") or []}
    return current == _effective_parameters(template_body, parameters, defaults)


def parameter_defaults(template_body: str) -> dict[str, str]:
    """The template's parameters' ``Default`` values, as the stack reports them."""
    declared = parse_template(template_body).get("Parameters") or {}
    return {name: scalar_text(p["Default"]) for name, p in declared.items() if "Default" in p}


def _effective_parameters(
    template_body: str,
    parameters: list[dict[str, str]],
    defaults: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What the stack would report: the template's defaults overridden by ``parameters``."""
    values = dict(parameter_defaults(template_body) if defaults is None else defaults)
    return values | {p["ParameterKey"]: p["ParameterValue"] for p in parameters}


def _change_set_name(template_body: str, parameters: list[dict[str, str]]) -> str:
    digest = hashlib.sha256(
        (template_body + json.dumps(parameters, sort_keys=True)).encode()
    ).hexdigest()
    return f"deploy-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{digest[:8]}"


@dataclass(frozen=True)
class Wait:
    delay: float
    max_attempts: int

    @property
    def config(self) -> dict[str, float]:
        """boto3's ``WaiterConfig``."""
        return {"Delay": self.delay, "MaxAttempts": self.max_attempts}


def _wait_for_change_set(cfn: Any, stack_name: str, change_set: str, wait: Wait) -> bool:
    """Wait until the change set is ready (boto3's waiter); False if it holds no changes."""
    try:
        cfn.get_waiter("change_set_create_complete").wait(
            StackName=stack_name, ChangeSetName=change_set, WaiterConfig=wait.config
        )
        return True
    except WaiterError as exc:
        described = exc.last_response or {}
    status, reason = described.get("Status"), described.get("StatusReason") or ""
    if status == "FAILED" and any(marker in reason for marker in NO_CHANGES):
        return False
    if status == "FAILED":
        raise StackDeployError(f"change set {change_set} failed: {reason}")
    if status is None:  # an error response (ValidationError): the change set is gone
        error = described.get("Error", {})
        raise StackDeployError(f"change set {change_set}: {error.get('Message', described)}")
    raise DeployError(f"change set {change_set} still {status} at the timeout")


def _changes(cfn: Any, stack_name: str, change_set: str) -> list[ResourceChange]:
    pages = cfn.get_paginator("describe_change_set").paginate(
        StackName=stack_name, ChangeSetName=change_set
    )
    return [
        ResourceChange(
            action=detail.get("Action", "?"),
            logical_id=detail.get("LogicalResourceId", "?"),
            resource_type=detail.get("ResourceType", "?"),
            replacement=detail.get("Replacement"),
        )
        for page in pages
        for detail in (change.get("ResourceChange", {}) for change in page.get("Changes", []))
    ]


def _log_changes(change_set: str, kind: str, changes: list[ResourceChange]) -> None:
    counts = ", ".join(f"{n} {a}" for a, n in sorted(_count(c.action for c in changes).items()))
    counted = f" ({counts})" if counts else ""
    log.info("change set %s (%s): %d resource changes%s", change_set, kind, len(changes), counted)
    for change in changes:
        log.info("  %s", change)
    if kind == "UPDATE" and not changes:
        log.info("  (no per-resource changes listed: the embedded AWS does not describe updates)")


def _count(values: Iterator[str] | Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _execute(
    cfn: Any,
    stack_name: str,
    change_set: str,
    template_body: str,
    parameters: list[dict[str, str]],
    wait: Wait,
) -> dict[str, Any]:
    """Execute the change set and wait for a final state; raise with the failing resources."""
    marker = _latest_event_id(cfn, stack_name)
    try:
        cfn.execute_change_set(StackName=stack_name, ChangeSetName=change_set)
    except Exception as exc:  # the embedded AWS answers resource errors here, unparseable
        raise _execution_error(cfn, stack_name, template_body, parameters, exc, marker) from exc
    stack = _wait_for_stack(cfn, stack_name, marker, wait)
    if stack["StackStatus"] not in SUCCESS:
        raise _failed_stack_error(cfn, stack, marker)
    return stack


def _latest_event_id(cfn: Any, stack_name: str) -> str | None:
    events = cfn.describe_stack_events(StackName=stack_name).get("StackEvents", [])
    return events[0]["EventId"] if events else None


def _events_since(cfn: Any, stack_name: str, marker: str | None) -> list[dict[str, Any]]:
    """Events newer than ``marker``, oldest first."""
    events: list[dict[str, Any]] = []
    for page in cfn.get_paginator("describe_stack_events").paginate(StackName=stack_name):
        for event in page.get("StackEvents", []):  # newest first
            if event["EventId"] == marker:
                return events[::-1]
            events.append(event)
    return events[::-1]


def _wait_for_stack(cfn: Any, stack_name: str, marker: str | None, wait: Wait) -> dict[str, Any]:
    """The stack once the execution reached a final state (a stack event newer than ``marker``
    says so). Not boto3's ``stack_update_complete`` waiter: right after execute_change_set the
    stack may still show its previous state, ``UPDATE_COMPLETE``, which that waiter accepts."""
    for attempt in range(1, wait.max_attempts + 1):
        stack = describe_stack(cfn, stack_name)
        if stack is None:
            raise DeployError(f"stack {stack_name} disappeared during the deploy")
        status = stack["StackStatus"]
        if not status.endswith("_IN_PROGRESS") and any(
            e["ResourceType"] == STACK_TYPE and e["ResourceStatus"] == status
            for e in _events_since(cfn, stack_name, marker)
        ):
            return stack
        if attempt < wait.max_attempts:
            time.sleep(wait.delay)
    failures = _event_failures(_events_since(cfn, stack_name, marker))
    raise StackDeployError(
        f"stack {stack_name} is still {status} at the timeout"
        + ("" if failures else " (the embedded AWS never rolls a failed resource back)"),
        failures,
    )


def _event_failures(events: list[dict[str, Any]]) -> list[ResourceFailure]:
    """Resources whose events say ``*_FAILED``, in order (the first is usually the cause)."""
    return [
        ResourceFailure(
            e["LogicalResourceId"],
            e["ResourceType"],
            e["ResourceStatus"],
            e.get("ResourceStatusReason") or "no reason given",
        )
        for e in events
        if e["ResourceStatus"].endswith("_FAILED") and e["ResourceType"] != STACK_TYPE
    ]


def _failed_stack_error(cfn: Any, stack: Mapping[str, Any], marker: str | None) -> StackDeployError:
    name, status = stack["StackName"], stack["StackStatus"]
    failures = _event_failures(_events_since(cfn, name, marker))
    message = f"stack {name} ended {status}"
    if not failures and stack.get("StackStatusReason"):
        message += f": {stack['StackStatusReason']}"
    if status == "UPDATE_ROLLBACK_COMPLETE":
        message += " (the update was rolled back: the previous version keeps serving)"
    return StackDeployError(message, failures)


def _execution_error(
    cfn: Any,
    stack_name: str,
    template_body: str,
    parameters: list[dict[str, str]],
    exc: Exception,
    marker: str | None,
) -> StackDeployError:
    """Name the failing resource when execute_change_set itself raised.

    AWS reports resource failures as events. The embedded AWS raises from the call instead and
    records no resource event: the resources whose resolved properties appear in its error message
    are named then (``from the error message``)."""
    reason = _reason(exc)
    failures = _event_failures(_events_since(cfn, stack_name, marker))
    if not failures:
        stack = describe_stack(cfn, stack_name) or {}
        template = parse_template(template_body)
        values = _effective_parameters(template_body, parameters)
        intrinsics = Intrinsics(template, values, pseudo_parameters(stack), {})
        failures = [
            ResourceFailure(lid, kind, "CREATE_FAILED (from the error message)", reason)
            for lid, kind in _suspects(template, intrinsics, reason)
        ]
    unnamed = "" if failures else f": {reason} (the failing resource is not named)"
    return StackDeployError(f"executing the change set of {stack_name} failed{unnamed}", failures)


def _suspects(
    template: Mapping[str, Any], intrinsics: Intrinsics, reason: str
) -> list[tuple[str, str]]:
    found = []
    for lid, resource in template.get("Resources", {}).items():
        if not intrinsics.is_deployed(resource):
            continue
        values = intrinsics.resolved_strings(resource.get("Properties", {}))
        if any(len(v) >= 6 and v in reason for v in values):
            found.append((lid, resource["Type"]))
    return found


def _reason(exc: Exception) -> str:
    """A readable reason from a boto3 error, including the embedded AWS's unparseable ones."""
    if isinstance(exc, ClientError):
        return f"{exc.response.get('Error', {}).get('Code', '?')}: {error_message(exc)}"
    text = str(exc)
    if match := re.search(r'"message":\s*"((?:[^"\\]|\\.)*)"', text):
        kind = re.search(r'"__type":\s*"([^"]+)"', text)
        message = json.loads(f'"{match.group(1)}"')
        return f"{kind.group(1)}: {message}" if kind else message
    if match := re.search(r"<Message>(.*?)</Message>", text, re.DOTALL):
        return match.group(1).strip()
    if "500 Internal Server Error" in text:
        return "the embedded AWS answered HTTP 500 (its log holds the traceback)"
    return text[:500]


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", exc))
