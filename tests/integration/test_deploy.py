"""Deploying the real-time path on the embedded AWS: the library functions the DAGs call (create,
no-op, update, failures with their reasons, verification, smoke test, teardown), and the two DAGs
end to end with ``dag.test()``."""

from __future__ import annotations

import base64
import importlib.util
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from storepulse.config import REPO_ROOT
from storepulse.deploy.lint import TemplateLintError, check_template
from storepulse.deploy.package import (
    BuiltPackage,
    artifact_key,
    artifacts_bucket,
    build_lambda_zip,
    upload_package,
)
from storepulse.deploy.permissions import Account, CallRecorder, Policy
from storepulse.deploy.smoke import SmokeTestError, run_smoke_test
from storepulse.deploy.stack import (
    DeployResult,
    StackDeployError,
    deploy_stack,
    describe_stack,
    load_parameters,
    physical_ids,
)
from storepulse.deploy.teardown import bucket_usage, retained_resources, still_existing
from storepulse.deploy.verify import (
    FAILED,
    GAP,
    NOT_DEPLOYED,
    OK,
    VerificationError,
    embedded_aws_gaps,
    verify_stack,
)
from storepulse.stream.records import StreamRecord, lambda_event
from storepulse.stream.smoke import smoke_key
from storepulse_local.lambda_context import LambdaContext
from tests.dag_runs import airflow_home, run_dags

TEMPLATE = REPO_ROOT / "infra" / "cloudformation" / "realtime.yaml"
FUNCTION_DIR = REPO_ROOT / "lambdas" / "stream_processor"
ACCOUNT = "123456789012"  # moto's default account
STACK = "storepulse-dev-realtime"
BUCKET = artifacts_bucket("dev", ACCOUNT)
RETAINED = {
    "MetricsTable",
    "InventoryTable",
    "FactsTable",
    "SettingsTable",
    "LakeBucket",
    "EventStream",
    "DeadLetterQueue",
    "AlertTopicKey",
}
# Skipped by moto: see infra/local/embedded_aws_gaps.json.
ALARMS = {"IteratorAgeAlarm", "ErrorsAlarm", "DeadLetterQueueAlarm", "QuarantineRateAlarm"}
SKIPPED = ALARMS | {"LakeBucketPolicy"}

# moto warns once per type it skips (the alarms); that is what the known gaps are about.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS.+:UserWarning")

Client = Callable[[str], Any]


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("build")


@pytest.fixture(scope="module")
def package(build_dir: Path) -> BuiltPackage:
    return build_lambda_zip(FUNCTION_DIR, build_dir)


@pytest.fixture(scope="module")
def changed_package(build_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> BuiltPackage:
    """The same handler with one more byte (a temporary copy of the folder)."""
    folder = tmp_path_factory.mktemp("changed") / "stream_processor"
    shutil.copytree(FUNCTION_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    handler = folder / "handler.py"
    handler.write_bytes(handler.read_bytes() + b"\n")
    return build_lambda_zip(folder, build_dir)


@dataclass
class Deployer:
    """Upload a package and deploy the stack the way the DAG does, without Airflow."""

    aws_client: Client

    def __call__(self, package: BuiltPackage, template_body: str | None = None) -> DeployResult:
        s3 = self.aws_client("s3")
        if not _bucket_exists(s3, BUCKET):
            s3.create_bucket(Bucket=BUCKET)
        key, _ = upload_package(s3, package, BUCKET)
        return deploy_stack(
            self.aws_client("cloudformation"),
            stack_name=STACK,
            template_body=template_body or TEMPLATE.read_text(),
            parameters=load_parameters("dev", code_bucket=BUCKET, code_key=key),
            waiter_delay=0.1,
            waiter_max_attempts=100,
        )


def _bucket_exists(s3: Any, bucket: str) -> bool:
    return any(b["Name"] == bucket for b in s3.list_buckets()["Buckets"])


@pytest.fixture
def deploy(aws_client: Client) -> Deployer:
    return Deployer(aws_client)


def _function(aws_client: Client) -> dict[str, Any]:
    return aws_client("lambda").get_function(FunctionName="storepulse-dev-stream-processor")


# ------------------------------------------------------------------------------ deploy


def test_first_deploy_creates_and_the_same_zip_again_is_a_no_op(
    deploy: Deployer,
    aws_client: Client,
    package: BuiltPackage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    created = deploy(package)
    assert (created.action, created.status) == ("create", "CREATE_COMPLETE")
    assert created.change_set and {c.action for c in created.changes} == {"Add"}
    assert "StreamProcessorFunction" in {c.logical_id for c in created.changes}
    assert created.outputs["StreamName"] == "storepulse-dev-events"
    assert created.outputs["FunctionName"] == "storepulse-dev-stream-processor"

    cfn = aws_client("cloudformation")
    before = describe_stack(cfn, STACK)
    events = cfn.describe_stack_events(StackName=STACK)["StackEvents"]
    change_sets = cfn.list_change_sets(StackName=STACK)["Summaries"]

    caplog.set_level("INFO", logger="storepulse.deploy.stack")
    again = deploy(package)
    assert (again.action, again.change_set, again.changes) == ("none", None, ())
    assert again.outputs == created.outputs
    assert "no changes" in caplog.text
    after = describe_stack(cfn, STACK)
    assert after and before
    assert after.get("LastUpdatedTime") == before.get("LastUpdatedTime")
    assert cfn.describe_stack_events(StackName=STACK)["StackEvents"] == events
    assert cfn.list_change_sets(StackName=STACK)["Summaries"] == change_sets
    assert aws_client("s3").list_objects_v2(Bucket=BUCKET)["KeyCount"] == 1


def test_a_changed_handler_updates_the_functions_code(
    deploy: Deployer,
    aws_client: Client,
    package: BuiltPackage,
    changed_package: BuiltPackage,
) -> None:
    deploy(package)
    first = _function(aws_client)
    assert artifact_key(package) in first["Code"]["Location"]

    updated = deploy(changed_package)
    assert (updated.action, updated.status) == ("update", "UPDATE_COMPLETE")
    second = _function(aws_client)
    assert second["Code"]["Location"] != first["Code"]["Location"]
    assert artifact_key(changed_package) in second["Code"]["Location"]
    code_sha = base64.b64encode(bytes.fromhex(changed_package.sha256)).decode()
    assert second["Configuration"]["CodeSha256"] == code_sha
    stack = describe_stack(aws_client("cloudformation"), STACK) or {}
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert parameters["LambdaCodeKey"] == artifact_key(changed_package)


def test_cfn_lint_stops_an_invalid_property_value(tmp_path: Path) -> None:
    broken = tmp_path / "realtime.yaml"
    broken.write_text(TEMPLATE.read_text().replace("Runtime: python3.11", "Runtime: python3.1"))
    with pytest.raises(TemplateLintError) as raised:
        check_template(broken)
    assert "E3030" in str(raised.value) and "'python3.1'" in str(raised.value)
    assert [f.rule_id for f in raised.value.findings if f.is_error] == ["E3030"]


def test_a_resource_failing_at_creation_is_named_with_the_reason(
    deploy: Deployer, package: BuiltPackage, tmp_path: Path
) -> None:
    """cfn-lint cannot know that a function does not exist; the deploy must say which resource
    failed and why."""
    body = TEMPLATE.read_text().replace(
        "FunctionName: !Ref StreamProcessorFunction",
        "FunctionName: !Sub storepulse-${EnvName}-missing-function",
    )
    (tmp_path / "realtime.yaml").write_text(body)
    assert [f for f in check_template(tmp_path / "realtime.yaml") if not f.calendar] == []
    with pytest.raises(StackDeployError) as raised:
        deploy(package, template_body=body)
    (failure,) = raised.value.failures
    assert failure.logical_id == "StreamEventSourceMapping"
    assert "Function not found" in failure.reason
    assert "storepulse-dev-missing-function" in failure.reason
    assert "StreamEventSourceMapping" in str(raised.value)


class ScriptedCloudFormation:
    """CloudFormation as AWS answers an update that fails and rolls back, which the embedded AWS
    cannot show (it never rolls back and records no resource events). Right after
    execute_change_set the stack still shows its previous state, as on AWS."""

    STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/storepulse-dev-realtime/1"

    def __init__(self, states: list[tuple[str, list[tuple[str, str, str]]]]) -> None:
        self.status = "UPDATE_COMPLETE"
        self.events: list[dict[str, Any]] = []
        self.events.append(self._event(STACK, "UPDATE_COMPLETE", ""))
        self.script = states  # after execution, per describe_stacks: (status, new events)
        self.executed = False

    def _event(self, logical_id: str, status: str, reason: str) -> dict[str, Any]:
        kind = "AWS::CloudFormation::Stack" if logical_id == STACK else "AWS::Lambda::Function"
        return {
            "EventId": f"e{len(self.events)}",
            "LogicalResourceId": logical_id,
            "ResourceType": kind,
            "ResourceStatus": status,
            "ResourceStatusReason": reason,
        }

    def describe_stacks(self, StackName: str) -> dict[str, Any]:  # noqa: N803 (boto3's names)
        if self.executed and self.script:
            self.status, events = self.script.pop(0)
            for event in events:
                self.events.append(self._event(*event))
        parameters = [{"ParameterKey": "LambdaCodeKey", "ParameterValue": "lambda/old.zip"}]
        stack = {"StackName": StackName, "StackId": self.STACK_ID, "Parameters": parameters}
        return {"Stacks": [{**stack, "StackStatus": self.status}]}

    def get_template(self, **_: Any) -> dict[str, Any]:
        return {"TemplateBody": TEMPLATE.read_text()}

    def create_change_set(self, **_: Any) -> None:
        pass

    def describe_change_set(self, **_: Any) -> dict[str, Any]:
        change = {
            "Action": "Modify",
            "LogicalResourceId": "StreamProcessorFunction",
            "ResourceType": "AWS::Lambda::Function",
            "Replacement": "False",
        }
        return {"Status": "CREATE_COMPLETE", "Changes": [{"ResourceChange": change}]}

    def describe_stack_events(self, **_: Any) -> dict[str, Any]:
        return {"StackEvents": self.events[::-1]}

    def execute_change_set(self, **_: Any) -> None:
        self.executed = True

    def _botocore(self) -> Any:
        """A botocore client whose calls are this script's: its waiters and paginators run
        botocore's own logic over the scripted answers."""
        client = boto3.client(
            "cloudformation",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for name in ("describe_change_set", "describe_stack_events", "describe_stacks"):
            setattr(client, name, getattr(self, name))
        return client

    def get_waiter(self, name: str) -> Any:
        return self._botocore().get_waiter(name)

    def get_paginator(self, name: str) -> Any:
        return self._botocore().get_paginator(name)


def _deploy_scripted(cfn: ScriptedCloudFormation, max_attempts: int = 500) -> DeployResult:
    return deploy_stack(
        cfn,
        stack_name=STACK,
        template_body=TEMPLATE.read_text(),
        parameters=load_parameters("dev", code_bucket=BUCKET, code_key="lambda/new.zip"),
        waiter_delay=0.01,
        waiter_max_attempts=max_attempts,
    )


def test_a_failed_update_names_the_resource_and_says_it_rolled_back() -> None:
    reason = "Error occurred while GetObject. S3 Error Code: NoSuchKey"
    cfn = ScriptedCloudFormation(
        [
            ("UPDATE_COMPLETE", []),  # not started yet: the previous state
            ("UPDATE_IN_PROGRESS", [(STACK, "UPDATE_IN_PROGRESS", "User Initiated")]),
            (
                "UPDATE_ROLLBACK_IN_PROGRESS",
                [
                    ("StreamProcessorFunction", "UPDATE_IN_PROGRESS", ""),
                    ("StreamProcessorFunction", "UPDATE_FAILED", reason),
                    (STACK, "UPDATE_ROLLBACK_IN_PROGRESS", "failed: [StreamProcessorFunction]"),
                ],
            ),
            ("UPDATE_ROLLBACK_COMPLETE", [(STACK, "UPDATE_ROLLBACK_COMPLETE", "")]),
        ]
    )
    with pytest.raises(StackDeployError) as raised:
        _deploy_scripted(cfn)
    (failure,) = raised.value.failures
    assert (failure.logical_id, failure.status, failure.reason) == (
        "StreamProcessorFunction",
        "UPDATE_FAILED",
        reason,
    )
    assert "ended UPDATE_ROLLBACK_COMPLETE" in str(raised.value)
    assert "the previous version keeps serving" in str(raised.value)


def test_a_stack_stuck_in_progress_fails_at_the_timeout() -> None:
    stuck = [("UPDATE_IN_PROGRESS", [(STACK, "UPDATE_IN_PROGRESS", "User Initiated")])] * 1000
    with pytest.raises(StackDeployError, match="still UPDATE_IN_PROGRESS at the timeout"):
        _deploy_scripted(ScriptedCloudFormation(stuck), max_attempts=20)


# ------------------------------------------------------------------------------ verify


def test_verify_checks_every_resource_and_reports_the_embedded_gaps(
    deploy: Deployer,
    aws_client: Client,
    package: BuiltPackage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The DAG's call: no gap list passed, the file's applies (to resources listed without a
    physical id, which only the embedded AWS lists)."""
    deploy(package)
    caplog.set_level("INFO", logger="storepulse.deploy.verify")
    report = verify_stack(aws_client, STACK, code_sha256=package.sha256)
    status = {c.logical_id: c.status for c in report.checks}
    assert {lid for lid, s in status.items() if s == GAP} == SKIPPED
    conditional = {
        "AlertEmailSubscription",  # no AlertEmail in dev.json
        # no ChangeCaptureCodeKey: this deploy has no change capture (the DAG's deploys do)
        "ChangeCaptureRole",
        "ChangeCaptureLogGroup",
        "ChangeCaptureFunction",
        "FactsChangesMapping",
        "MetricsChangesMapping",
        "InventoryChangesMapping",
    }
    assert {lid for lid, s in status.items() if s == NOT_DEPLOYED} == conditional
    assert {lid for lid, s in status.items() if s == OK} == set(status) - SKIPPED - conditional
    assert report.summary() == {
        "resources_declared": 26,
        "resources_checked": 19,
        "ok": 14,
        "known_gaps": 5,
        "failed": 0,
        "not_deployed": 7,
    }
    assert "listed without a physical id (known gap)" in caplog.text
    assert "19 resources checked: 14 ok, 5 known gaps, 0 failed" in caplog.text


def test_verify_without_the_gap_list_fails_on_what_moto_skipped(
    deploy: Deployer, aws_client: Client, package: BuiltPackage
) -> None:
    """With no gap listed nothing is excused: a resource without a physical id fails."""
    deploy(package)
    with pytest.raises(VerificationError) as raised:
        verify_stack(aws_client, STACK, known_gaps={})
    assert {c.logical_id for c in raised.value.report.failures} == SKIPPED


def test_verify_names_a_resource_deleted_behind_cloudformations_back(
    deploy: Deployer, aws_client: Client, package: BuiltPackage
) -> None:
    """A resource with a physical id that its service does not know fails, gap or not."""
    outputs = deploy(package).outputs
    aws_client("sqs").delete_queue(QueueUrl=outputs["DeadLetterQueueUrl"])
    gaps = embedded_aws_gaps() | {"AWS::SQS::Queue": "not excused: the queue has an id"}
    with pytest.raises(VerificationError) as raised:
        verify_stack(aws_client, STACK, known_gaps=gaps)
    failed = {c.logical_id: c.detail for c in raised.value.report.failures}
    assert "missing" in failed["DeadLetterQueue"]
    # The mapping's on-failure destination is that queue: it cannot be resolved any more.
    assert set(failed) == {"DeadLetterQueue", "StreamEventSourceMapping"}
    assert "DeadLetterQueue (AWS::SQS::Queue): missing" in str(raised.value)
    assert raised.value.report.count(FAILED) == 2


def test_verify_notices_code_other_than_the_uploaded_zip(
    deploy: Deployer, aws_client: Client, package: BuiltPackage, changed_package: BuiltPackage
) -> None:
    deploy(package)
    with pytest.raises(VerificationError, match="CodeSha256"):
        verify_stack(aws_client, STACK, code_sha256=changed_package.sha256)


# ------------------------------------------------------------------------------ smoke test


def _load_handler() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deployed_handler", FUNCTION_DIR / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class StreamPoller:
    """A minimal stand-in for Lambda's event source mapping: reads the stream from its start and
    invokes the handler with each batch (the project's local runtime does this for `make up`)."""

    def __init__(self, kinesis: Any, stream_name: str, handler: ModuleType) -> None:
        self.kinesis, self.stream_name, self.handler = kinesis, stream_name, handler
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            summary = self.kinesis.describe_stream(StreamName=self.stream_name)
            description = summary["StreamDescription"]
            iterators = {
                shard["ShardId"]: self.kinesis.get_shard_iterator(
                    StreamName=self.stream_name,
                    ShardId=shard["ShardId"],
                    ShardIteratorType="TRIM_HORIZON",
                )["ShardIterator"]
                for shard in description["Shards"]
            }
            while not self.stop.wait(0.05):
                for shard_id, iterator in iterators.items():
                    iterators[shard_id] = self._poll(description["StreamARN"], shard_id, iterator)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def _poll(self, stream_arn: str, shard_id: str, iterator: str) -> str:
        page = self.kinesis.get_records(ShardIterator=iterator, Limit=100)
        records = [
            StreamRecord(
                shard_id,
                r["SequenceNumber"],
                r["PartitionKey"],
                r["Data"],
                r["ApproximateArrivalTimestamp"],
            )
            for r in page["Records"]
        ]
        if records:
            event = lambda_event(records, stream_arn, "us-east-1", "arn:aws:iam::role/x")
            self.handler.handler(event, LambdaContext("storepulse-dev-stream-processor"))
        return page["NextShardIterator"]

    def __enter__(self) -> StreamPoller:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[dict[str, str]], ModuleType]]:
    """The handler module, configured with a function's environment variables."""
    loaded: list[ModuleType] = []

    def load(environment: dict[str, str]) -> ModuleType:
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        module = _load_handler()
        loaded.append(module)
        return module

    yield load
    for module in loaded:
        module.processor.cache_clear()


def _deployed_role_policy(aws_client: Client) -> Policy:
    """The function's role as IAM holds it (the template's policies, resolved by the stack; the
    embedded AWS stores them as JSON, as IAM does: infra/local/embedded_aws_gaps.json)."""
    iam = aws_client("iam")
    role = physical_ids(aws_client("cloudformation"), STACK)["StreamProcessorRole"]
    names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    documents = [iam.get_role_policy(RoleName=role, PolicyName=n)["PolicyDocument"] for n in names]
    return Policy.from_documents(documents)


def test_smoke_event_travels_the_deployed_path(
    deploy: Deployer,
    aws_client: Client,
    package: BuiltPackage,
    handler: Callable[[dict[str, str]], ModuleType],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The smoke event makes every kind of call of the real-time path, each allowed by the
    deployed role (the handler's calls are recorded and checked against the role's statements;
    tests/integration/test_iam_enforced.py runs it with the role's credentials)."""
    outputs = deploy(package).outputs
    environment = _function(aws_client)["Configuration"]["Environment"]["Variables"]
    kinesis, dynamodb, poller_kinesis = (aws_client(s) for s in ("kinesis", "dynamodb", "kinesis"))
    role_policy = _deployed_role_policy(aws_client)
    function_session = boto3.Session()  # the handler's default session, recorded
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", function_session)
    recorder = CallRecorder(Account(ACCOUNT)).attach(function_session)
    with StreamPoller(poller_kinesis, outputs["StreamName"], handler(environment)) as poller:
        result = run_smoke_test(
            kinesis,
            dynamodb,
            stream_name=outputs["StreamName"],
            facts_table=outputs["FactsTable"],
            timeout=30,
            poll_interval=0.1,
        )
    assert not poller.errors, poller.errors
    assert 0 < result.latency_seconds < 30
    key = smoke_key(result.event_id)
    item = dynamodb.get_item(
        TableName=outputs["FactsTable"], Key={"pk": {"S": key.pk}, "sk": {"S": key.sk}}
    )["Item"]
    assert item["type"] == {"S": "smoke"}
    assert {"BatchGetItem", "BatchWriteItem"} <= recorder.operations()["dynamodb"]
    denied = role_policy.denied(recorder.accesses())
    assert not denied, "the deployed role does not allow:\n" + "\n".join(map(str, denied))


def test_smoke_test_says_what_to_start_when_nothing_answers(
    deploy: Deployer, aws_client: Client, package: BuiltPackage
) -> None:
    outputs = deploy(package).outputs
    with pytest.raises(SmokeTestError, match=r"not processed within 1 s.+lambda_runtime"):
        run_smoke_test(
            aws_client("kinesis"),
            aws_client("dynamodb"),
            stream_name=outputs["StreamName"],
            facts_table=outputs["FactsTable"],
            timeout=1,
            poll_interval=0.2,
        )


# ------------------------------------------------------------------------------ teardown


def test_teardown_leaves_the_retained_stateful_resources(
    deploy: Deployer, aws_client: Client, package: BuiltPackage
) -> None:
    deploy(package)
    cfn = aws_client("cloudformation")
    retained = retained_resources(cfn, STACK)
    assert {r.logical_id for r in retained} == RETAINED

    cfn.delete_stack(StackName=STACK)
    assert describe_stack(cfn, STACK) is None
    assert still_existing(aws_client, retained) == retained
    assert aws_client("kinesis").list_streams()["StreamNames"] == ["storepulse-dev-events"]
    assert aws_client("lambda").list_functions()["Functions"] == []
    assert bucket_usage(aws_client("s3"), BUCKET) == (1, package.size)
    assert retained_resources(cfn, STACK) == []  # a second teardown finds nothing to record


# ------------------------------------------------------------------------------ the DAGs


def test_deploy_and_teardown_dags_run_on_the_embedded_aws(
    tmp_path: Path, embedded_aws: str, aws_client: Client
) -> None:
    env = airflow_home(tmp_path, embedded_aws)
    no_smoke = {"smoke_test": False}
    first, second, teardown = run_dags(
        env,
        [
            {"dag_id": "deploy_realtime_stack", "conf": no_smoke},
            {"dag_id": "deploy_realtime_stack", "conf": no_smoke},
            {"dag_id": "teardown_realtime_stack"},
        ],
    )
    ran = {task: "success" for task in first["tasks"]} | {"smoke_test": "skipped"}
    assert first["tasks"] == ran, first
    assert first["xcoms"]["deploy_stack.deploy"]["action"] == "create"
    assert first["xcoms"]["verify_stack.return_value"]["failed"] == 0
    assert first["xcoms"]["verify_stack.return_value"]["known_gaps"] == len(SKIPPED)
    assert second["tasks"] == ran, second
    assert second["xcoms"]["deploy_stack.deploy"]["action"] == "none"  # same zip, same key
    assert second["xcoms"]["upload_package.return_value"]["uploaded"] is False
    assert second["xcoms"]["upload_change_capture.return_value"]["uploaded"] is False
    assert set(teardown["tasks"].values()) == {"success"}, teardown
    left = teardown["xcoms"]["report_leftovers.return_value"]
    assert len(left["retained"]) == len(RETAINED)
    # The two functions' zips (stream processor, change capture), uploaded once each.
    assert (left["artifacts_bucket"], left["artifact_objects"]) == (BUCKET, 2)
    assert describe_stack(aws_client("cloudformation"), STACK) is None
