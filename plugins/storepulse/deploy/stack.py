"""The real-time stack: create-or-update through a change set, verification through each
service's own API, the end-to-end smoke test, and what a teardown leaves behind.

Deploy (:func:`deploy_stack`). If the stack exists with the same template and parameters, nothing
is done: AWS rejects an empty change set (the embedded AWS accepts it), so we decide ourselves.
Otherwise one change set (CREATE or UPDATE) is created, its changes logged, executed and waited
for. A failure names the failing resources with CloudFormation's reasons (the stack's
``*_FAILED`` events). On AWS a failed update rolls back (``UPDATE_ROLLBACK_COMPLETE``): the
previous version of every resource keeps serving, and the task fails. The embedded AWS never rolls
back and records no resource events: there the failing resource is named by matching the error
against the template, and a stack left in progress fails the task after the timeout.

Verify (:func:`verify_stack`). Every resource of the deployed template is looked up with its
service (the stream is ACTIVE, the tables have the key layout of ``storepulse.layout``, the
function has the template's handler, runtime and environment, ...). CloudFormation saying
``CREATE_COMPLETE`` is not enough: the embedded AWS says it after skipping types it does not
support (``infra/local/embedded_aws_gaps.json``, reported as known gaps there, failures elsewhere).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from storepulse.config import REPO_ROOT
from storepulse.layout import TABLE_SPECS

log = logging.getLogger(__name__)

TEMPLATE: Final = REPO_ROOT / "infra" / "cloudformation" / "realtime.yaml"
PARAMETERS_DIR: Final = REPO_ROOT / "infra" / "cloudformation" / "parameters"
GAPS_FILE: Final = REPO_ROOT / "infra" / "local" / "embedded_aws_gaps.json"
CAPABILITIES: Final = ("CAPABILITY_IAM",)
CODE_PARAMETERS: Final = ("LambdaCodeBucket", "LambdaCodeKey")

SUCCESS: Final = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE"})
# States in which the current template and parameters are what is deployed.
SETTLED: Final = SUCCESS | {
    "UPDATE_ROLLBACK_COMPLETE",
    "IMPORT_COMPLETE",
    "IMPORT_ROLLBACK_COMPLETE",
}
NO_CHANGES: Final = ("didn't contain changes", "No updates are to be performed")
STACK_TYPE: Final = "AWS::CloudFormation::Stack"
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})

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
    parameters_dir: Path = PARAMETERS_DIR,
) -> list[dict[str, str]]:
    """The stack's parameters: ``parameters/<env>.json`` if it exists, else ``dev.json`` with
    ``EnvName`` set to ``env``; plus the code location, which every build changes."""
    path = parameters_dir / f"{env}.json"
    own_file = path.is_file()
    values = {
        p["ParameterKey"]: p["ParameterValue"]
        for p in json.loads((path if own_file else parameters_dir / "dev.json").read_text())
    }
    if not own_file:
        values["EnvName"] = env
    values |= {"LambdaCodeBucket": code_bucket, "LambdaCodeKey": code_key}
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


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
        if "does not exist" in _message(exc):
            return None
        raise


def stack_outputs(stack: Mapping[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}


def is_embedded_endpoint(url: str | None) -> bool:
    """True for an endpoint on loopback: the embedded AWS (a real account has none)."""
    return bool(url) and urlparse(str(url)).hostname in LOOPBACK_HOSTS


def embedded_aws_gaps(path: Path = GAPS_FILE) -> dict[str, str]:
    """{resource type: why} of the types the embedded AWS accepts but never creates."""
    return dict(json.loads(path.read_text())["types"])


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
    timeout: float = 1800.0,
    poll_interval: float = 10.0,
) -> DeployResult:
    """Create or update ``stack_name`` through one change set (see the module doc)."""
    parameters = [dict(p) for p in parameters]
    stack = describe_stack(cfn, stack_name)
    _check_deployable(stack_name, stack)
    if stack is not None and _is_deployed(cfn, stack, template_body, parameters):
        status = stack["StackStatus"]
        log.info("stack %s is %s with this template and parameters: no changes", stack_name, status)
        return _unchanged(cfn, stack, template_body)
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
    deadline = time.monotonic() + timeout
    if not _wait_for_change_set(cfn, stack_name, change_set, deadline, poll_interval):
        cfn.delete_change_set(StackName=stack_name, ChangeSetName=change_set)
        log.info("change set %s contains no changes: nothing to execute", change_set)
        return _unchanged(cfn, describe_stack(cfn, stack_name) or {}, template_body)
    changes = _changes(cfn, stack_name, change_set)
    _log_changes(change_set, kind, changes)
    final = _execute(
        cfn, stack_name, change_set, template_body, parameters, deadline, poll_interval
    )
    log.info("stack %s: %s (%d resource changes)", stack_name, final["StackStatus"], len(changes))
    outputs = _complete_outputs(cfn, final, template_body)
    return DeployResult(
        stack_name=stack_name,
        action=kind.lower(),
        status=final["StackStatus"],
        change_set=change_set,
        changes=tuple(changes),
        outputs=outputs,
    )


def deployed_outputs(cfn: Any, name: str) -> dict[str, str]:
    """The outputs of the deployed stack ``name``, on AWS and on the embedded AWS alike."""
    stack = describe_stack(cfn, name)
    if stack is None:
        raise DeployError(f"stack {name} is not deployed (run the DAG deploy_realtime_stack)")
    body = cfn.get_template(StackName=name)["TemplateBody"]
    return _complete_outputs(cfn, stack, body if isinstance(body, str) else json.dumps(body))


def _complete_outputs(cfn: Any, stack: Mapping[str, Any], template_body: str) -> dict[str, str]:
    """The stack's outputs. AWS computes them for every change set; the embedded AWS does not
    (nor its exports): declared outputs that the stack lacks are resolved here from its resources,
    so the deploy's result is the same on both."""
    outputs = stack_outputs(stack)
    template = parse_template(template_body)
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters") or []}
    pseudo = _pseudo_parameters(stack)
    physical = _physical_ids(cfn, stack["StackName"])
    types = {lid: r["Type"] for lid, r in template.get("Resources", {}).items()}

    def arn_of(logical_id: str) -> str:
        if logical_id not in physical or types.get(logical_id) not in ARN_FORMATS:
            raise UnresolvedError(f"GetAtt {logical_id}.Arn")
        name = physical[logical_id].rsplit("/", 1)[-1]  # a queue's physical id is its URL
        return ARN_FORMATS[types[logical_id]].format(
            id=physical[logical_id],
            name=name,
            partition=pseudo.get("AWS::Partition", "aws"),
            region=pseudo.get("AWS::Region", ""),
            account=pseudo.get("AWS::AccountId", ""),
        )

    intrinsics = Intrinsics(template, parameters, pseudo, physical, arn_of)
    declared = template.get("Outputs") or {}
    missing = [k for k, o in declared.items() if k not in outputs and intrinsics.is_deployed(o)]
    for key in missing:
        try:
            outputs[key] = str(intrinsics.resolve(declared[key]["Value"]))
        except UnresolvedError as exc:
            log.warning("output %s cannot be resolved: %s", key, exc)
    if missing:
        log.info(
            "%d outputs resolved from the stack's resources (the stack lacks them)", len(missing)
        )
    return outputs


def _unchanged(cfn: Any, stack: Mapping[str, Any], template_body: str) -> DeployResult:
    return DeployResult(
        stack_name=stack["StackName"],
        action="none",
        status=stack["StackStatus"],
        change_set=None,
        changes=(),
        outputs=_complete_outputs(cfn, stack, template_body),
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


def _is_deployed(
    cfn: Any, stack: Mapping[str, Any], template_body: str, parameters: list[dict[str, str]]
) -> bool:
    """True when the stack is settled with exactly this template and these parameters."""
    if stack["StackStatus"] not in SETTLED:
        return False
    deployed = cfn.get_template(StackName=stack["StackName"], TemplateStage="Original")
    body = deployed["TemplateBody"]
    if isinstance(body, str) and body != template_body:
        return False
    if not isinstance(body, str) and body != json.loads(template_body):
        return False
    current = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters") or []}
    return current == _effective_parameters(template_body, parameters)


def _effective_parameters(template_body: str, parameters: list[dict[str, str]]) -> dict[str, str]:
    """What the stack would report: the template's defaults overridden by ``parameters``."""
    declared = parse_template(template_body).get("Parameters") or {}
    values = {name: _text(p["Default"]) for name, p in declared.items() if "Default" in p}
    return values | {p["ParameterKey"]: p["ParameterValue"] for p in parameters}


def _change_set_name(template_body: str, parameters: list[dict[str, str]]) -> str:
    digest = hashlib.sha256(
        (template_body + json.dumps(parameters, sort_keys=True)).encode()
    ).hexdigest()
    return f"deploy-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{digest[:8]}"


def _wait_for_change_set(
    cfn: Any, stack_name: str, change_set: str, deadline: float, poll_interval: float
) -> bool:
    """Wait until the change set is ready; False if it holds no changes."""
    while True:
        described = cfn.describe_change_set(StackName=stack_name, ChangeSetName=change_set)
        status, reason = described["Status"], described.get("StatusReason") or ""
        if status == "CREATE_COMPLETE":
            return True
        if status == "FAILED":
            if any(marker in reason for marker in NO_CHANGES):
                return False
            raise StackDeployError(f"change set {change_set} failed: {reason}")
        if time.monotonic() >= deadline:
            raise DeployError(f"change set {change_set} still {status} at the timeout")
        time.sleep(poll_interval)


def _changes(cfn: Any, stack_name: str, change_set: str) -> list[ResourceChange]:
    changes: list[ResourceChange] = []
    kwargs: dict[str, str] = {"StackName": stack_name, "ChangeSetName": change_set}
    while True:
        page = cfn.describe_change_set(**kwargs)
        for change in page.get("Changes", []):
            detail = change.get("ResourceChange", {})
            changes.append(
                ResourceChange(
                    action=detail.get("Action", "?"),
                    logical_id=detail.get("LogicalResourceId", "?"),
                    resource_type=detail.get("ResourceType", "?"),
                    replacement=detail.get("Replacement"),
                )
            )
        if not page.get("NextToken"):
            return changes
        kwargs["NextToken"] = page["NextToken"]


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
    deadline: float,
    poll_interval: float,
) -> dict[str, Any]:
    """Execute the change set and wait for a final state; raise with the failing resources."""
    marker = _latest_event_id(cfn, stack_name)
    try:
        cfn.execute_change_set(StackName=stack_name, ChangeSetName=change_set)
    except Exception as exc:  # the embedded AWS answers resource errors here, unparseable
        raise _execution_error(cfn, stack_name, template_body, parameters, exc, marker) from exc
    stack = _wait_for_stack(cfn, stack_name, marker, deadline, poll_interval)
    if stack["StackStatus"] not in SUCCESS:
        raise _failed_stack_error(cfn, stack, marker)
    return stack


def _latest_event_id(cfn: Any, stack_name: str) -> str | None:
    events = cfn.describe_stack_events(StackName=stack_name).get("StackEvents", [])
    return events[0]["EventId"] if events else None


def _events_since(cfn: Any, stack_name: str, marker: str | None) -> list[dict[str, Any]]:
    """Events newer than ``marker``, oldest first."""
    events: list[dict[str, Any]] = []
    kwargs = {"StackName": stack_name}
    while True:
        page = cfn.describe_stack_events(**kwargs)
        for event in page.get("StackEvents", []):  # newest first
            if event["EventId"] == marker:
                return events[::-1]
            events.append(event)
        if not page.get("NextToken"):
            return events[::-1]
        kwargs["NextToken"] = page["NextToken"]


def _wait_for_stack(
    cfn: Any, stack_name: str, marker: str | None, deadline: float, poll_interval: float
) -> dict[str, Any]:
    """The stack once the execution reached a final state (a stack event newer than ``marker``
    says so: right after execute_change_set the stack may still show its previous state)."""
    while True:
        stack = describe_stack(cfn, stack_name)
        if stack is None:
            raise DeployError(f"stack {stack_name} disappeared during the deploy")
        status = stack["StackStatus"]
        if not status.endswith("_IN_PROGRESS") and any(
            e["ResourceType"] == STACK_TYPE and e["ResourceStatus"] == status
            for e in _events_since(cfn, stack_name, marker)
        ):
            return stack
        if time.monotonic() >= deadline:
            failures = _event_failures(_events_since(cfn, stack_name, marker))
            raise StackDeployError(
                f"stack {stack_name} is still {status} at the timeout"
                + ("" if failures else " (the embedded AWS never rolls a failed resource back)"),
                failures,
            )
        time.sleep(poll_interval)


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
        intrinsics = Intrinsics(template, values, _pseudo_parameters(stack), {})
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
        return f"{exc.response.get('Error', {}).get('Code', '?')}: {_message(exc)}"
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


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", exc))


def _text(value: Any) -> str:
    """A template scalar as CloudFormation renders it (``true``, ``512``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


# ------------------------------------------------------------------------------ intrinsics


class UnresolvedError(ValueError):
    """An intrinsic function whose value cannot be known here."""


_NO_VALUE = object()


@dataclass
class Intrinsics:
    """Evaluates the intrinsic functions our templates use (Ref, Fn::Sub, Fn::GetAtt ...Arn,
    Fn::If, Fn::Join, conditions) from parameters, pseudo parameters and physical ids.
    ``arn_of(logical_id)`` answers ``Fn::GetAtt X.Arn``; anything else raises UnresolvedError."""

    template: Mapping[str, Any]
    parameters: Mapping[str, str]
    pseudo: Mapping[str, str]
    physical_ids: Mapping[str, str]
    arn_of: Callable[[str], str] | None = None
    _conditions: dict[str, bool] = field(default_factory=dict)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, Mapping) and len(value) == 1:
            ((name, argument),) = value.items()
            if name == "Ref" or name.startswith("Fn::"):
                return self._function(name, argument)
        if isinstance(value, Mapping):
            resolved = {k: self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not _NO_VALUE}
        if isinstance(value, list):
            return [v for v in map(self.resolve, value) if v is not _NO_VALUE]
        return value

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            definition = (self.template.get("Conditions") or {}).get(name)
            if definition is None:
                raise UnresolvedError(f"unknown condition {name}")
            self._conditions[name] = self._truth(definition)
        return self._conditions[name]

    def is_deployed(self, resource: Mapping[str, Any]) -> bool:
        """False for a resource whose Condition is false (so CloudFormation skipped it)."""
        return "Condition" not in resource or self.condition(resource["Condition"])

    def resolved_strings(self, value: Any) -> Iterator[str]:
        """Every string leaf of ``value`` that can be resolved, skipping the rest."""
        try:
            resolved = self.resolve(value)
        except UnresolvedError:
            if isinstance(value, Mapping) and len(value) == 1:
                return
            resolved = value
        if isinstance(resolved, str):
            yield resolved
        elif isinstance(resolved, Mapping):
            for item in resolved.values():
                yield from self.resolved_strings(item)
        elif isinstance(resolved, list):
            for item in resolved:
                yield from self.resolved_strings(item)

    def _function(self, name: str, argument: Any) -> Any:
        if name == "Ref":
            return self._ref(argument)
        if name == "Fn::Sub":
            return self._sub(argument)
        if name == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".")
            return self._get_att(logical_id, attribute)
        if name == "Fn::If":
            condition, when_true, when_false = argument
            return self.resolve(when_true if self.condition(condition) else when_false)
        if name == "Fn::Join":
            separator, items = argument
            return separator.join(str(self.resolve(item)) for item in items)
        raise UnresolvedError(name)

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        for source in (self.parameters, self.pseudo, self.physical_ids):
            if name in source:
                return source[name]
        raise UnresolvedError(f"Ref {name}")

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                return str(self._get_att(*name.split(".", 1)))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def _get_att(self, logical_id: str, attribute: str) -> str:
        if attribute != "Arn" or self.arn_of is None:
            raise UnresolvedError(f"GetAtt {logical_id}.{attribute}")
        return self.arn_of(logical_id)

    def _truth(self, definition: Any) -> bool:
        ((name, argument),) = definition.items()
        if name == "Fn::Equals":
            left, right = (_text(self.resolve(v)) for v in argument)
            return left == right
        if name == "Fn::Not":
            return not self._truth(argument[0])
        if name == "Fn::And":
            return all(self._truth(c) for c in argument)
        if name == "Fn::Or":
            return any(self._truth(c) for c in argument)
        if name == "Condition":
            return self.condition(argument)
        raise UnresolvedError(f"condition function {name}")


# ARNs by type, from the physical id: for outputs the embedded AWS does not compute.
ARN_FORMATS: Final = {
    "AWS::SQS::Queue": "arn:{partition}:sqs:{region}:{account}:{name}",
    "AWS::Kinesis::Stream": "arn:{partition}:kinesis:{region}:{account}:stream/{id}",
    "AWS::Lambda::Function": "arn:{partition}:lambda:{region}:{account}:function:{id}",
    "AWS::DynamoDB::Table": "arn:{partition}:dynamodb:{region}:{account}:table/{id}",
    "AWS::IAM::Role": "arn:{partition}:iam::{account}:role/{id}",
    "AWS::S3::Bucket": "arn:{partition}:s3:::{id}",
    "AWS::SNS::Topic": "{id}",
}


def _pseudo_parameters(stack: Mapping[str, Any]) -> dict[str, str]:
    """AWS::AccountId, Region, Partition, StackName from the stack's id (an ARN)."""
    parts = str(stack.get("StackId", "")).split(":")
    if len(parts) < 6:
        return {}
    return {
        "AWS::Partition": parts[1],
        "AWS::Region": parts[3],
        "AWS::AccountId": parts[4],
        "AWS::StackName": str(stack.get("StackName", "")),
        "AWS::StackId": str(stack["StackId"]),
        "AWS::URLSuffix": "amazonaws.com",
    }


# ------------------------------------------------------------------------------ verify

OK: Final = "ok"
GAP: Final = "known gap"
FAILED: Final = "FAILED"
NOT_DEPLOYED: Final = "not deployed"
MISSING_CODES: Final = frozenset(
    {
        "ResourceNotFoundException",
        "NoSuchBucket",
        "NoSuchBucketPolicy",
        "NoSuchEntity",
        "NotFound",
        "404",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
    }
)


class _MissingError(Exception):
    """The service does not know the resource."""


class _MismatchError(Exception):
    """The resource exists with other properties than the template's."""


@dataclass(frozen=True)
class ResourceCheck:
    logical_id: str
    resource_type: str
    physical_id: str
    status: str
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    stack_name: str
    checks: tuple[ResourceCheck, ...]

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.checks)

    @property
    def checked(self) -> int:
        return len(self.checks) - self.count(NOT_DEPLOYED)

    @property
    def failures(self) -> list[ResourceCheck]:
        return [c for c in self.checks if c.status == FAILED]

    def summary(self) -> dict[str, int]:
        return {
            "resources_declared": len(self.checks),
            "resources_checked": self.checked,
            "ok": self.count(OK),
            "known_gaps": self.count(GAP),
            "failed": self.count(FAILED),
            "not_deployed": self.count(NOT_DEPLOYED),
        }

    def table(self) -> str:
        rows = [("resource", "type", "status", "detail")] + [
            (c.logical_id, c.resource_type, c.status, c.detail) for c in self.checks
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [
            f"{a:<{widths[0]}}  {b:<{widths[1]}}  {s:<{widths[2]}}  {d}" for a, b, s, d in rows
        ]
        s = self.summary()
        lines.append(
            f"{s['resources_checked']} resources checked: {s['ok']} ok, {s['known_gaps']} known "
            f"gaps, {s['failed']} failed ({s['not_deployed']} not deployed by their condition)"
        )
        return "\n".join(lines)


class VerificationError(DeployError):
    """Resources of the template are missing or differ; ``report`` has every check."""

    def __init__(self, report: VerifyReport) -> None:
        failures = report.failures
        super().__init__(
            f"stack {report.stack_name}: {len(failures)} of {report.checked} resources failed "
            "verification:\n"
            + "\n".join(f"  {c.logical_id} ({c.resource_type}): {c.detail}" for c in failures)
        )
        self.report = report


@dataclass
class _Context:
    clients: Clients
    intrinsics: Intrinsics
    code_sha256: str | None = None
    _made: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        """One client per service for the whole verification."""
        if service not in self._made:
            self._made[service] = self.clients(service)
        return self._made[service]


@dataclass(frozen=True)
class _Declared:
    logical_id: str
    resource_type: str
    properties: Mapping[str, Any]
    physical_id: str


def verify_stack(
    clients: Clients,
    stack_name: str,
    *,
    known_gaps: Mapping[str, str] | None = None,
    code_sha256: str | None = None,
) -> VerifyReport:
    """Check every resource of the deployed template through its service; raise
    :class:`VerificationError` if any is missing or differs. ``known_gaps``: {type: why} to
    report instead of failing (pass :func:`embedded_aws_gaps` only for the embedded AWS).
    ``code_sha256``: hex digest of the zip the function must run."""
    cfn = clients("cloudformation")
    stack = describe_stack(cfn, stack_name)
    if stack is None:
        raise DeployError(f"stack {stack_name} does not exist")
    template = parse_template(
        cfn.get_template(StackName=stack_name, TemplateStage="Original")["TemplateBody"]
    )
    physical = _physical_ids(cfn, stack_name)
    context = _Context(clients, _intrinsics_of(template, stack, physical, clients), code_sha256)
    checks = tuple(
        _check(context, lid, resource, physical.get(lid, ""), known_gaps or {})
        for lid, resource in template.get("Resources", {}).items()
    )
    report = VerifyReport(stack_name, checks)
    log.info("verification of %s:\n%s", stack_name, report.table())
    if report.failures:
        raise VerificationError(report)
    return report


def _physical_ids(cfn: Any, stack_name: str) -> dict[str, str]:
    """{logical id: physical id}; the embedded AWS lists skipped types with empty ids."""
    found: dict[str, str] = {}
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack_name):
        for summary in page["StackResourceSummaries"]:
            if summary.get("LogicalResourceId") and summary.get("PhysicalResourceId"):
                found[summary["LogicalResourceId"]] = summary["PhysicalResourceId"]
    return found


def _intrinsics_of(
    template: Mapping[str, Any],
    stack: Mapping[str, Any],
    physical: Mapping[str, str],
    clients: Clients,
) -> Intrinsics:
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters") or []}
    pseudo = _pseudo_parameters(stack)
    resources = template.get("Resources", {})

    @cache
    def arn_of(logical_id: str) -> str:
        kind = resources.get(logical_id, {}).get("Type", "")
        if logical_id not in physical or kind not in _ARNS:
            raise UnresolvedError(f"GetAtt {logical_id}.Arn")
        try:
            return _ARNS[kind](clients, physical[logical_id], pseudo)
        except ClientError as exc:
            raise UnresolvedError(f"GetAtt {logical_id}.Arn: {_message(exc)}") from exc

    return Intrinsics(template, parameters, pseudo, physical, arn_of)


_ARNS: Final[dict[str, Callable[[Clients, str, Mapping[str, str]], str]]] = {
    "AWS::SQS::Queue": lambda c, pid, _: c("sqs").get_queue_attributes(
        QueueUrl=pid, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"],
    "AWS::Kinesis::Stream": lambda c, pid, _: c("kinesis").describe_stream_summary(StreamName=pid)[
        "StreamDescriptionSummary"
    ]["StreamARN"],
    "AWS::DynamoDB::Table": lambda c, pid, _: c("dynamodb").describe_table(TableName=pid)["Table"][
        "TableArn"
    ],
    "AWS::Lambda::Function": lambda c, pid, _: c("lambda").get_function_configuration(
        FunctionName=pid
    )["FunctionArn"],
    "AWS::IAM::Role": lambda c, pid, _: c("iam").get_role(RoleName=pid)["Role"]["Arn"],
    "AWS::S3::Bucket": lambda _c, pid, p: f"arn:{p.get('AWS::Partition', 'aws')}:s3:::{pid}",
    "AWS::SNS::Topic": lambda _c, pid, _p: pid,
}


def _check(
    context: _Context,
    logical_id: str,
    resource: Mapping[str, Any],
    physical_id: str,
    known_gaps: Mapping[str, str],
) -> ResourceCheck:
    kind = resource["Type"]

    def result(status: str, detail: str) -> ResourceCheck:
        return ResourceCheck(logical_id, kind, physical_id, status, detail)

    if not context.intrinsics.is_deployed(resource):
        return result(NOT_DEPLOYED, f"condition {resource['Condition']} is false")
    declared = _Declared(logical_id, kind, resource.get("Properties") or {}, physical_id)
    try:
        if not physical_id:
            raise _MissingError("not among the stack's resources")
        return result(OK, _CHECKERS.get(kind, _by_stack_only)(context, declared))
    except _MissingError as exc:
        missing = str(exc)
    except _MismatchError as exc:
        return result(FAILED, f"differs from the template: {exc}")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code not in MISSING_CODES:
            return result(FAILED, f"{code}: {_message(exc)}")
        missing = f"{code}: {_message(exc)}"
    if kind in known_gaps:
        return result(GAP, f"not created by the embedded AWS (known gap): {known_gaps[kind]}")
    return result(FAILED, f"missing: {missing}")


def _expect(what: str, expected: Any, actual: Any) -> None:
    if _normal(expected) != _normal(actual):
        raise _MismatchError(f"{what} is {actual!r}, the template says {expected!r}")


def _normal(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    return _text(value)


def _value(context: _Context, declared: _Declared, *path: str) -> Any:
    """A resolved property (``None`` if absent); an unresolvable one is a failure."""
    value: Any = declared.properties
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    try:
        return context.intrinsics.resolve(value)
    except UnresolvedError as exc:
        raise _MismatchError(f"{'.'.join(path)} cannot be resolved ({exc})") from exc


def _by_stack_only(context: _Context, declared: _Declared) -> str:
    return "in the stack (no service check for this type)"


def _kinesis_stream(context: _Context, declared: _Declared) -> str:
    summary = context.client("kinesis").describe_stream_summary(StreamName=declared.physical_id)
    status = summary["StreamDescriptionSummary"]["StreamStatus"]
    _expect("StreamStatus", "ACTIVE", status)
    shards = summary["StreamDescriptionSummary"].get("OpenShardCount", "?")
    return f"{status}, {shards} open shards"


def _dynamodb_table(context: _Context, declared: _Declared) -> str:
    table = context.client("dynamodb").describe_table(TableName=declared.physical_id)["Table"]
    spec = next(
        (s for t, s in TABLE_SPECS.items() if declared.physical_id.endswith(f"-{t.value}")), None
    )
    if spec is None:
        raise _MismatchError(f"{declared.physical_id} is no table of storepulse.layout.TABLE_SPECS")
    expected = spec.create_table_kwargs(declared.physical_id)
    _expect("KeySchema", expected["KeySchema"], table["KeySchema"])
    indexes = [
        {k: i[k] for k in ("IndexName", "KeySchema", "Projection")}
        for i in table.get("GlobalSecondaryIndexes", [])
    ]
    _expect("GlobalSecondaryIndexes", expected.get("GlobalSecondaryIndexes", []), indexes)
    _expect("TableStatus", "ACTIVE", table["TableStatus"])
    return f"ACTIVE, key layout of {spec.table.value}, {len(indexes)} GSI"


def _s3_bucket(context: _Context, declared: _Declared) -> str:
    s3 = context.client("s3")
    s3.head_bucket(Bucket=declared.physical_id)
    rules = _value(context, declared, "BucketEncryption", "ServerSideEncryptionConfiguration")
    if not rules:
        return "exists"
    expected = rules[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
    try:
        configured = s3.get_bucket_encryption(Bucket=declared.physical_id)
    except ClientError as exc:
        raise _MismatchError(f"no default encryption ({_message(exc)})") from exc
    rule = configured["ServerSideEncryptionConfiguration"]["Rules"][0]
    _expect("SSEAlgorithm", expected, rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"])
    return f"exists, default encryption {expected}"


def _s3_bucket_policy(context: _Context, declared: _Declared) -> str:
    bucket = _value(context, declared, "Bucket")
    context.client("s3").get_bucket_policy(Bucket=bucket)
    return f"policy on {bucket}"


def _sns_topic(context: _Context, declared: _Declared) -> str:
    topic = context.client("sns").get_topic_attributes(TopicArn=declared.physical_id)
    attributes = topic["Attributes"]
    display_name = _value(context, declared, "DisplayName")
    if display_name is not None:
        _expect("DisplayName", display_name, attributes.get("DisplayName"))
    return f"{attributes.get('SubscriptionsConfirmed', '?')} confirmed subscriptions"


def _sns_subscription(context: _Context, declared: _Declared) -> str:
    topic, protocol, endpoint = (
        _value(context, declared, key) for key in ("TopicArn", "Protocol", "Endpoint")
    )
    paginator = context.client("sns").get_paginator("list_subscriptions_by_topic")
    for page in paginator.paginate(TopicArn=topic):
        for subscription in page["Subscriptions"]:
            if (subscription["Protocol"], subscription["Endpoint"]) == (protocol, endpoint):
                return f"{protocol} {endpoint}"
    raise _MissingError(f"no {protocol} subscription of {endpoint} on {topic}")


def _sqs_queue(context: _Context, declared: _Declared) -> str:
    attributes = context.client("sqs").get_queue_attributes(
        QueueUrl=declared.physical_id, AttributeNames=["All"]
    )["Attributes"]
    retention = _value(context, declared, "MessageRetentionPeriod")
    if retention is not None:
        _expect("MessageRetentionPeriod", retention, attributes.get("MessageRetentionPeriod"))
    return f"retention {attributes.get('MessageRetentionPeriod')} s"


def _iam_role(context: _Context, declared: _Declared) -> str:
    iam = context.client("iam")
    iam.get_role(RoleName=declared.physical_id)
    policies = declared.properties.get("Policies") or []
    expected = sorted(context.intrinsics.resolve(p["PolicyName"]) for p in policies)
    actual = sorted(iam.list_role_policies(RoleName=declared.physical_id)["PolicyNames"])
    _expect("inline policies", expected, actual)
    return f"exists, {len(actual)} inline policies"


def _log_group(context: _Context, declared: _Declared) -> str:
    groups = context.client("logs").describe_log_groups(logGroupNamePrefix=declared.physical_id)
    group = next(
        (g for g in groups["logGroups"] if g["logGroupName"] == declared.physical_id), None
    )
    if group is None:
        raise _MissingError(f"no log group {declared.physical_id}")
    retention = _value(context, declared, "RetentionInDays")
    if retention is not None:
        _expect("RetentionInDays", retention, group.get("retentionInDays"))
    return f"retention {group.get('retentionInDays')} days"


def _lambda_function(context: _Context, declared: _Declared) -> str:
    function = context.client("lambda").get_function(FunctionName=declared.physical_id)
    config = function["Configuration"]
    for key in ("Handler", "Runtime"):
        _expect(key, _value(context, declared, key), config.get(key))
    variables = _value(context, declared, "Environment", "Variables") or {}
    _expect("Environment.Variables", variables, config.get("Environment", {}).get("Variables", {}))
    if context.code_sha256:
        expected = _base64_digest(context.code_sha256)
        _expect("CodeSha256 (of the uploaded zip)", expected, config.get("CodeSha256"))
    return f"{config['Runtime']} {config['Handler']}, {len(variables)} environment variables"


def _base64_digest(hex_digest: str) -> str:
    """Lambda's CodeSha256 is the base64 of the zip's SHA-256."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _event_source_mapping(context: _Context, declared: _Declared) -> str:
    mapping = context.client("lambda").get_event_source_mapping(UUID=declared.physical_id)
    for key in ("BatchSize", "BisectBatchOnFunctionError", "FunctionResponseTypes"):
        expected = _value(context, declared, key)
        if expected is not None:
            _expect(key, expected, mapping.get(key))
    destination = _value(context, declared, "DestinationConfig", "OnFailure", "Destination")
    if destination is not None:
        actual = mapping.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        _expect("DestinationConfig.OnFailure.Destination", destination, actual)
    return f"{mapping.get('State')}, batch size {mapping.get('BatchSize')}"


def _cloudwatch_alarm(context: _Context, declared: _Declared) -> str:
    alarms = context.client("cloudwatch").describe_alarms(AlarmNames=[declared.physical_id])
    if not alarms.get("MetricAlarms"):
        raise _MissingError(f"no alarm {declared.physical_id}")
    return alarms["MetricAlarms"][0].get("StateValue", "?")


_CHECKERS: Final[dict[str, Callable[[_Context, _Declared], str]]] = {
    "AWS::Kinesis::Stream": _kinesis_stream,
    "AWS::DynamoDB::Table": _dynamodb_table,
    "AWS::S3::Bucket": _s3_bucket,
    "AWS::S3::BucketPolicy": _s3_bucket_policy,
    "AWS::SNS::Topic": _sns_topic,
    "AWS::SNS::Subscription": _sns_subscription,
    "AWS::SQS::Queue": _sqs_queue,
    "AWS::IAM::Role": _iam_role,
    "AWS::Logs::LogGroup": _log_group,
    "AWS::Lambda::Function": _lambda_function,
    "AWS::Lambda::EventSourceMapping": _event_source_mapping,
    "AWS::CloudWatch::Alarm": _cloudwatch_alarm,
}


# ------------------------------------------------------------------------------ smoke test


class SmokeTestError(DeployError):
    """The marked event did not come through in time."""


@dataclass(frozen=True)
class SmokeResult:
    event_id: str
    latency_seconds: float
    polls: int


def run_smoke_test(
    kinesis: Any,
    dynamodb: Any,
    *,
    stream_name: str,
    facts_table: str,
    timeout: float = 120.0,
    poll_interval: float = 1.0,
) -> SmokeResult:
    """Put one smoke event (``storepulse.stream.smoke``) on the stream and wait until the stream
    processor has written its marker item to the facts table. ``dynamodb``: a boto3 client."""
    from storepulse.producer import KinesisProducer
    from storepulse.stream.smoke import smoke_event, smoke_key

    event = smoke_event()
    key = smoke_key(event.event_id)
    started = time.monotonic()
    KinesisProducer(stream_name=stream_name, client=kinesis).send([event])
    polls = 0
    while True:
        polls += 1
        item = dynamodb.get_item(
            TableName=facts_table,
            Key={"pk": {"S": key.pk}, "sk": {"S": key.sk}},
            ConsistentRead=True,
        ).get("Item")
        latency = time.monotonic() - started
        if item:
            log.info("smoke event %s processed in %.2f s", event.event_id, latency)
            return SmokeResult(event.event_id, round(latency, 3), polls)
        if latency >= timeout:
            raise SmokeTestError(
                f"smoke event {event.event_id} sent to {stream_name} was not processed within "
                f"{timeout:.0f} s (no {key.pk} item in {facts_table}). Is the stream processor "
                "running? Locally, the project's Lambda runtime (storepulse.local.lambda_runtime) "
                "must be started, as `make up` does."
            )
        time.sleep(poll_interval)


# ------------------------------------------------------------------------------ teardown


@dataclass(frozen=True)
class RetainedResource:
    """A resource with ``DeletionPolicy: Retain``: deleting the stack leaves it (and its data)."""

    logical_id: str
    resource_type: str
    physical_id: str


def retained_resources(cfn: Any, stack_name: str) -> list[RetainedResource]:
    """The stack's resources that survive its deletion ([] when there is no stack)."""
    if describe_stack(cfn, stack_name) is None:
        return []
    template = parse_template(
        cfn.get_template(StackName=stack_name, TemplateStage="Original")["TemplateBody"]
    )
    physical = _physical_ids(cfn, stack_name)
    return [
        RetainedResource(lid, resource["Type"], physical[lid])
        for lid, resource in template.get("Resources", {}).items()
        if resource.get("DeletionPolicy") in {"Retain", "RetainExceptOnCreate"} and lid in physical
    ]


def still_existing(
    clients: Clients, resources: Sequence[RetainedResource]
) -> list[RetainedResource]:
    """Those of ``resources`` that exist (a type we cannot look up counts as existing)."""
    return [r for r in resources if _exists(clients, r.resource_type, r.physical_id)]


def bucket_usage(s3: Any, bucket: str) -> tuple[int, int] | None:
    """(objects, bytes) in ``bucket``, or None if it does not exist."""
    if not _exists(lambda _service: s3, "AWS::S3::Bucket", bucket):
        return None
    objects = size = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            objects += 1
            size += item["Size"]
    return objects, size


_LOOKUPS: Final[dict[str, Callable[[Clients, str], Any]]] = {
    "AWS::DynamoDB::Table": lambda c, pid: c("dynamodb").describe_table(TableName=pid),
    "AWS::S3::Bucket": lambda c, pid: c("s3").head_bucket(Bucket=pid),
    "AWS::SQS::Queue": lambda c, pid: c("sqs").get_queue_attributes(QueueUrl=pid),
    "AWS::Kinesis::Stream": lambda c, pid: c("kinesis").describe_stream_summary(StreamName=pid),
    "AWS::SNS::Topic": lambda c, pid: c("sns").get_topic_attributes(TopicArn=pid),
}


def _exists(clients: Clients, resource_type: str, physical_id: str) -> bool:
    lookup = _LOOKUPS.get(resource_type)
    if lookup is None:
        return True
    try:
        lookup(clients, physical_id)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in MISSING_CODES:
            return False
        raise
    return True
