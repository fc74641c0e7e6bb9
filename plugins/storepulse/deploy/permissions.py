"""Which IAM permissions a component's AWS calls need, and whether a role's policy grants them.

Where the embedded AWS's enforcement of IAM is coarser than AWS's (moto authorizes some services
on the action alone and ignores conditions and resource policies:
``infra/local/embedded_aws_gaps.json``), a test records every call a component makes through a
boto3 session (:class:`CallRecorder`, a botocore ``provide-client-params`` hook), turns each into
the IAM action and resource ARN it needs (:func:`accesses`), and checks them against the policy
of the principal that makes them (:class:`Policy`, from the template with :func:`template_policy`
or from a deployed role's documents with :meth:`Policy.from_documents`).

The evaluator covers what identity policies of this project use: ``Allow``/``Deny`` with
``Action`` and ``Resource`` (``*`` and ``?`` wildcards); an explicit deny wins. Anything else
(``NotAction``, ``Condition``, ...) raises :class:`UnsupportedPolicyError` rather than being
guessed, and a call this module cannot map needs resource ``*``, which a precise policy denies.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final
from urllib.parse import unquote

from storepulse.deploy.intrinsics import Intrinsics, UnresolvedError

ANY_RESOURCE: Final = "*"

# IAM actions whose name is not "<signing name>:<operation>".
ACTION_OF_OPERATION: Final = {
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "ListObjects"): "s3:ListBucket",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListObjectVersions"): "s3:ListBucketVersions",
    ("s3", "DeleteObjects"): "s3:DeleteObject",
    ("s3", "CreateMultipartUpload"): "s3:PutObject",
    ("s3", "UploadPart"): "s3:PutObject",
    ("s3", "CompleteMultipartUpload"): "s3:PutObject",
}


class UnsupportedPolicyError(ValueError):
    """A policy element this evaluator does not interpret."""


@dataclass(frozen=True)
class Access:
    """One IAM action on one resource ARN."""

    action: str
    resource: str

    def __str__(self) -> str:
        return f"{self.action} on {self.resource}"


@dataclass(frozen=True)
class Account:
    """Where the calls go: what an ARN needs besides the resource's name."""

    account_id: str
    partition: str = "aws"


@dataclass(frozen=True)
class RecordedCall:
    service: str  # the signing name: dynamodb, s3, sns, ...
    operation: str
    accesses: tuple[Access, ...]


# ------------------------------------------------------------------------------ calls -> accesses


def accesses(
    service: str, operation: str, params: Mapping[str, Any], region: str, account: Account
) -> list[Access]:
    """The (action, resource) pairs one API call needs; resource ``*`` when unknown."""
    action = ACTION_OF_OPERATION.get((service, operation), f"{service}:{operation}")
    resources = _RESOURCES.get(service, _unknown)(operation, params, region, account)
    return [Access(action, resource) for resource in resources or [ANY_RESOURCE]]


def _unknown(_op: str, _params: Mapping[str, Any], _region: str, _account: Account) -> list[str]:
    return []


def _dynamodb(op: str, params: Mapping[str, Any], region: str, account: Account) -> list[str]:
    def arn(table: str) -> str:
        if table.startswith("arn:"):
            return table
        return f"arn:{account.partition}:dynamodb:{region}:{account.account_id}:table/{table}"

    if "RequestItems" in params:  # BatchGetItem, BatchWriteItem: one grant per table
        return [arn(table) for table in params["RequestItems"]]
    if "TableName" not in params:
        return []
    table = arn(params["TableName"])
    return [f"{table}/index/{params['IndexName']}" if "IndexName" in params else table]


def _s3(_op: str, params: Mapping[str, Any], _region: str, account: Account) -> list[str]:
    if "Bucket" not in params:
        return []
    bucket = f"arn:{account.partition}:s3:::{params['Bucket']}"
    return [f"{bucket}/{params['Key']}" if "Key" in params else bucket]


def _sns(_op: str, params: Mapping[str, Any], _region: str, _account: Account) -> list[str]:
    arn = params.get("TopicArn") or params.get("TargetArn")
    return [arn] if arn else []


def _sqs(_op: str, params: Mapping[str, Any], region: str, account: Account) -> list[str]:
    if "QueueUrl" not in params:
        return []
    name = params["QueueUrl"].rstrip("/").rsplit("/", 1)[-1]
    return [f"arn:{account.partition}:sqs:{region}:{account.account_id}:{name}"]


def _kinesis(_op: str, params: Mapping[str, Any], region: str, account: Account) -> list[str]:
    if "StreamARN" in params:
        return [params["StreamARN"]]
    if "StreamName" not in params:
        return []
    stream = params["StreamName"]
    return [f"arn:{account.partition}:kinesis:{region}:{account.account_id}:stream/{stream}"]


def _glue(_op: str, params: Mapping[str, Any], region: str, account: Account) -> list[str]:
    """Glue authorizes a table call on the catalog, the database and the table."""
    prefix = f"arn:{account.partition}:glue:{region}:{account.account_id}"
    database = params.get("DatabaseName") or params.get("Name")
    if "DatabaseInput" in params:
        database = params["DatabaseInput"]["Name"]
    if not database:
        return []
    found = [f"{prefix}:catalog", f"{prefix}:database/{database}"]
    table = params.get("TableName") or (params.get("TableInput") or {}).get("Name")
    if "DatabaseName" in params and not table:
        table = params.get("Name")
    return found + ([f"{prefix}:table/{database}/{table}"] if table else [])


def _quicksight(_op: str, params: Mapping[str, Any], region: str, account: Account) -> list[str]:
    prefix = f"arn:{account.partition}:quicksight:{region}:{account.account_id}"
    if "DataSetId" in params:
        data_set = f"{prefix}:dataset/{params['DataSetId']}"
        ingestion = params.get("IngestionId")
        return [f"{data_set}/ingestion/{ingestion}" if ingestion else data_set]
    if "DataSourceId" in params:
        return [f"{prefix}:datasource/{params['DataSourceId']}"]
    if "DashboardId" in params:
        return [f"{prefix}:dashboard/{params['DashboardId']}"]
    namespace = params.get("Namespace", "default")
    if "GroupName" in params:  # a membership is authorized on its group
        return [f"{prefix}:group/{namespace}/{params['GroupName']}"]
    if "UserName" in params:
        return [f"{prefix}:user/{namespace}/{params['UserName']}"]
    return []


def _cloudformation(
    _op: str, params: Mapping[str, Any], region: str, account: Account
) -> list[str]:
    """A stack by name: its ARN ends with an id the caller does not know (``/*``)."""
    name = params.get("StackName")
    if not name:
        return []
    if name.startswith("arn:"):
        return [name]
    return [f"arn:{account.partition}:cloudformation:{region}:{account.account_id}:stack/{name}/*"]


_RESOURCES = {
    "cloudformation": _cloudformation,
    "glue": _glue,
    "quicksight": _quicksight,
    "dynamodb": _dynamodb,
    "s3": _s3,
    "sns": _sns,
    "sqs": _sqs,
    "kinesis": _kinesis,
}


class CallRecorder:
    """Records every API call made by the clients of the sessions it is attached to.

    Attach it before the component creates its clients: a client copies its session's event
    hooks when it is created."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.calls: list[RecordedCall] = []
        self._lock = threading.Lock()  # the stream writer calls from a thread pool

    def attach(self, session: Any) -> CallRecorder:
        """``session``: a boto3 ``Session`` (or anything with botocore's ``events``)."""
        session.events.register("provide-client-params.*.*", self._record)
        return self

    def _record(self, params: Mapping[str, Any], model: Any, context: Any, **_: Any) -> None:
        service = model.service_model.signing_name
        region = (context or {}).get("client_region") or ""
        found = accesses(service, model.name, params, region, self.account)
        with self._lock:
            self.calls.append(RecordedCall(service, model.name, tuple(found)))

    def accesses(self) -> list[Access]:
        return list(dict.fromkeys(a for call in self.calls for a in call.accesses))

    def operations(self) -> dict[str, set[str]]:
        """{service: operations called}"""
        found: dict[str, set[str]] = {}
        for call in self.calls:
            found.setdefault(call.service, set()).add(call.operation)
        return found


# ------------------------------------------------------------------------------ policies


@cache
def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, (re.IGNORECASE if ignore_case else 0) | re.DOTALL)


def _as_tuple(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


SUPPORTED_ELEMENTS: Final = frozenset({"Sid", "Effect", "Action", "Resource"})


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    sid: str = ""

    @classmethod
    def parse(cls, statement: Mapping[str, Any]) -> Statement:
        unsupported = set(statement) - SUPPORTED_ELEMENTS
        if unsupported:
            raise UnsupportedPolicyError(f"statement {statement.get('Sid', '')!r}: {unsupported}")
        return cls(
            effect=statement["Effect"],
            actions=_as_tuple(statement["Action"]),
            resources=_as_tuple(statement["Resource"]),
            sid=statement.get("Sid", ""),
        )

    def matches(self, access: Access) -> bool:
        """Action names are case-insensitive, ARNs are not."""
        return any(_wildcard(a, True).fullmatch(access.action) for a in self.actions) and any(
            _wildcard(r, False).fullmatch(access.resource) for r in self.resources
        )

    def grants(self) -> Iterator[Access]:
        """Every (action, resource pattern) pair the statement names."""
        for action in self.actions:
            for resource in self.resources:
                yield Access(action, resource)


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...] = field(default_factory=tuple)

    @classmethod
    def from_documents(cls, documents: Iterable[Mapping[str, Any] | str]) -> Policy:
        """From policy documents (``{"Version": ..., "Statement": [...]}``), as mappings or as
        URL-encoded JSON text (IAM's answer when boto3 does not decode it)."""
        statements = []
        for document in documents:
            if isinstance(document, str):
                document = json.loads(unquote(document))
            found = document["Statement"]
            statements += [
                Statement.parse(s) for s in ([found] if isinstance(found, dict) else found)
            ]
        return cls(tuple(statements))

    def allows(self, access: Access) -> bool:
        matching = [s for s in self.statements if s.matches(access)]
        return any(s.effect == "Allow" for s in matching) and all(
            s.effect != "Deny" for s in matching
        )

    def denied(self, accesses: Iterable[Access]) -> list[Access]:
        return [a for a in dict.fromkeys(accesses) if not self.allows(a)]

    def unused(self, accesses: Iterable[Access]) -> list[tuple[str, Access]]:
        """(sid, grant) of every allowed action and resource pattern that no access needed."""
        used = list(accesses)
        return [
            (statement.sid, grant)
            for statement in self.statements
            if statement.effect == "Allow"
            for grant in statement.grants()
            if not any(
                Statement("Allow", (grant.action,), (grant.resource,)).matches(a) for a in used
            )
        ]


# ------------------------------------------------------------------------------ templates

# The property that names a resource, and what ``Ref`` returns from that name.
# ARNs by type, from the physical id (a queue's is its URL: ``name`` is its last part).
ARN_FORMATS: Final = {
    "AWS::SQS::Queue": "arn:{partition}:sqs:{region}:{account}:{name}",
    "AWS::Kinesis::Stream": "arn:{partition}:kinesis:{region}:{account}:stream/{id}",
    "AWS::Lambda::Function": "arn:{partition}:lambda:{region}:{account}:function:{id}",
    "AWS::DynamoDB::Table": "arn:{partition}:dynamodb:{region}:{account}:table/{id}",
    "AWS::IAM::Role": "arn:{partition}:iam::{account}:role/{id}",
    "AWS::S3::Bucket": "arn:{partition}:s3:::{id}",
    "AWS::SNS::Topic": "{id}",
    "AWS::KMS::Key": "arn:{partition}:kms:{region}:{account}:key/{id}",
}

_NAMED: Final = {
    "AWS::DynamoDB::Table": ("TableName", "{name}"),
    "AWS::S3::Bucket": ("BucketName", "{name}"),
    "AWS::SNS::Topic": ("TopicName", "arn:{partition}:sns:{region}:{account}:{name}"),
    "AWS::SQS::Queue": ("QueueName", "https://sqs.{region}.amazonaws.com/{account}/{name}"),
    "AWS::Kinesis::Stream": ("Name", "{name}"),
    "AWS::Lambda::Function": ("FunctionName", "{name}"),
}
# Types named by AWS at creation (a key id): the logical id stands in for the name, so a grant
# on ``GetAtt X.Arn`` resolves to an ARN no real call can match.
_GENERATED_NAME: Final = frozenset({"AWS::KMS::Key"})


def template_intrinsics(
    template: Mapping[str, Any], parameters: Mapping[str, str], pseudo: Mapping[str, str]
) -> Intrinsics:
    """Intrinsics of a template that is not deployed: ``Ref`` and ``GetAtt X.Arn`` of every
    resource with a declared name (a deployed stack has ``physical_ids`` instead). Parameters
    not given take their ``Default``, as CloudFormation does."""
    declared = template.get("Parameters", {})
    defaults = {name: str(p["Default"]) for name, p in declared.items() if "Default" in p}
    parameters = {**defaults, **parameters}
    names = Intrinsics(template, parameters, pseudo, {})
    fields = {
        "partition": pseudo.get("AWS::Partition", "aws"),
        "region": pseudo.get("AWS::Region", ""),
        "account": pseudo.get("AWS::AccountId", ""),
    }
    physical, types = {}, {}
    for logical_id, resource in template.get("Resources", {}).items():
        kind = resource["Type"]
        if kind in _NAMED and _NAMED[kind][0] in resource.get("Properties", {}):
            name = str(names.resolve(resource["Properties"][_NAMED[kind][0]]))
            physical[logical_id] = _NAMED[kind][1].format(name=name, **fields)
            types[logical_id] = kind
        elif kind in _GENERATED_NAME:
            physical[logical_id], types[logical_id] = logical_id, kind

    def arn_of(logical_id: str) -> str:
        if logical_id not in physical or types[logical_id] not in ARN_FORMATS:
            raise UnresolvedError(f"GetAtt {logical_id}.Arn")
        pid = physical[logical_id]
        name = pid.rsplit("/", 1)[-1]
        return ARN_FORMATS[types[logical_id]].format(id=pid, name=name, **fields)

    def attribute_of(logical_id: str, attribute: str) -> str:
        """A table's StreamArn: its label is known once deployed, so any label matches."""
        if attribute != "StreamArn" or types.get(logical_id) != "AWS::DynamoDB::Table":
            raise UnresolvedError(f"GetAtt {logical_id}.{attribute}")
        return f"{arn_of(logical_id)}/stream/*"

    return Intrinsics(template, parameters, pseudo, physical, arn_of, attribute_of)


def template_policy(template: Mapping[str, Any], role_id: str, intrinsics: Intrinsics) -> Policy:
    """The inline policies of the role ``role_id``, resolved. Managed policies are not expanded
    (this project attaches only AWSLambdaBasicExecutionRole, for CloudWatch Logs, which the
    Lambda service uses, not the code)."""
    role = template["Resources"][role_id]
    if role["Type"] != "AWS::IAM::Role":
        raise ValueError(f"{role_id} is a {role['Type']}, not an AWS::IAM::Role")
    documents = [p["PolicyDocument"] for p in role["Properties"].get("Policies", [])]
    return Policy.from_documents(intrinsics.resolve(documents))


def roles(template: Mapping[str, Any]) -> list[str]:
    """Logical ids of the template's IAM roles."""
    return [
        lid for lid, r in template.get("Resources", {}).items() if r["Type"] == "AWS::IAM::Role"
    ]
