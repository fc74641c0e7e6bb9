"""IAM enforced by the embedded AWS: moto's own access control, switched on, with its principals.

moto authenticates (SigV4 against the keys it holds) and authorizes (the caller's identity
policies) every request once its no-auth action count is spent (moto.settings
INITIAL_NO_AUTH_ACTION_COUNT, infinite by default). The embedded AWS sets it to 0 after creating
its principals directly in moto's IAM backend, so an unknown key is refused and a policy that
lacks an action answers AccessDenied, as AWS does.

Four users, with fixed local keys (loopback only, like moto's own "testing"):

* ``ADMIN`` sets things up: test fixtures, the platform's provisioning and demo seeding.
* ``DEPLOYER`` is Airflow's ``aws_default``: infra/iam/deployment-policy.json, the policy to
  give a deployment role on a real account.
* ``DASHBOARD`` is the Airflow API server, which serves the dashboard:
  infra/iam/dashboard-policy.json, read-mostly (the live tables, the lake's curated zone; it
  writes only the settings the dashboard edits).
* ``LAMBDA_SERVICE`` stands for the Lambda service: it may only assume roles, and a role's trust
  policy naming ``lambda.amazonaws.com`` trusts it (moto cannot evaluate service principals).

Where moto falls short of AWS, this module patches it (infra/local/embedded_aws_gaps.json):
the resource of DynamoDB, SNS, Kinesis, CloudFormation and Lambda requests (moto checks only
S3, SQS, IAM roles and sts:AssumeRole against a resource; every other request is checked against
"*", which no resource-scoped statement matches), AccessDenied in the JSON services' own error
format, and inline policies of stack-created roles stored as JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from storepulse.config import REPO_ROOT

ACCOUNT_ID = "123456789012"  # moto's default account
DEPLOYMENT_POLICY_FILE = REPO_ROOT / "infra" / "iam" / "deployment-policy.json"
DASHBOARD_POLICY_FILE = REPO_ROOT / "infra" / "iam" / "dashboard-policy.json"
LAMBDA_SERVICE_PRINCIPAL = "lambda.amazonaws.com"
# A function role's trust policy, as the stack's roles have it (for tests and benchmarks).
LAMBDA_TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": LAMBDA_SERVICE_PRINCIPAL},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)
_ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
_ASSUME_ROLES_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}],
}


@dataclass(frozen=True)
class Principal:
    """An IAM user of the embedded AWS with one inline policy and one fixed access key."""

    user_name: str
    access_key_id: str
    secret_access_key: str
    policy: Callable[[], dict[str, Any]]

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{ACCOUNT_ID}:user/{self.user_name}"

    def environment(self) -> dict[str, str]:
        """The variables that make boto3 sign as this principal."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }

    def session(self, region: str = "us-east-1") -> boto3.Session:
        """A boto3 session that signs as this principal (endpoint: ``AWS_ENDPOINT_URL``)."""
        return boto3.Session(
            region_name=region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def assume(self, role_arn: str, session_name: str, region: str = "us-east-1") -> boto3.Session:
        """A session signing with the role's temporary credentials, as this principal assumed
        it: ``LAMBDA_SERVICE.assume(...)`` gets what Lambda gives a function (IAM enforced)."""
        sts = self.session(region).client("sts")
        credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name)
        return boto3.Session(
            region_name=region,
            aws_access_key_id=credentials["Credentials"]["AccessKeyId"],
            aws_secret_access_key=credentials["Credentials"]["SecretAccessKey"],
            aws_session_token=credentials["Credentials"]["SessionToken"],
        )


def deployment_policy() -> dict[str, Any]:
    return json.loads(DEPLOYMENT_POLICY_FILE.read_text())


def dashboard_policy() -> dict[str, Any]:
    return json.loads(DASHBOARD_POLICY_FILE.read_text())


ADMIN = Principal(
    "storepulse-local-admin",
    "AKIASTOREPULSEADMIN0",
    "local-admin-secret-not-a-real-key-000000",
    lambda: _ADMIN_POLICY,
)
DEPLOYER = Principal(
    "storepulse-local-deployer",
    "AKIASTOREPULSEDEPLOY",
    "local-deployer-secret-not-a-real-key-000",
    deployment_policy,
)
LAMBDA_SERVICE = Principal(
    "storepulse-local-lambda-service",
    "AKIASTOREPULSELAMBDA",
    "local-lambda-secret-not-a-real-key-00000",
    lambda: _ASSUME_ROLES_POLICY,
)
DASHBOARD = Principal(
    "storepulse-local-dashboard",
    "AKIASTOREPULSEDASHBD",
    "local-dashboard-secret-not-a-real-key-00",
    dashboard_policy,
)
PRINCIPALS = (ADMIN, DEPLOYER, LAMBDA_SERVICE, DASHBOARD)
# The stand-ins for AWS services in trust policies (Principal: {"Service": ...}).
SERVICE_STAND_INS = {LAMBDA_SERVICE.arn: LAMBDA_SERVICE_PRINCIPAL}


def create_principals(account_id: str = ACCOUNT_ID) -> None:
    """Create the principals in moto's IAM backend directly (no request, so no authorization);
    again after every reset, which forgets them."""
    from moto.iam.models import iam_backends

    backend = iam_backends[account_id]["aws"]
    existing = {u.name for u in backend.list_users("/", None, None)}
    for principal in PRINCIPALS:
        # A restored snapshot holds the users and keys already; their policy is refreshed, so
        # an edited infra/iam policy applies on the next start.
        if principal.user_name in existing:
            backend.put_user_policy(principal.user_name, "access", json.dumps(principal.policy()))
            continue
        backend.create_user("us-east-1", principal.user_name)
        backend.put_user_policy(principal.user_name, "access", json.dumps(principal.policy()))
        key = backend.create_access_key(principal.user_name)
        del backend.access_keys[key.physical_resource_id]
        key.access_key_id = principal.access_key_id
        key.secret_access_key = principal.secret_access_key
        backend.access_keys[key.physical_resource_id] = key


def credentials_of(access_key_id: str) -> tuple[str, str | None]:
    """(secret, session token) of a key moto holds: an IAM user's or an assumed role's. For
    the embedded AWS's own services acting with their caller's identity (local QuickSight)."""
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    for account in list(iam_backends.values()):
        key = account["aws"].access_keys.get(access_key_id)
        if key is not None:
            return key.secret_access_key, None
    for account in list(sts_backends.values()):
        for role in account["aws"].assumed_roles:
            if role.access_key_id == access_key_id:
                return role.secret_access_key, role.session_token
    return "unknown", None


def enforce() -> None:
    """Switch moto's access control on for every later request of this process."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    _patch_moto()
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0


# --- where moto's access control falls short of AWS ---------------------------------------------


def _patch_moto() -> None:
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam.access_control import IAMPolicyStatement, IAMRequestBase

    if getattr(ActionAuthenticatorMixin, "_storepulse_patched", False):
        return  # one patch per process, however many servers start
    ActionAuthenticatorMixin._storepulse_patched = True  # type: ignore[attr-defined]
    _authorize_each_resource(ActionAuthenticatorMixin)
    _authorize_s3_with_iam_action_names(ActionAuthenticatorMixin)
    _sign_bodiless_requests_as_sent(IAMRequestBase)
    _unknown_resource_matches_any(IAMPolicyStatement)
    _trust_service_stand_ins(IAMPolicyStatement)
    _store_stack_role_policies_as_json()


def _authorize_each_resource(mixin: Any) -> None:
    """Authorize a request against the resources it names (each table of a BatchWriteItem,
    ...), where moto passes "*" for every service but S3, SQS, IAM roles and STS; and answer
    AccessDenied in the JSON services' format (moto answers S3-style XML, which botocore cannot
    read, so the caller would see "403" instead of AccessDeniedException)."""
    from moto.core.exceptions import (
        AccessDeniedError,
        InvalidClientTokenIdError,
        JsonRESTError,
        SignatureDoesNotMatchError,
    )

    json_errors = {  # the codes AWS's JSON services answer
        AccessDeniedError: "AccessDeniedException",
        InvalidClientTokenIdError: "UnrecognizedClientException",
        SignatureDoesNotMatchError: "InvalidSignatureException",
    }
    authorize = mixin._authenticate_and_authorize_normal_action

    def authorize_resources(self: Any, resource: str = "*") -> None:
        resources = _request_resources(self) if resource == "*" else [resource]
        try:
            for each in resources or ["*"]:
                authorize(self, each)
        except tuple(json_errors) as exc:
            if _is_json_protocol(self):
                error = JsonRESTError(json_errors[type(exc)], exc.message)
                error.code = exc.code
                raise error from exc
            raise

    mixin._authenticate_and_authorize_normal_action = authorize_resources


# moto names some S3 requests by API operation (or the method's default, CreateBucket for a
# PUT) where IAM has its own action name.
_S3_SUBRESOURCE_ACTIONS = {
    "encryption": {
        "GET": "GetEncryptionConfiguration",
        "PUT": "PutEncryptionConfiguration",
        "DELETE": "PutEncryptionConfiguration",
    },
    "ownershipControls": {
        "GET": "GetBucketOwnershipControls",
        "PUT": "PutBucketOwnershipControls",
        "DELETE": "PutBucketOwnershipControls",
    },
    "publicAccessBlock": {
        "GET": "GetBucketPublicAccessBlock",
        "PUT": "PutBucketPublicAccessBlock",
        "DELETE": "PutBucketPublicAccessBlock",
    },
}


def _authorize_s3_with_iam_action_names(mixin: Any) -> None:
    """S3 requests are authorized as IAM names them (HeadBucket is s3:ListBucket, GET
    ?encryption is s3:GetEncryptionConfiguration, ...), and DeleteObjects key by key (moto checks
    s3:DeleteObject on the bucket's ARN, which no object grant matches)."""
    from urllib.parse import parse_qs, urlparse

    import xmltodict

    authorize = mixin._authenticate_and_authorize_s3_action

    def authorize_s3(
        self: Any, bucket_name: str | None = None, key_name: str | None = None
    ) -> None:
        query = parse_qs(urlparse(self.uri).query, keep_blank_values=True)
        for subresource, actions in _S3_SUBRESOURCE_ACTIONS.items():
            if subresource in query and self.method in actions:
                self.data["Action"] = actions[self.method]
        if self.data.get("Action") == "HeadBucket":
            self.data["Action"] = "ListBucket"
        if "delete" in query and self.method == "POST" and bucket_name and not key_name:
            objects = xmltodict.parse(self.body or b"<Delete/>").get("Delete") or {}
            listed = objects.get("Object", []) if isinstance(objects, dict) else []
            for item in listed if isinstance(listed, list) else [listed]:
                authorize(self, bucket_name=bucket_name, key_name=item["Key"])
            return
        authorize(self, bucket_name=bucket_name, key_name=key_name)

    mixin._authenticate_and_authorize_s3_action = authorize_s3


def _sign_bodiless_requests_as_sent(request_cls: Any) -> None:
    """moto recomputes a signature over the request's form data when its body is empty, and for
    a GET or DELETE without a query (Lambda's GetFunction, DeleteFunction, ...) that data is the
    request's headers: the signature would never match. It covers the body as sent (empty)."""
    create = request_cls._create_aws_request

    def create_aws_request(self: Any) -> Any:
        if self._body or self._method not in {"GET", "HEAD", "DELETE"}:
            return create(self)  # a form POST's data is its body (query protocol)
        data, self._data = self._data, {}
        try:
            return create(self)
        finally:
            self._data = data

    request_cls._create_aws_request = create_aws_request


def _is_json_protocol(response: Any) -> bool:
    headers = response.headers
    content_type = headers.get("Content-Type", "") or ""
    return (
        bool(headers.get("X-Amz-Target"))
        or response.service_name
        in {
            "awslambda",
            "quicksight",
        }
        or "json" in content_type
    )


def _json_body(response: Any) -> dict[str, Any]:
    try:
        body = json.loads(response.raw_body or b"{}")
    except (ValueError, TypeError):
        return {}
    return body if isinstance(body, dict) else {}


def _query(response: Any, name: str) -> str | None:
    values = response.querystring.get(name)
    return values[0] if values else None


def _request_resources(response: Any) -> list[str]:
    """The ARNs of the resources a request acts on, as IAM matches them; [] when unknown."""
    region, account = response.region, response.current_account
    service = response.service_name
    if service == "dynamodb":
        body = _json_body(response)
        table = f"arn:aws:dynamodb:{region}:{account}:table/"
        names = list(body.get("RequestItems") or {})
        names += [
            op["TableName"]
            for item in body.get("TransactItems") or []
            for op in item.values()
            if isinstance(op, dict) and "TableName" in op
        ]
        if "TableName" in body:
            names.append(body["TableName"])
        arns = [n if n.startswith("arn:") else table + n for n in names]
        if "TableArn" in body:  # ExportTableToPointInTime
            arns.append(body["TableArn"])
        if "ExportArn" in body:  # DescribeExport: arn of the table's export
            arns.append(body["ExportArn"])
        return arns
    if service == "sns":
        arn = _query(response, "TopicArn") or _query(response, "TargetArn")
        if not arn and _query(response, "Action") == "CreateTopic":
            arn = f"arn:aws:sns:{region}:{account}:{_query(response, 'Name')}"
        if not arn and (resource_arn := _query(response, "ResourceArn")):
            arn = resource_arn
        return [arn] if arn else []
    if service == "kinesis":
        body = _json_body(response)
        if "StreamARN" in body:
            return [body["StreamARN"]]
        if "StreamName" in body:
            return [f"arn:aws:kinesis:{region}:{account}:stream/{body['StreamName']}"]
        return []
    if service == "cloudformation":
        name = _query(response, "StackName")
        if not name:
            return []
        if name.startswith("arn:"):
            return [name]
        return [f"arn:aws:cloudformation:{region}:{account}:stack/{name}/*"]
    if service == "awslambda":
        match = re.search(r"/functions/([^/?]+)", response.path or "")
        if not match:
            return []
        name = match.group(1).split(":")[-1] if match.group(1).startswith("arn:") else None
        name = name or match.group(1)
        return [f"arn:aws:lambda:{region}:{account}:function:{name}"]
    return []


def _unknown_resource_matches_any(statement_cls: Any) -> None:
    """A request whose resource moto does not know ("*": Glue, QuickSight, KMS, Logs,
    CloudWatch, ...) is authorized on its action alone: any statement's Resource matches it,
    instead of none but "*" (which would refuse every resource-scoped grant)."""
    matches = statement_cls._check_element_matches

    def check_element_matches(self: Any, statement_element: Any, value: str) -> bool:
        if statement_element == "Resource" and value == "*":
            return True
        return bool(matches(self, statement_element, value))

    statement_cls._check_element_matches = check_element_matches


def _trust_service_stand_ins(statement_cls: Any) -> None:
    """A trust policy's {"Service": "lambda.amazonaws.com"} trusts the Lambda service's
    stand-in; moto compares only {"AWS": ...} principals (and fails on a Service one)."""
    check = statement_cls._check_principal

    def check_principal(self: Any, principal: str) -> bool:
        expected = self._statement.get("Principal")
        if isinstance(expected, dict) and "AWS" not in expected:
            services = expected.get("Service", [])
            services = [services] if isinstance(services, str) else services
            return SERVICE_STAND_INS.get(principal) in services
        return bool(check(self, principal))

    statement_cls._check_principal = check_principal


def _store_stack_role_policies_as_json() -> None:
    """moto's CloudFormation keeps an AWS::IAM::Role's inline PolicyDocument as the template's
    mapping: GetRolePolicy answers its Python repr and the access control cannot read it (an
    assumed role's every call would fail). IAM keeps JSON text, and so does this patch."""
    from moto.iam.models import Role

    create = Role.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create_with_json_policies(
        cls: Any,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kw: Any,
    ) -> Any:
        properties = cloudformation_json.get("Properties") or {}
        policies = [
            {**p, "PolicyDocument": json.dumps(p["PolicyDocument"])}
            if isinstance(p.get("PolicyDocument"), dict)
            else p
            for p in properties.get("Policies") or []
        ]
        cloudformation_json = {
            **cloudformation_json,
            "Properties": {**properties, "Policies": policies},
        }
        return create(cls, resource_name, cloudformation_json, account_id, region_name, **kw)

    Role.create_from_cloudformation_json = classmethod(create_with_json_policies)  # type: ignore[method-assign,assignment]
