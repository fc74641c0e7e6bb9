"""The embedded AWS says no where AWS says no: IAM is enforced (storepulse_local.iam).

The stream processor runs with its role's assumed credentials, as Lambda runs it, so a role that
lacks a permission fails the sale (and the deploy's smoke test) with AccessDenied, exactly as the
stream processor's role did before it was given dynamodb:BatchGetItem and BatchWriteItem. The
deployment principal (Airflow's aws_default) deploys the stack with the policy of
infra/iam/deployment-policy.json, and is refused what that policy does not grant.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from storepulse.aws import FAIL_FAST_CONFIG
from storepulse.clock import FrozenClock
from storepulse.deploy.package import BuiltPackage
from storepulse.deploy.permissions import Access, Account, CallRecorder, Policy
from storepulse.deploy.smoke import SmokeTestError, run_smoke_test
from storepulse.export.datasets import DATASETS
from storepulse.lake.tables import ensure_curated_table, glue_database_name
from storepulse.layout import Grain, bucket_keys
from storepulse_local.iam import ADMIN, DEPLOYER, LAMBDA_SERVICE, deployment_policy
from storepulse_local.lambda_runtime import LocalLambdaRuntime
from tests.integration.conftest import FROZEN_NOW, _put_settings, invoke
from tests.integration.test_deploy import (  # noqa: F401 (module-scoped fixtures reused)
    STACK,
    TEMPLATE,
    Deployer,
    StreamPoller,
    build_dir,
    package,
)
from tests.integration.test_stream_processor import NOON_PARIS, Stream, sale

FUNCTION = "storepulse-dev-stream-processor"
BATCH_ACTIONS = ("dynamodb:BatchGetItem", "dynamodb:BatchWriteItem")

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS.+:UserWarning")


def _template_without_batch_grants() -> str:
    """The template as it was before the fix: the role's statements lack the batch actions."""
    lines = TEMPLATE.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip().removeprefix("- ") not in BATCH_ACTIONS]
    assert (
        len(lines) - len(kept) == 4
    )  # MetricsCounters: 1 (trend baselines), InventoryLevels: 1, FactsClaims: 2
    return "".join(kept)


def _client_factory(session: boto3.Session) -> Callable[[str], Any]:
    return lambda service: session.client(service, config=FAIL_FAST_CONFIG)


@pytest.fixture
def deployed(embedded_aws: str) -> Callable[[BuiltPackage, str | None], dict[str, str]]:
    """Deploy the stack (as the administrator) and seed its catalogue; returns its outputs."""

    def deploy(built: BuiltPackage, template_body: str | None = None) -> dict[str, str]:
        outputs = Deployer(_client_factory(ADMIN.session()))(built, template_body).outputs
        settings_table = boto3.resource("dynamodb").Table(outputs["SettingsTable"])
        _put_settings(settings_table)
        return outputs

    return deploy


@pytest.fixture
def as_the_function(
    embedded_aws: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], ModuleType]]:
    """The handler with the deployed function's environment, its default boto3 session holding
    the function role's credentials, assumed with sts as Lambda assumes them."""
    loaded: list[ModuleType] = []

    def load() -> ModuleType:
        from tests.integration.test_deploy import _load_handler

        configuration = boto3.client("lambda").get_function(FunctionName=FUNCTION)["Configuration"]
        for name, value in configuration["Environment"]["Variables"].items():
            monkeypatch.setenv(name, str(value))
        function_session = LAMBDA_SERVICE.assume(configuration["Role"], FUNCTION)
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", function_session)
        module = _load_handler()
        module.CLOCK = FrozenClock(FROZEN_NOW)
        module.processor.cache_clear()
        loaded.append(module)
        return module

    yield load
    for module in loaded:
        module.processor.cache_clear()


def _day_revenue(outputs: dict[str, str]) -> Any:
    key = bucket_keys("s-001", NOON_PARIS, "Europe/Paris")[Grain.DAY].as_item()
    item = ADMIN.session().resource("dynamodb").Table(outputs["MetricsTable"]).get_item(Key=key)
    return item.get("Item", {}).get("revenue")


def _one_sale() -> list[Any]:
    return Stream().records(sale("s-001", "o-1", NOON_PARIS, ("coffee-1kg", 2, "12.10")))


# --------------------------------------------------------------------- the function's role


def test_the_role_without_batch_grants_fails_a_sale_with_access_denied(
    deployed: Callable[..., dict[str, str]],
    as_the_function: Callable[[], ModuleType],
    package: BuiltPackage,  # noqa: F811
) -> None:
    outputs = deployed(package, _template_without_batch_grants())
    with pytest.raises(ClientError) as refused:
        invoke(as_the_function(), _one_sale())
    error = refused.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert "dynamodb:BatchGetItem" in error["Message"]
    assert "assumed-role/" in error["Message"]  # the function's role, not a user
    assert _day_revenue(outputs) is None


def test_the_templates_role_processes_the_sale(
    deployed: Callable[..., dict[str, str]],
    as_the_function: Callable[[], ModuleType],
    package: BuiltPackage,  # noqa: F811
) -> None:
    outputs = deployed(package)
    assert invoke(as_the_function(), _one_sale()) == {"batchItemFailures": []}
    assert str(_day_revenue(outputs)) == "24.20"


@pytest.mark.parametrize("batch_grants", [True, False], ids=["template", "without-batch"])
def test_the_deploys_smoke_test_needs_the_batch_grants(
    batch_grants: bool,
    deployed: Callable[..., dict[str, str]],
    as_the_function: Callable[[], ModuleType],
    package: BuiltPackage,  # noqa: F811
) -> None:
    outputs = deployed(package, None if batch_grants else _template_without_batch_grants())
    handler = as_the_function()
    admin = _client_factory(ADMIN.session())
    smoke = {
        "stream_name": outputs["StreamName"],
        "facts_table": outputs["FactsTable"],
        "poll_interval": 0.1,
    }
    with StreamPoller(admin("kinesis"), outputs["StreamName"], handler) as poller:
        if batch_grants:
            result = run_smoke_test(admin("kinesis"), admin("dynamodb"), timeout=30, **smoke)
            assert 0 < result.latency_seconds < 30
        else:
            with pytest.raises(SmokeTestError, match="not processed within"):
                run_smoke_test(admin("kinesis"), admin("dynamodb"), timeout=3, **smoke)
    if batch_grants:
        assert not poller.errors, poller.errors
    else:
        assert poller.errors, "the handler was never refused"
        error = poller.errors[0]
        assert isinstance(error, ClientError)
        assert error.response["Error"]["Code"] == "AccessDeniedException"


def _wait_for(condition: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:.0f} s")


@pytest.mark.parametrize("batch_grants", [True, False], ids=["template", "without-batch"])
def test_a_sale_through_the_local_runtime_needs_the_batch_grants(
    batch_grants: bool,
    deployed: Callable[..., dict[str, str]],
    package: BuiltPackage,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The whole path as on AWS: a sale put on the deployed stream, the deployed zip run by the
    local runtime with the role's assumed credentials. Without the batch grants the batch is
    refused, retried and given up to the dead-letter queue, and no total is written."""
    outputs = deployed(package, None if batch_grants else _template_without_batch_grants())
    admin = _client_factory(ADMIN.session())
    now = datetime.now(UTC)  # the runtime's handler reads the real clock (the window)
    event = sale("s-001", f"o-{uuid.uuid4()}", now, ("coffee-1kg", 2, "12.10"))
    day = bucket_keys("s-001", now, "Europe/Paris")[Grain.DAY].as_item()
    metrics = ADMIN.session().resource("dynamodb").Table(outputs["MetricsTable"])
    runtime = LocalLambdaRuntime(
        state_dir=tmp_path / "runtime", poll_interval=0.05, discovery_interval=0.2
    )
    with runtime:
        admin("kinesis").put_record(
            StreamName=outputs["StreamName"], Data=event.to_json(), PartitionKey="s-001"
        )
        if batch_grants:
            revenue = _wait_for(lambda: metrics.get_item(Key=day).get("Item", {}).get("revenue"))
            assert str(revenue) == "24.20"
            return
        messages = _wait_for(
            lambda: (
                admin("sqs")
                .receive_message(QueueUrl=outputs["DeadLetterQueueUrl"], WaitTimeSeconds=1)
                .get("Messages")
            )
        )
    failure = messages[0]["Body"]
    assert "AccessDeniedException" in failure
    assert "dynamodb:BatchGetItem" in failure
    assert "assumed-role/" in failure
    assert "revenue" not in metrics.get_item(Key=day).get("Item", {})


def test_only_the_lambda_service_assumes_the_function_role(
    deployed: Callable[..., dict[str, str]],
    package: BuiltPackage,  # noqa: F811
) -> None:
    """The role's trust policy names lambda.amazonaws.com: the administrator is refused."""
    deployed(package)
    role = boto3.client("lambda").get_function(FunctionName=FUNCTION)["Configuration"]["Role"]
    with pytest.raises(ClientError, match="AccessDenied"):
        ADMIN.session().client("sts").assume_role(RoleArn=role, RoleSessionName="admin")
    assumed = (
        LAMBDA_SERVICE.session().client("sts").assume_role(RoleArn=role, RoleSessionName=FUNCTION)
    )
    assert assumed["AssumedRoleUser"]["Arn"].endswith(f"/{FUNCTION}")


def test_the_deployed_role_policy_is_json(
    deployed: Callable[..., dict[str, str]],
    package: BuiltPackage,  # noqa: F811
) -> None:
    """GetRolePolicy answers the template's statements (URL-decoded JSON, as boto3 gives AWS's
    answer), not a Python repr."""
    deployed(package)
    iam = boto3.client("iam")
    role = boto3.client("lambda").get_function(FunctionName=FUNCTION)["Configuration"]["Role"]
    name = role.rsplit("/", 1)[-1]
    document = iam.get_role_policy(RoleName=name, PolicyName="stream-processor")["PolicyDocument"]
    if isinstance(document, str):
        document = json.loads(document)
    sids = {s["Sid"] for s in document["Statement"]}
    assert {"FactsClaims", "InventoryLevels", "ReadEventStream"} <= sids


# --------------------------------------------------------------------- the deployment principal


def test_the_deployment_principal_deploys_the_stack(
    embedded_aws: str,
    package: BuiltPackage,  # noqa: F811
) -> None:
    deployer = _client_factory(DEPLOYER.session())
    result = Deployer(deployer)(package)
    assert result.action == "create"
    stacks = deployer("cloudformation").describe_stacks(StackName=STACK)["Stacks"]
    assert stacks[0]["StackStatus"] == "CREATE_COMPLETE"
    assert deployer("sts").get_caller_identity()["Arn"] == DEPLOYER.arn


def test_the_deployment_principal_is_refused_what_its_policy_lacks(
    embedded_aws: str,
    package: BuiltPackage,  # noqa: F811
) -> None:
    deployer = _client_factory(DEPLOYER.session())
    Deployer(deployer)(package)
    # The deployment role writes no business data in batches, manages no users, and touches no
    # table outside the project's names.
    with pytest.raises(ClientError) as batch:
        deployer("dynamodb").batch_write_item(
            RequestItems={"storepulse-dev-facts": [{"PutRequest": {"Item": {"pk": {"S": "x"}}}}]}
        )
    assert batch.value.response["Error"]["Code"] == "AccessDeniedException"
    with pytest.raises(ClientError, match="AccessDenied"):
        deployer("iam").create_user(UserName="intruder")
    with pytest.raises(ClientError, match="AccessDenied"):
        deployer("s3").put_object(Bucket="someone-elses-bucket", Key="k", Body=b"x")


def test_unknown_keys_are_refused(embedded_aws: str) -> None:
    stranger = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    with pytest.raises(ClientError) as refused:
        stranger.client("dynamodb", config=FAIL_FAST_CONFIG).list_tables()
    assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"


# --------------------------------------------------------------------- where moto checks less


def _deployment_policy_without_conditions() -> Policy:
    """The deployment policy's statements the evaluator reads: those with a Condition (passing
    the role to Lambda, managing the stack's key) serve CloudFormation's creations only."""
    statements = deployment_policy()["Statement"]
    return Policy.from_documents([{"Statement": [s for s in statements if "Condition" not in s]}])


def test_the_deployers_glue_calls_are_allowed_on_their_resources(embedded_aws: str) -> None:
    """moto authorizes Glue on the action alone (infra/local/embedded_aws_gaps.json): the
    nightly export's catalogue calls are recorded and checked against the deployment policy's
    resources (catalog, database, table)."""
    session = DEPLOYER.session()
    recorder = CallRecorder(Account("123456789012")).attach(session)
    glue = session.client("glue", config=FAIL_FAST_CONFIG)
    for name in ("orders", "order_lines"):
        dataset = DATASETS[name]
        ensure_curated_table(glue, glue_database_name("dev"), dataset, "storepulse-dev-lake-x")
    assert {"CreateDatabase", "CreateTable"} <= recorder.operations()["glue"]
    policy = _deployment_policy_without_conditions()
    denied = policy.denied(recorder.accesses())
    assert not denied, "the deployment policy does not allow:\n" + "\n".join(map(str, denied))
    elsewhere = [Access("glue:CreateTable", "arn:aws:glue:us-east-1:123456789012:database/other")]
    assert policy.denied(elsewhere) == elsewhere
