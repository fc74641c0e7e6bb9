"""The stream processor's role grants exactly what the handler calls.

The real handler runs realistic batches on the embedded AWS with the environment the template
gives the function and the credentials of the template's role, assumed as Lambda assumes them:
the embedded AWS enforces IAM, so a call the role lacks fails the batch here as on AWS. moto
enforces more coarsely than AWS (infra/local/embedded_aws_gaps.json), so a botocore hook also
records every AWS call, and each call's IAM action and resource must be allowed by the role's
policy as the template declares it (resolved for the dev stack in moto's account). Conversely,
every grant must be used by some call, so the role does not keep permissions the code gave up.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from types import ModuleType

import boto3
import pytest
from botocore.exceptions import ClientError

from storepulse import events as ev
from storepulse.deploy.intrinsics import Intrinsics
from storepulse.deploy.permissions import (
    Account,
    CallRecorder,
    Policy,
    roles,
    template_intrinsics,
    template_policy,
)
from storepulse.deploy.stack import TEMPLATE, load_parameters, parse_template
from storepulse.deploy.verify import GAPS_FILE
from storepulse.layout import Table
from storepulse.settings import AlertRuleSettings, SettingsStore
from storepulse.stream import smoke
from storepulse_local.iam import LAMBDA_SERVICE
from tests.integration.conftest import FROZEN_NOW, RealtimeStack, invoke
from tests.integration.test_stream_processor import (
    Stream,
    foot_traffic,
    restock,
    sale,
    stock_take,
)

ACCOUNT = Account("123456789012")  # moto's default account
REGION = "us-east-1"
ROLE = "StreamProcessorRole"
FUNCTION = "StreamProcessorFunction"
# Grants the handler's code never uses, each with the reason it is still needed.
NOT_CALLED_BY_THE_CODE = {
    "ReadEventStream": "the event source mapping's poller reads the stream with the role",
    "ReadThroughConsumer": (
        "the poller reads through the enhanced fan-out consumer (EnhancedFanOut) with the role"
    ),
    "OnFailureDestination": "Lambda sends the on-failure record with the role",
    "PublishEncryptedAlerts": (
        "SNS uses the topic's KMS key with the publisher's permissions on each sns:Publish"
    ),
}
NOT_EXERCISED = {
    ("dynamodb:GetItem", "storepulse-dev-inventory"): (
        "re-read of a stock item changed under the writer, which one invocation per shard "
        "(ParallelizationFactor 1) never does"
    ),
}
AT = FROZEN_NOW - timedelta(seconds=30)
CAPTURE_ROLE = "ChangeCaptureRole"
CAPTURE_NOT_CALLED_BY_THE_CODE = {
    "ReadTableStreams": "the DynamoDB Streams mappings' pollers read the streams with the role",
    "OnFailureDestination": "Lambda sends the on-failure record with the role",
}


@pytest.fixture(scope="module")
def stack_template() -> Intrinsics:
    template = parse_template(TEMPLATE.read_text())
    loaded = load_parameters("dev", code_bucket="code", code_key="code.zip")
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in loaded}
    pseudo = {
        "AWS::Partition": ACCOUNT.partition,
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT.account_id,
    }
    return template_intrinsics(template, parameters, pseudo)


@pytest.fixture(scope="module")
def role_policy(stack_template: Intrinsics) -> Policy:
    return template_policy(stack_template.template, ROLE, stack_template)


@pytest.fixture
def recorder(
    handler: ModuleType,
    realtime_stack: RealtimeStack,
    stack_template: Intrinsics,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[CallRecorder]:
    """The handler configured as the stack configures the function, its boto3 default session
    recorded (the fixtures' own clients use another session and are not)."""
    function = stack_template.template["Resources"][FUNCTION]["Properties"]
    environment = stack_template.resolve(function["Environment"]["Variables"])
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    realtime_stack.s3.create_bucket(Bucket=environment["STOREPULSE_LAKE_BUCKET"])
    session = _function_role_session(stack_template)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    yield CallRecorder(ACCOUNT).attach(session)
    handler.processor.cache_clear()  # its clients belong to this test's session


def _function_role_session(
    stack_template: Intrinsics, role_id: str = ROLE, function: str = FUNCTION
) -> boto3.Session:
    """A session with the credentials Lambda gives the function: the template's role (its trust
    and inline policies, resolved) created in the embedded AWS, which enforces IAM, and assumed
    as the Lambda service. A call the role lacks is refused here as on AWS, besides being
    checked against the template's statements by the recorder."""
    role = stack_template.template["Resources"][role_id]["Properties"]
    iam = boto3.client("iam")
    name = f"storepulse-dev-{role_id}"
    arn = iam.create_role(
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(
            stack_template.resolve(role["AssumeRolePolicyDocument"])
        ),
    )["Role"]["Arn"]
    for policy in role["Policies"]:
        document = json.dumps(stack_template.resolve(policy["PolicyDocument"]))
        iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=document)
    return LAMBDA_SERVICE.assume(arn, function, REGION)


def _web_session(store: str, session: str) -> list[ev.Event]:
    common = {"store_id": store, "occurred_at": AT, "session_id": session, "device": "desktop"}
    return [
        ev.WebPageViewV1(event_id=str(uuid.uuid4()), page="/coffee", **common),
        ev.WebAddToCartV1(
            event_id=str(uuid.uuid4()),
            sku="tea-100g",
            quantity=1,
            unit_price=Decimal("4.00"),
            **common,
        ),
        ev.WebCheckoutStartedV1(event_id=str(uuid.uuid4()), cart_value=Decimal("4.00"), **common),
        ev.WebPurchaseV1(event_id=str(uuid.uuid4()), order_id="web-1", **common),
    ]


def _refund(store: str, order: str) -> ev.PosRefundV1:
    return ev.PosRefundV1(
        event_id=str(uuid.uuid4()),
        store_id=store,
        occurred_at=AT,
        refund_id=f"r-{order}",
        order_id=order,
        currency="EUR",
        amount=Decimal("12.10"),
        lines=[ev.RefundLine(sku="coffee-1kg", quantity=1)],
    )


def _profile(store: str, customer: str) -> ev.CrmCustomerProfileV1:
    return ev.CrmCustomerProfileV1(
        event_id=str(uuid.uuid4()),
        store_id=store,
        occurred_at=AT,
        customer_id=customer,
        age_band="25-34",
        region="idf",
        segment="regular",
    )


def _fail_every_publish(stack: RealtimeStack) -> None:
    """moto fails every publish to a topic with a subscription to a missing queue."""
    missing = f"arn:aws:sqs:{REGION}:{ACCOUNT.account_id}:no-such-queue"
    stack.sns.subscribe(TopicArn=stack.topic_arn, Protocol="sqs", Endpoint=missing)


def drive(handler: ModuleType, stack: RealtimeStack) -> None:
    """A business hour in a few batches: every kind of event, a bad record, the deploy's smoke
    event, a low-stock alert, a retried batch, and an alert whose publish fails; with a trend
    rule, whose baselines are read."""
    SettingsStore(stack.table(Table.SETTINGS)).upsert(
        AlertRuleSettings(rule_id="sales-trend", type="trend")
    )
    stream = Stream()
    stock = stream.records(
        stock_take("s-001", "coffee-1kg", 7, AT),
        stock_take("s-001", "mug-blue", 3, AT),
        stock_take("s-002", "tea-100g", 10, AT),
    )
    sales = stream.records(
        sale("s-001", "o-1", AT, ("coffee-1kg", 2, "12.10"), customer="c-1"),  # 5: low stock
        sale("s-002", "o-2", AT, ("tea-100g", 1, "4.00")),
        _refund("s-002", "o-2"),
    )
    everything_else = stream.records(
        *_web_session("s-001", "sess-1"),
        restock("s-002", "tea-100g", 6, AT),
        foot_traffic("s-001", AT, entries=12),
        _profile("s-001", "c-1"),
        b'{"schema": "pos.sale", "truncated',
        smoke.smoke_event(lambda: AT),
    )
    for batch in (stock, sales, everything_else):
        assert invoke(handler, batch) == {"batchItemFailures": []}
    alerts = [json.loads(a["Message"])["type"] for a in stack.alerts(wait_seconds=1)]
    assert sorted(alerts) == ["low_stock", "smoke"]
    assert invoke(handler, sales) == {"batchItemFailures": []}  # a retry: all replayed

    _fail_every_publish(stack)
    with pytest.raises(ClientError):  # the cooldown is given back; Lambda retries the batch
        invoke(handler, stream.records(sale("s-001", "o-3", AT, ("mug-blue", 1, "0.10"))))


def test_the_template_has_two_roles_and_this_test_checks_both(stack_template: Intrinsics) -> None:
    """A new role in the template needs its own recorded component here."""
    assert roles(stack_template.template) == [ROLE, CAPTURE_ROLE]


def test_the_change_capture_calls_exactly_what_its_role_grants(
    realtime_stack: RealtimeStack, stack_template: Intrinsics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The capture handler, with its role's credentials (IAM enforced), writes a batch of
    changes and a quarantined record: every call allowed, every grant used but the poller's."""
    from storepulse.capture.changes import decode_record
    from storepulse.capture.sink import ChangeSink

    parameters = {"LambdaCodeBucket": "code", "ChangeCaptureCodeKey": "capture.zip"}
    capture = template_intrinsics(
        stack_template.template,
        {**stack_template.parameters, **parameters},
        dict(stack_template.pseudo),
    )
    bucket = capture.resolve({"Ref": "LakeBucket"})
    realtime_stack.s3.create_bucket(Bucket=bucket)
    session = _function_role_session(capture, CAPTURE_ROLE, "ChangeCaptureFunction")
    recorder = CallRecorder(ACCOUNT).attach(session)
    policy = template_policy(capture.template, CAPTURE_ROLE, capture)
    from tests.unit.test_change_capture import order, record

    good = record(1, "INSERT", order("o-1", "2.50"))
    good["eventSourceARN"] = good["eventSourceARN"].replace("123456789012", ACCOUNT.account_id)
    records = [good, {"eventName": "INSERT", "eventSourceARN": good["eventSourceARN"]}]
    sink = ChangeSink(session.client("s3"), bucket)
    report = sink.write(records, decode_record)
    assert report.quarantined == 1 and report.rows == 2  # the order and its line; one refused
    denied = policy.denied(recorder.accesses())
    assert not denied, "the role does not allow:\n" + "\n".join(map(str, denied))
    unused = [
        f"{sid}: {grant}"
        for sid, grant in policy.unused(recorder.accesses())
        if sid not in CAPTURE_NOT_CALLED_BY_THE_CODE
    ]
    assert not unused, "granted but never called:\n" + "\n".join(unused)


def test_every_call_of_the_handler_is_allowed_by_the_role(
    handler: ModuleType,
    realtime_stack: RealtimeStack,
    recorder: CallRecorder,
    role_policy: Policy,
) -> None:
    drive(handler, realtime_stack)
    operations = recorder.operations()
    assert {"BatchGetItem", "BatchWriteItem", "UpdateItem", "PutItem"} <= operations["dynamodb"]
    assert operations["sns"] == {"Publish"}
    denied = role_policy.denied(recorder.accesses())
    assert not denied, "the role does not allow:\n" + "\n".join(map(str, denied))


def test_every_grant_of_the_role_is_used_by_the_handler(
    handler: ModuleType,
    realtime_stack: RealtimeStack,
    recorder: CallRecorder,
    role_policy: Policy,
) -> None:
    drive(handler, realtime_stack)
    unused = [
        f"{sid}: {grant}"
        for sid, grant in role_policy.unused(recorder.accesses())
        if sid not in NOT_CALLED_BY_THE_CODE
        and (grant.action, grant.resource.rsplit("/", 1)[-1]) not in NOT_EXERCISED
    ]
    assert not unused, "granted but never called:\n" + "\n".join(unused)


def _without(policy: Policy, action: str) -> Policy:
    return Policy(
        tuple(
            replace(s, actions=tuple(a for a in s.actions if a != action))
            for s in policy.statements
        )
    )


def test_the_smoke_event_alone_needs_what_business_batches_need(
    handler: ModuleType, realtime_stack: RealtimeStack, recorder: CallRecorder, role_policy: Policy
) -> None:
    """So the deploy's smoke test fails when the role lacks one of them."""
    marked = smoke.smoke_event(lambda: AT)
    assert invoke(handler, Stream().records(marked)) == {"batchItemFailures": []}
    needed = recorder.accesses()
    assert not role_policy.denied(needed)
    for action in (
        "dynamodb:BatchGetItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "s3:PutObject",
        "sns:Publish",
    ):
        assert {a.action for a in _without(role_policy, action).denied(needed)} == {action}


def test_the_gap_this_test_covers_is_recorded() -> None:
    behaviours = json.loads(GAPS_FILE.read_text())["behaviours"]
    assert "tests/integration/test_lambda_permissions.py" in behaviours["IAM authorization"]
