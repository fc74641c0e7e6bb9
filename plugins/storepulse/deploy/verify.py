"""Verifying a deployed stack: every resource of its template is looked up with its service (the
stream is ACTIVE, the tables have the key layout of ``storepulse.layout``, the function has the
template's handler, runtime and environment, ...).

CloudFormation saying ``CREATE_COMPLETE`` is not enough: the embedded AWS says it after skipping
types it does not support, and lists those resources without a physical id. The same rule holds
wherever the stack runs: a resource listed without a physical id (which AWS never does for a
complete stack) is a known gap if its type is in ``infra/local/embedded_aws_gaps.json``, a
failure otherwise; a resource with an id that its service does not know is always a failure.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import ClientError

from storepulse.config import REPO_ROOT
from storepulse.deploy.intrinsics import (
    Intrinsics,
    UnresolvedError,
    pseudo_parameters,
    scalar_text,
)
from storepulse.deploy.stack import (
    Clients,
    DeployError,
    describe_stack,
    error_message,
    listed_resources,
    parse_template,
)
from storepulse.layout import TABLE_SPECS

log = logging.getLogger(__name__)

GAPS_FILE: Final = REPO_ROOT / "infra" / "local" / "embedded_aws_gaps.json"

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
        "NotFoundException",  # KMS
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
    code_sha256_of: Mapping[str, str] = field(default_factory=dict)  # by logical id
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
    code_sha256_of: Mapping[str, str] | None = None,
) -> VerifyReport:
    """Check every resource of the deployed template through its service; raise
    :class:`VerificationError` if any is missing or differs. ``known_gaps``: {type: why}; a
    resource of such a type that the stack lists without a physical id is reported as a known
    gap, not a failure (default: :func:`embedded_aws_gaps`; ``{}`` excuses nothing).
    ``code_sha256``: hex digest of the zip the function must run; ``code_sha256_of``: the
    same for other functions, by logical id (the change capture's)."""
    gaps = embedded_aws_gaps() if known_gaps is None else known_gaps
    cfn = clients("cloudformation")
    stack = describe_stack(cfn, stack_name)
    if stack is None:
        raise DeployError(f"stack {stack_name} does not exist")
    template = parse_template(
        cfn.get_template(StackName=stack_name, TemplateStage="Original")["TemplateBody"]
    )
    listed = listed_resources(cfn, stack_name)
    physical = {lid: pid for lid, pid in listed.items() if pid}
    context = _Context(
        clients,
        _intrinsics_of(template, stack, physical, clients),
        code_sha256,
        dict(code_sha256_of or {}),
    )
    checks = tuple(
        _check(context, lid, resource, listed.get(lid), gaps)
        for lid, resource in template.get("Resources", {}).items()
    )
    report = VerifyReport(stack_name, checks)
    log.info("verification of %s:\n%s", stack_name, report.table())
    if report.failures:
        raise VerificationError(report)
    return report


def embedded_aws_gaps(path: Path = GAPS_FILE) -> dict[str, str]:
    """{resource type: why} of the types the embedded AWS accepts but never creates (its
    CloudFormation lists them without a physical id)."""
    return dict(json.loads(path.read_text())["types"])


def _intrinsics_of(
    template: Mapping[str, Any],
    stack: Mapping[str, Any],
    physical: Mapping[str, str],
    clients: Clients,
) -> Intrinsics:
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters") or []}
    pseudo = pseudo_parameters(stack)
    resources = template.get("Resources", {})

    @cache
    def arn_of(logical_id: str) -> str:
        kind = resources.get(logical_id, {}).get("Type", "")
        if logical_id not in physical or kind not in _ARNS:
            raise UnresolvedError(f"GetAtt {logical_id}.Arn")
        try:
            return _ARNS[kind](clients, physical[logical_id], pseudo)
        except ClientError as exc:
            raise UnresolvedError(f"GetAtt {logical_id}.Arn: {error_message(exc)}") from exc

    @cache
    def attribute_of(logical_id: str, attribute: str) -> str:
        kind = resources.get(logical_id, {}).get("Type", "")
        if logical_id not in physical or (kind, attribute) != ("AWS::DynamoDB::Table", "StreamArn"):
            raise UnresolvedError(f"GetAtt {logical_id}.{attribute}")
        table = clients("dynamodb").describe_table(TableName=physical[logical_id])["Table"]
        if "LatestStreamArn" not in table:
            raise UnresolvedError(f"GetAtt {logical_id}.StreamArn: the table has no stream")
        return str(table["LatestStreamArn"])

    return Intrinsics(template, parameters, pseudo, physical, arn_of, attribute_of)


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
    "AWS::KMS::Key": lambda c, pid, _: c("kms").describe_key(KeyId=pid)["KeyMetadata"]["Arn"],
}


def _check(
    context: _Context,
    logical_id: str,
    resource: Mapping[str, Any],
    listed_id: str | None,
    known_gaps: Mapping[str, str],
) -> ResourceCheck:
    """``listed_id``: the physical id the stack lists, "" if it lists none, None if unlisted."""
    kind = resource["Type"]
    physical_id = listed_id or ""

    def result(status: str, detail: str) -> ResourceCheck:
        return ResourceCheck(logical_id, kind, physical_id, status, detail)

    if not context.intrinsics.is_deployed(resource):
        return result(NOT_DEPLOYED, f"condition {resource['Condition']} is false")
    if listed_id == "" and kind in known_gaps:
        return result(GAP, f"listed without a physical id (known gap): {known_gaps[kind]}")
    declared = _Declared(logical_id, kind, resource.get("Properties") or {}, physical_id)
    try:
        if listed_id is None:
            raise _MissingError("not among the stack's resources")
        if not physical_id:
            raise _MissingError("listed by the stack without a physical id")
        return result(OK, _CHECKERS.get(kind, _by_stack_only)(context, declared))
    except _MissingError as exc:
        missing = str(exc)
    except _MismatchError as exc:
        return result(FAILED, f"differs from the template: {exc}")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code not in MISSING_CODES:
            return result(FAILED, f"{code}: {error_message(exc)}")
        missing = f"{code}: {error_message(exc)}"
    return result(FAILED, f"missing: {missing}")


def _expect(what: str, expected: Any, actual: Any) -> None:
    if _normal(expected) != _normal(actual):
        raise _MismatchError(f"{what} is {actual!r}, the template says {expected!r}")


def _normal(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    return scalar_text(value)


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
    stream = expected.get("StreamSpecification", {}).get("StreamViewType")
    _expect("StreamViewType", stream, table.get("StreamSpecification", {}).get("StreamViewType"))
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
        raise _MismatchError(f"no default encryption ({error_message(exc)})") from exc
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
    key = _value(context, declared, "KmsMasterKeyId")
    if key is not None:
        _expect("KmsMasterKeyId", key, attributes.get("KmsMasterKeyId"))
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
    sha256 = context.code_sha256_of.get(declared.logical_id, context.code_sha256)
    if sha256:
        expected = _base64_digest(sha256)
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


def _kms_key(context: _Context, declared: _Declared) -> str:
    kms = context.client("kms")
    key = kms.describe_key(KeyId=declared.physical_id)["KeyMetadata"]
    _expect("KeyState", "Enabled", key["KeyState"])
    rotation = _value(context, declared, "EnableKeyRotation")
    if rotation is not None:
        status = kms.get_key_rotation_status(KeyId=declared.physical_id)["KeyRotationEnabled"]
        _expect("EnableKeyRotation", rotation, status)
    return f"Enabled, rotation {'on' if rotation else 'off'}"


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
    "AWS::KMS::Key": _kms_key,
}
