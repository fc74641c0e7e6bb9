"""The dashboard runs with least privilege: infra/iam/dashboard-policy.json, the policy of the
Airflow API server that serves it (the ``DASHBOARD`` principal of the embedded AWS).

First every AWS call the dashboard makes while serving its pages and API (live KPIs and series,
history, the settings read and written, the store limits) is recorded with a botocore hook on
every boto3 session it creates, and each call's IAM action and resource must be allowed by the
policy: this is exact where the embedded AWS is coarse (it ignores the policy's ``s3:prefix``
condition, so the listings' prefixes are checked here). Then the dashboard runs with the
principal's real keys against the enforcing embedded AWS: it serves its live view and history
(pyarrow's reads of the Parquet files included, which no botocore hook sees), saves settings, and
is refused what the policy does not grant.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date, timedelta
from types import ModuleType
from typing import Any

import boto3
import pyarrow as pa
import pytest
from botocore.exceptions import ClientError
from fastapi.testclient import TestClient

from storepulse.aws import FAIL_FAST_CONFIG
from storepulse.config import settings
from storepulse.dashboard import history
from storepulse.dashboard.app import Viewer, _default_lake
from storepulse.deploy.permissions import Account, CallRecorder, Policy, Statement
from storepulse.deploy.stack import stack_name
from storepulse.lake.freshness import record_freshness
from storepulse.lake.manifest import Manifest
from storepulse.layout import Table, table_name
from storepulse.settings import KPI_CATALOGUE
from storepulse_local.iam import DASHBOARD, DASHBOARD_POLICY_FILE, dashboard_policy
from tests.integration.conftest import RealtimeStack
from tests.integration.test_dashboard_api import (
    CATEGORY_SCHEMA,
    NOW,
    Events,
    _client,
    _put_parquet,
    _write_metrics,
    foot,
    grant,
    sale,
    stock,
    visit,
)

ACCOUNT = Account("123456789012")  # moto's default account
END = date(2026, 11, 25)
CURATED = "curated/"
RAW_KEY = "raw/events/part-0.json.gz"
# Grants no call of these tests needs, each with the reason it stays.
NOT_EXERCISED = {
    ("dynamodb:Query", "storepulse-*-metrics"): (
        "a day's sales mix spread over more than one item (part 1 full), which needs more "
        "categories and SKUs than a test's catalogue"
    ),
}


def _policy_without_conditions() -> tuple[Policy, list[dict[str, Any]]]:
    """(the statements the evaluator reads, the statements with a Condition), the latter
    checked by hand below: the only one limits s3:ListBucket to the curated zone's prefix."""
    statements = dashboard_policy()["Statement"]
    plain = [s for s in statements if "Condition" not in s]
    conditional = [s for s in statements if "Condition" in s]
    return Policy.from_documents([{"Statement": plain}]), conditional


def _seed(events: Events, stack: RealtimeStack) -> None:
    """A morning of sales, visits, footfall and stock; a week of curated history."""
    events.send(
        sale("s-001", NOW - timedelta(minutes=50), ("coffee-1kg", 2, "9.90")).model_copy(
            update={"customer_id": "c-1"}  # live customers read its profile
        ),
        sale("s-002", NOW - timedelta(minutes=1), ("mug-blue", 2, "4.50")),
        *visit("s-001", NOW - timedelta(minutes=20), purchase=True),
        foot("s-001", NOW - timedelta(minutes=40), 7),
        stock("s-001", "coffee-1kg", 3, NOW - timedelta(minutes=30)),
    )
    _write_metrics(stack, [(END - timedelta(days=d), "s-001", "10.00") for d in range(9)])
    row = {"store_id": "s-001", "business_date": END, "category": "grocery", "units": 3}
    table = pa.Table.from_pylist([row | {"revenue": 12}], schema=CATEGORY_SCHEMA)
    key = f"curated/daily_category_sales/v1/business_date={END}/part-00000.parquet"
    _put_parquet(stack, key, table)
    folder = f"curated/daily_store_metrics/dt={END}"
    manifest = Manifest(
        dataset="daily_store_metrics",
        day=END.isoformat(),
        schema_version=1,
        run_id="r1",
        token="t",
        rows=1,
        bytes=1,
        files=("part-00000.parquet",),
        published_at="2026-11-26T00:00:00Z",
    )
    stack.s3.put_object(
        Bucket=stack.bucket, Key=f"{folder}/_manifest.json", Body=manifest.to_json()
    )
    stack.s3.put_object(Bucket=stack.bucket, Key=RAW_KEY, Body=b"{}")
    record_freshness(stack.s3, stack.bucket, {"orders": "2026-11-26T10:42:00+00:00"})
    grant(stack, "admin")


def serve_everything(client: TestClient) -> None:
    """Every page and endpoint of the dashboard, a viewer's and an editor's."""
    for path in ("/", "/static/app.js", "/openapi.json", "/api/me"):
        client.get(path)
    assert client.put("/api/settings/kpis", json={"kpis": list(KPI_CATALOGUE)}).status_code == 200
    for store in ("all", "s-001"):
        live = client.get("/api/live", params={"store": store})
        assert live.status_code == 200, live.text
        assert client.get("/api/live/kpis", params={"store": store}).status_code == 200
        assert client.get("/api/live/staffing", params={"store": store}).status_code == 200
        customers = client.get("/api/live/customers", params={"store": store})
        assert customers.status_code == 200, customers.text
    params = {"days": 7, "end": END.isoformat()}
    trend = client.get("/api/history/trend", params=params)
    assert trend.status_code == 200, trend.text
    assert trend.json()["current"]["days_with_data"] == 7
    for by in ("store", "category"):
        breakdown = client.get("/api/history/breakdown", params={**params, "by": by})
        assert breakdown.status_code == 200 and breakdown.json()["rows"], breakdown.text
    for insight in ("customers", "inventory", "social"):  # the lake's other data sets
        answer = client.get(f"/api/history/{insight}", params=params)
        assert answer.status_code == 200, answer.text
    freshness = client.get("/api/history/freshness")  # the compaction's record, in curated/
    assert freshness.status_code == 200 and freshness.json()["text"], freshness.text
    assert client.get("/api/settings/kpis").json()["saved"] is True
    rules = client.get("/api/settings/alert-rules").json()
    assert rules
    rule = {"type": "low_stock", "enabled": False}
    saved = client.put(f"/api/settings/alert-rules/{rules[0]['rule_id']}", json=rule)
    assert saved.status_code == 200, saved.text


class PrefixRecorder(CallRecorder):
    """Also keeps the prefix of every S3 listing (the policy's s3:prefix condition)."""

    def __init__(self, account: Account) -> None:
        super().__init__(account)
        self.prefixes: list[str] = []

    def attach(self, session: Any) -> CallRecorder:
        session.events.register("provide-client-params.s3.ListObjectsV2", self._prefix)
        return super().attach(session)

    def _prefix(self, params: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self.prefixes.append(params.get("Prefix", ""))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrefixRecorder]:
    """Records every call of every boto3 session created from now on, the default session's
    too: the dashboard makes one session per thread (``ThreadLocalTable``) and uses the default
    one for its S3 and CloudFormation clients."""
    recorder = PrefixRecorder(ACCOUNT)

    class RecordedSession(boto3.session.Session):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            recorder.attach(self)

    monkeypatch.setattr(boto3.session, "Session", RecordedSession)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", RecordedSession())
    yield recorder


def test_the_policy_is_valid_json_with_project_scoped_resources() -> None:
    policy = json.loads(DASHBOARD_POLICY_FILE.read_text())
    for statement in policy["Statement"]:
        resources = statement["Resource"]
        for resource in [resources] if isinstance(resources, str) else resources:
            assert re.search(r"[:/]storepulse-\*-", resource), resource
        actions = statement["Action"]
        for action in [actions] if isinstance(actions, str) else actions:
            assert "*" not in action, action
            assert not action.startswith(("iam:", "sts:", "kms:")), action


def test_every_call_of_the_dashboard_is_allowed_by_its_policy(
    handler: ModuleType,
    realtime_stack: RealtimeStack,
    recorder: PrefixRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _seed(Events(handler), realtime_stack)
    recorder.calls.clear()  # the handler's and the fixtures' calls are not the dashboard's
    recorder.prefixes.clear()
    bucket = realtime_stack.bucket
    with _client(Viewer("admin", can_edit=True), lambda: history.Lake(bucket)) as client:
        serve_everything(client)
    monkeypatch.delenv("STOREPULSE_LAKE_BUCKET")
    settings.cache_clear()
    assert _default_lake() is None  # no stack deployed: looked up, not found

    operations = recorder.operations()
    assert operations["dynamodb"] == {"GetItem", "BatchGetItem", "Query", "PutItem"}
    # The manifest with boto3; the Parquet files with pyarrow, which no hook sees (see below).
    assert operations["s3"] == {"ListObjectsV2", "GetObject"}
    assert operations["cloudformation"] == {"DescribeStacks"}
    assert set(operations) == {"dynamodb", "s3", "cloudformation"}

    policy, conditional = _policy_without_conditions()
    listings = [a for a in recorder.accesses() if a.action == "s3:ListBucket"]
    others = [a for a in recorder.accesses() if a.action != "s3:ListBucket"]
    denied = policy.denied(others)
    assert not denied, "the dashboard policy does not allow:\n" + "\n".join(map(str, denied))
    # The one conditional statement: s3:ListBucket of the lake, only under curated/.
    [listing] = conditional
    assert listing["Action"] == "s3:ListBucket"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["curated/", "curated/*"]}}
    unconditional = {k: v for k, v in listing.items() if k != "Condition"}
    listing_policy = Policy((Statement.parse(unconditional),))
    assert listings and not listing_policy.denied(listings)
    prefixes = recorder.prefixes  # every listing asks for the curated zone only
    assert prefixes and all(p.startswith(CURATED) for p in prefixes), prefixes

    # Conversely every grant is used, or NOT_EXERCISED says why not.
    whole = Policy((*policy.statements, *listing_policy.statements))
    unused = [
        (sid, grant)
        for sid, grant in whole.unused(recorder.accesses())
        if (grant.action, grant.resource.rsplit("/", 1)[-1]) not in NOT_EXERCISED
    ]
    assert not unused, unused


# --------------------------------------------------------------- with the principal's own keys


def _refused(call: Any) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    return refused.value.response["Error"]["Code"]


def test_the_dashboard_principal_serves_the_dashboard_and_nothing_more(
    handler: ModuleType, realtime_stack: RealtimeStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(Events(handler), realtime_stack)  # as the administrator
    for name, value in DASHBOARD.environment().items():  # what the platform gives the API server
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # no client keeps the admin's keys
    bucket = realtime_stack.bucket

    with _client(Viewer("admin", can_edit=True), lambda: history.Lake(bucket)) as client:
        serve_everything(client)  # pages, live, history (pyarrow reads too), settings saved
        tiles = {t["kpi"]: t for t in client.get("/api/live").json()["kpis"]["tiles"]}
        assert tiles["revenue"]["value"] == "28.80"
        trend = client.get("/api/history/trend", params={"days": 7, "end": END.isoformat()})
        assert trend.json()["current"]["totals"]["revenue"] == "70.00"

    dashboard = DASHBOARD.session()
    assert dashboard.client("sts").get_caller_identity()["Arn"] == DASHBOARD.arn
    dynamodb = dashboard.resource("dynamodb", config=FAIL_FAST_CONFIG)
    metrics = dynamodb.Table(table_name(Table.METRICS))
    forged = {"pk": "S#s-001#DAY#2026-11-26", "sk": "TOTAL", "revenue": 1}
    assert _refused(lambda: metrics.put_item(Item=forged)) == "AccessDeniedException"
    settings_table = dynamodb.Table(table_name(Table.SETTINGS))
    grant_all = {"pk": "DASHBOARD_ACCESS", "sk": "mallory", "all_stores": True}
    assert _refused(lambda: settings_table.delete_item(Key=grant_all)) == "AccessDeniedException"
    inventory = dynamodb.Table(table_name(Table.INVENTORY))
    assert _refused(lambda: inventory.scan()) == "AccessDeniedException"
    s3 = dashboard.client("s3", config=FAIL_FAST_CONFIG)
    assert _refused(lambda: s3.get_object(Bucket=bucket, Key=RAW_KEY)) == "AccessDenied"
    curated = "curated/daily_store_metrics/dt=2026-11-26/forged.parquet"
    assert _refused(lambda: s3.put_object(Bucket=bucket, Key=curated, Body=b"x")) == (
        "AccessDenied"
    )
    cfn = dashboard.client("cloudformation", config=FAIL_FAST_CONFIG)
    assert _refused(lambda: cfn.describe_stacks(StackName="someone-elses")) == "AccessDenied"
    # Its own stack: allowed, and not deployed in this test.
    own_stack = stack_name("dev")
    assert _refused(lambda: cfn.describe_stacks(StackName=own_stack)) == "ValidationError"
    sns = dashboard.client("sns", config=FAIL_FAST_CONFIG)
    topic = realtime_stack.topic_arn
    assert _refused(lambda: sns.publish(TopicArn=topic, Message="x")) == "AccessDenied"
