"""QuickSight on the embedded AWS: deploy, SPICE refreshes that really read the lake, the guards.

Every QuickSight response in these tests is checked against botocore's output shapes, so the
local QuickSight answers in AWS's shapes, not just in shapes boto3 happens to tolerate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import botocore.exceptions
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.validate import ParamValidator

from storepulse import quicksight as qs
from storepulse.assets import curated_uri, requested_datasets
from storepulse.config import REPO_ROOT
from tests.dag_runs import airflow_home, run_dags

ACCOUNT = "123456789012"  # moto's default account
LAKE = f"storepulse-dev-lake-{ACCOUNT}"
TODAY = datetime.now(UTC).date()
MONEY = pa.decimal128(18, 2)


def _check_shapes(model: Any, parsed: dict[str, Any], **_: Any) -> None:
    if "Error" in parsed:
        return  # an error response: botocore raises it
    report = ParamValidator().validate(
        {k: v for k, v in parsed.items() if k != "ResponseMetadata"}, model.output_shape
    )
    assert not report.has_errors(), f"{model.name}: {report.generate_report()}"


@functools.cache
def _hook() -> Any:
    """The provider's QuickSight hook, as the DAG's operator and sensor use it (no connection:
    the environment's credentials and endpoint, the one embedded AWS of the session). One for
    the module: a QuickSight client is slow to build."""
    from airflow.providers.amazon.aws.hooks.quicksight import QuickSightHook

    return QuickSightHook(aws_conn_id=None, region_name="us-east-1")


def _wait(data_set_id: str, ingestion_id: str) -> None:
    """The hook's waiter until the ingestion ends; a failure is left to ``collect_results``."""
    with contextlib.suppress(RuntimeError):
        _hook().wait_for_ingestion(
            data_set_id=data_set_id,
            ingestion_id=ingestion_id,
            aws_account_id=ACCOUNT,
            waiter_delay=0.05,  # type: ignore[arg-type]
            waiter_max_attempts=400,
        )


def _start(plan: qs.Plan) -> None:
    """The provider's create-ingestion, as the DAG's mapped operator runs it."""
    _hook().create_ingestion(
        data_set_id=plan.data_set_id,
        ingestion_id=str(plan.ingestion_id),
        ingestion_type=plan.ingestion_type,
        wait_for_completion=False,
        aws_account_id=ACCOUNT,
    )


def _refresh(
    quicksight: Any, decl: qs.Declarations, names: Any, quota: int | None = None
) -> list[qs.IngestionResult]:
    """What refresh_quicksight runs: plan, the provider's create-ingestion and wait, results."""
    plans = qs.plan_refresh(quicksight, decl, names, account_id=ACCOUNT, quota=quota)
    started = [p for p in plans if p.action == "start"]
    for plan in started:
        _start(plan)
    for plan in started:
        _wait(plan.data_set_id, str(plan.ingestion_id))
    return qs.check_results(qs.collect_results(quicksight, plans, account_id=ACCOUNT))


@dataclasses.dataclass
class Lake:
    quicksight: Any
    glue: Any
    s3: Any
    decl: qs.Declarations
    server: Any

    def publish(self, name: str, table: pa.Table, day: date = TODAY, part: int = 0) -> None:
        """A Parquet file where the export writes it: curated/<dataset>/dt=<day>/part-*."""
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        key = f"{self.decl.data_set(name).s3_prefix}dt={day.isoformat()}/part-{part:05d}.parquet"
        self.s3.put_object(Bucket=LAKE, Key=key, Body=buffer.getvalue())

    def refresh(self, *names: str, quota: int | None = None) -> list[qs.IngestionResult]:
        return _refresh(self.quicksight, self.decl, names, quota=quota)

    def ingestions(self, name: str) -> list[dict[str, Any]]:
        return qs.list_ingestions(self.quicksight, ACCOUNT, self.decl.data_set(name).id)

    def wait_idle(self) -> None:
        """Until the ingestions that deploy started (as AWS does) are over."""
        for data_set in self.decl.every_data_set():
            for ingestion in qs.list_ingestions(self.quicksight, ACCOUNT, data_set.id):
                _wait(data_set.id, ingestion["IngestionId"])


@pytest.fixture
def lake(aws_client, _embedded_aws_server) -> Iterator[Lake]:
    """Declarations deployed on a fresh embedded AWS with a lake bucket; ingestions last 0.2 s."""
    local = _embedded_aws_server.quicksight
    seconds, local.ingestion_seconds = local.ingestion_seconds, 0.2
    quicksight = aws_client("quicksight")
    quicksight.meta.events.register("after-call.quicksight", _check_shapes)
    s3 = aws_client("s3")
    s3.create_bucket(Bucket=LAKE)
    decl = qs.load_declarations(env="dev", account_id=ACCOUNT, lake_bucket=LAKE)
    lake = Lake(quicksight, aws_client("glue"), s3, decl, _embedded_aws_server)
    qs.deploy(quicksight, decl, account_id=ACCOUNT, glue=lake.glue)
    lake.wait_idle()
    yield lake
    local.ingestion_seconds = seconds


def _category_sales(*days: date) -> pa.Table:
    return pa.table(
        {
            "store_id": pa.array([f"s-{i}" for i in range(len(days))]),
            "business_date": pa.array(days, pa.date32()),
            "category": pa.array(["grocery"] * len(days)),
            "revenue": pa.array([Decimal("12.50")] * len(days), MONEY),
            "units": pa.array([3] * len(days), pa.int64()),
        }
    )


def _inventory(rows: int, on_hand_type: pa.DataType | None = None) -> pa.Table:
    return pa.table(
        {
            "store_id": pa.array(["s-1"] * rows),
            "sku": pa.array([f"sku-{i}" for i in range(rows)]),
            "on_hand": pa.array(range(rows), pa.int64()).cast(on_hand_type or pa.int64()),
            "counted_at": pa.array([datetime.now(UTC)] * rows, pa.timestamp("us", tz="UTC")),
            "snapshot_date": pa.array([TODAY] * rows, pa.date32()),
        }
    )


# --- deploy ------------------------------------------------------------------------------------


def test_deploy_creates_then_leaves_everything_alone(aws_client, _embedded_aws_server) -> None:
    quicksight, glue = aws_client("quicksight"), aws_client("glue")
    quicksight.meta.events.register("after-call.quicksight", _check_shapes)
    decl = qs.load_declarations(env="dev", account_id=ACCOUNT, lake_bucket=LAKE)

    first = qs.deploy(quicksight, decl, account_id=ACCOUNT, glue=glue)
    second = qs.deploy(quicksight, decl, account_id=ACCOUNT, glue=glue)

    assert set(first.actions.values()) == {"created", "unchanged"}  # FULL sets: no properties
    assert set(second.actions.values()) == {"unchanged"}
    assert second.actions.keys() == first.actions.keys()
    assert sorted(first.ingestions) == sorted(d.id for d in decl.every_data_set())
    assert second.ingestions == {}  # an unchanged data set is not re-ingested
    orders = quicksight.describe_data_set(
        AwsAccountId=ACCOUNT, DataSetId=decl.data_sets["orders"].id
    )
    table = orders["DataSet"]["PhysicalTableMap"]["orders"]["RelationalTable"]
    assert (table["Schema"], table["Name"]) == ("storepulse_dev_curated", "orders")
    board = quicksight.describe_dashboard(AwsAccountId=ACCOUNT, DashboardId=decl.dashboard.id)
    assert [s["Name"] for s in board["Dashboard"]["Version"]["Sheets"]] == [
        "Sales trend",
        "Sales by category",
        "Top products",
        "Web funnel",
        "Inventory",
        "Customer demographics",
    ]
    assert (
        glue.get_table(DatabaseName="storepulse_dev_curated", Name="orders")["Table"][
            "StorageDescriptor"
        ]["Location"]
        == f"s3://{LAKE}/curated/orders/"
    )


def test_deploy_updates_what_changed_and_publishes_the_new_dashboard(lake: Lake) -> None:
    refunds = lake.decl.data_sets["refunds"]
    changed_refunds = dataclasses.replace(
        refunds, columns=(*refunds.columns, qs.Column("channel", "string"))
    )
    view = dataclasses.replace(lake.decl.dashboard.views[0], title="Revenue per day")
    board = dataclasses.replace(lake.decl.dashboard, views=(view, *lake.decl.dashboard.views[1:]))
    decl = dataclasses.replace(
        lake.decl, data_sets={**lake.decl.data_sets, "refunds": changed_refunds}, dashboard=board
    )

    report = qs.deploy(lake.quicksight, decl, account_id=ACCOUNT, glue=lake.glue)

    changed = {k: v for k, v in report.actions.items() if v != "unchanged"}
    assert changed == {  # the Glue table is the export's: deploy leaves it alone
        f"data set {refunds.id}": "updated",
        f"dashboard {decl.dashboard.id}": "updated",
    }
    assert list(report.ingestions) == [refunds.id]  # AWS re-ingests an edited SPICE data set
    described = lake.quicksight.describe_data_set(AwsAccountId=ACCOUNT, DataSetId=refunds.id)
    assert "channel" in [c["Name"] for c in described["DataSet"]["OutputColumns"]]
    version = lake.quicksight.describe_dashboard(AwsAccountId=ACCOUNT, DashboardId=board.id)[
        "Dashboard"
    ]["Version"]
    assert (version["VersionNumber"], version["Sheets"][0]["Name"]) == (2, "Revenue per day")
    again = qs.deploy(lake.quicksight, decl, account_id=ACCOUNT, glue=lake.glue)
    assert set(again.actions.values()) == {"unchanged"}


# --- refresh -----------------------------------------------------------------------------------


def test_a_full_refresh_ingests_every_row_of_the_published_parquet(lake: Lake) -> None:
    lake.publish("inventory_snapshot", _inventory(5), day=TODAY - timedelta(days=1))
    lake.publish("inventory_snapshot", _inventory(7))

    [result] = lake.refresh("inventory_snapshot")

    assert (result.status, result.rows_ingested, result.total_rows) == ("COMPLETED", 12, 12)
    assert result.ingestion_id and result.ingestion_id.startswith("inventory-snapshot-")
    ingestion = qs.describe_ingestion(
        lake.quicksight,
        account_id=ACCOUNT,
        data_set_id=result.data_set_id,
        ingestion_id=result.ingestion_id,
    )
    assert ingestion["RequestType"] == "FULL_REFRESH"
    assert ingestion["RowInfo"]["RowsIngested"] == 12


def test_an_incremental_refresh_ingests_the_lookback_window(lake: Lake) -> None:
    old = TODAY - timedelta(days=30)
    lake.publish("daily_category_sales", _category_sales(old, old), day=old)
    lake.publish("daily_category_sales", _category_sales(TODAY, TODAY, TODAY))

    [result] = lake.refresh("daily_category_sales")

    assert (result.status, result.rows_ingested, result.total_rows) == ("COMPLETED", 3, 5)
    assert lake.ingestions("daily_category_sales")[0]["RequestType"] == "INCREMENTAL_REFRESH"


def test_a_wrong_column_type_fails_the_ingestion_naming_the_column(lake: Lake) -> None:
    lake.publish("inventory_snapshot", _inventory(3, on_hand_type=pa.string()))

    with pytest.raises(qs.RefreshError, match="on_hand") as failure:
        lake.refresh("inventory_snapshot")

    [result] = failure.value.results
    assert result.status == "FAILED"
    assert result.error_type == "CUSTOMER_ERROR"
    assert "on_hand" in result.reason
    assert "bigint" in result.reason  # what the table declares, next to what the file holds


def test_a_missing_glue_table_fails_like_athena(lake: Lake) -> None:
    lake.glue.delete_table(DatabaseName="storepulse_dev_curated", Name="customers")

    with pytest.raises(qs.RefreshError) as failure:
        lake.refresh("customers")

    assert failure.value.results[0].error_type == "SQL_TABLE_NOT_FOUND"


def test_hidden_files_and_files_outside_partitions_are_not_read(lake: Lake) -> None:
    lake.publish("inventory_snapshot", _inventory(2))
    lake.s3.put_object(Bucket=LAKE, Key="curated/inventory_snapshot/_SUCCESS", Body=b"")
    lake.s3.put_object(Bucket=LAKE, Key="curated/inventory_snapshot/stray.parquet", Body=b"x")

    [result] = lake.refresh("inventory_snapshot")

    assert (result.status, result.rows_ingested) == ("COMPLETED", 2)


def test_a_table_without_projection_reads_its_registered_partitions_only(lake: Lake) -> None:
    """A table without projection (made by hand, or by an older export that registered each
    day): Athena reads its registered partitions only; a deploy brings it back to the lake's
    one definition, whose projection reads every published day."""
    database, name = "storepulse_dev_curated", "inventory_snapshot"
    table = lake.glue.get_table(DatabaseName=database, Name=name)["Table"]
    as_the_export = {k: table[k] for k in ("Name", "StorageDescriptor", "PartitionKeys")}
    lake.glue.update_table(
        DatabaseName=database,
        TableInput=as_the_export | {"Parameters": {"classification": "parquet"}},
    )
    location = f"{table['StorageDescriptor']['Location']}dt={TODAY.isoformat()}/"
    lake.glue.create_partition(
        DatabaseName=database,
        TableName=name,
        PartitionInput={
            "Values": [TODAY.isoformat()],
            "StorageDescriptor": table["StorageDescriptor"] | {"Location": location},
        },
    )
    lake.publish(name, _inventory(4))
    lake.publish(name, _inventory(9), day=TODAY - timedelta(days=1))  # not registered

    [result] = lake.refresh(name)
    report = qs.deploy(lake.quicksight, lake.decl, account_id=ACCOUNT, glue=lake.glue)
    [after] = lake.refresh(name)

    assert (result.status, result.rows_ingested) == ("COMPLETED", 4)
    assert report.actions[f"glue table {database}.{name}"] == "updated"
    parameters = lake.glue.get_table(DatabaseName=database, Name=name)["Table"]["Parameters"]
    assert parameters["projection.enabled"] == "true"
    assert (after.status, after.rows_ingested) == ("COMPLETED", 13)


def test_a_running_ingestion_is_not_duplicated(lake: Lake) -> None:
    lake.server.quicksight.ingestion_seconds = 2.0
    data_set = lake.decl.data_sets["customers"]
    lake.quicksight.create_ingestion(
        AwsAccountId=ACCOUNT, DataSetId=data_set.id, IngestionId="nightly-1"
    )

    [result] = lake.refresh("customers")

    assert (result.status, result.ingestion_id) == ("SKIPPED", "nightly-1")
    assert "already" in result.reason
    assert [i["IngestionId"] for i in lake.ingestions("customers")].count("nightly-1") == 1
    requested = [i for i in lake.ingestions("customers") if i["RequestType"] != "INITIAL_INGESTION"]
    assert len(requested) == 1


def test_a_second_ingestion_queues_behind_the_running_one(lake: Lake) -> None:
    lake.server.quicksight.ingestion_seconds = 0.6
    data_set_id = lake.decl.data_sets["customers"].id
    for ingestion_id in ("first", "second"):
        lake.quicksight.create_ingestion(
            AwsAccountId=ACCOUNT, DataSetId=data_set_id, IngestionId=ingestion_id
        )
    seen: list[str] = []
    deadline = time.monotonic() + 10
    while not seen or (seen[-1] not in ("COMPLETED", "FAILED") and time.monotonic() < deadline):
        seen.append(
            qs.describe_ingestion(
                lake.quicksight, account_id=ACCOUNT, data_set_id=data_set_id, ingestion_id="second"
            )["IngestionStatus"]
        )
        time.sleep(0.05)

    assert seen[-1] == "COMPLETED"
    assert "QUEUED" in seen


def test_the_daily_quota_refuses_with_a_clear_message(lake: Lake) -> None:
    lake.publish("inventory_snapshot", _inventory(1))
    lake.refresh("inventory_snapshot", quota=2)
    lake.refresh("inventory_snapshot", quota=2)

    with pytest.raises(qs.RefreshError, match="daily quota reached") as refused:
        lake.refresh("inventory_snapshot", quota=2)

    [result] = refused.value.results
    assert result.status == "REFUSED"
    assert "2 manual ingestions" in result.reason and "next one is allowed from" in result.reason
    manual = [
        i for i in lake.ingestions("inventory_snapshot") if i["RequestType"] == "FULL_REFRESH"
    ]
    assert len(manual) == 2  # the refused one was never created


def test_the_local_quicksight_enforces_the_quota_itself(lake: Lake) -> None:
    lake.server.quicksight.manual_quota = 1
    try:
        data_set_id = lake.decl.data_sets["customers"].id
        lake.quicksight.create_ingestion(
            AwsAccountId=ACCOUNT, DataSetId=data_set_id, IngestionId="a"
        )
        with pytest.raises(lake.quicksight.exceptions.LimitExceededException):
            lake.quicksight.create_ingestion(
                AwsAccountId=ACCOUNT, DataSetId=data_set_id, IngestionId="b"
            )
    finally:
        lake.server.quicksight.manual_quota = 32


def test_a_refresh_of_an_undeployed_data_set_is_refused(aws_client) -> None:
    decl = qs.load_declarations(env="dev", account_id=ACCOUNT, lake_bucket=LAKE)

    with pytest.raises(qs.RefreshError, match="run deploy_quicksight"):
        _refresh(aws_client("quicksight"), decl, ["orders"])


def test_an_ingestion_can_be_cancelled(lake: Lake) -> None:
    lake.server.quicksight.ingestion_seconds = 2.0
    data_set_id = lake.decl.data_sets["customers"].id
    lake.quicksight.create_ingestion(AwsAccountId=ACCOUNT, DataSetId=data_set_id, IngestionId="c")

    lake.quicksight.cancel_ingestion(AwsAccountId=ACCOUNT, DataSetId=data_set_id, IngestionId="c")

    plans = [qs.Plan("customers", data_set_id, "start", "FULL_REFRESH", "c")]
    [result] = qs.collect_results(lake.quicksight, plans, account_id=ACCOUNT)
    assert (result.status, result.error_type) == ("CANCELLED", "INGESTION_CANCELED")


# --- what the DAG runs -------------------------------------------------------------------------


def _event(uri: str) -> SimpleNamespace:
    return SimpleNamespace(asset=SimpleNamespace(uri=uri))


def test_a_publish_triggers_one_ingestion_per_affected_data_set(lake: Lake) -> None:
    """Two days of orders and one of refunds published: one ingestion each, nothing else."""
    events = {
        "orders": [_event(curated_uri("orders")), _event(curated_uri("orders"))],
        "refunds": [_event(curated_uri("refunds"))],
        "other": [_event("s3://elsewhere/thing")],
    }
    names = requested_datasets(events, [])
    plans = qs.plan_refresh(lake.quicksight, lake.decl, names, account_id=ACCOUNT)
    for plan in plans:
        _start(plan)
    lake.wait_idle()

    assert [(p.data_set, p.action) for p in plans] == [("orders", "start"), ("refunds", "start")]
    for name in lake.decl.data_sets:
        refreshes = [i for i in lake.ingestions(name) if i["RequestType"].endswith("_REFRESH")]
        assert len(refreshes) == (1 if name in ("orders", "refunds") else 0), name
    results = qs.collect_results(lake.quicksight, plans, account_id=ACCOUNT)
    assert [r.status for r in results] == ["COMPLETED", "COMPLETED"]
    json.dumps([r.to_dict() for r in results])  # what goes to XCom


def test_the_providers_sensor_sees_completion_and_failure(lake: Lake) -> None:
    """The Amazon provider's operator and sensor, unchanged, against the local QuickSight."""
    from airflow.providers.amazon.aws.operators.quicksight import (
        QuickSightCreateIngestionOperator,
    )
    from airflow.providers.amazon.aws.sensors.quicksight import QuickSightSensor

    # Long enough to be seen under way even when a busy machine delays the first poke.
    lake.server.quicksight.ingestion_seconds = 4.0
    lake.publish("inventory_snapshot", _inventory(4))
    lake.publish("customers", pa.table({"customer_id": pa.array([1], pa.int64())}))
    common = {
        "aws_conn_id": None,
        "botocore_config": {"retries": {"mode": "standard", "total_max_attempts": 1}},
    }
    outcomes: dict[str, Any] = {}
    for name in ("inventory_snapshot", "customers"):
        ids = {"data_set_id": lake.decl.data_sets[name].id, "ingestion_id": f"{name}-1"}
        create = QuickSightCreateIngestionOperator(
            task_id=f"create_{name}", wait_for_completion=False, **ids, **common
        )
        sensor = QuickSightSensor(task_id=f"wait_{name}", **ids, **common)
        assert sensor.hook.account_id == ACCOUNT  # the hook is ready before the clock starts
        create.execute({})
        pokes: list[bool] = []
        try:
            while not pokes or not pokes[-1]:
                pokes.append(sensor.poke({}))
                time.sleep(0.05)
            outcomes[name] = pokes
        except RuntimeError as exc:
            outcomes[name] = str(exc)

    assert outcomes["inventory_snapshot"][0] is False  # INITIALIZED or RUNNING
    assert outcomes["inventory_snapshot"][-1] is True
    assert "customer_id" in outcomes["customers"]  # int64 in the file, string in the table
    assert "CUSTOMER_ERROR" in outcomes["customers"]


def test_unknown_quicksight_calls_still_reach_moto(lake: Lake) -> None:
    settings = lake.quicksight.describe_account_settings(AwsAccountId=ACCOUNT)
    assert settings["AccountSettings"]["AccountName"]
    with pytest.raises(botocore.exceptions.ClientError):
        lake.quicksight.describe_ingestion(
            AwsAccountId=ACCOUNT, DataSetId="no-such-set", IngestionId="x"
        )


# --- the DAG, end to end (one dag.test(): ~6 s of database migration, ~14 s of run) ------------


def test_the_refresh_dag_runs_on_the_embedded_aws(lake: Lake, tmp_path) -> None:
    """A manual run: the provider's operator creates the ingestion, its sensor waits for it, the
    summary records the rows. In a subprocess: Airflow reads its configuration once per process."""
    lake.publish("inventory_snapshot", _inventory(6))
    env = airflow_home(tmp_path, lake.server.url)
    (run,) = run_dags(
        env,
        [{"dag_id": "refresh_quicksight", "conf": {"data_sets": ["inventory_snapshot"]}}],
        dag_folder=REPO_ROOT / "dags" / "refresh_quicksight.py",
        timeout=300,
    )
    assert run["state"] == "success", run
    assert set(run["tasks"]) == {
        "affected_data_sets",
        "wait_for_data_sets",
        "plan_ingestions",
        "create_ingestion[0]",
        "wait_for_ingestion[0]",
        "record_ingestions",
    }
    [record] = run["xcoms"]["record_ingestions.ingestions"]
    assert (record["data_set"], record["status"], record["rows_ingested"]) == (
        "inventory_snapshot",
        "COMPLETED",
        6,
    )
    assert record["ingestion_id"] == lake.ingestions("inventory_snapshot")[0]["IngestionId"]


# --- access control: one grant limits QuickSight and the dashboard ------------------------------


def _as_deployer(recorder: Any) -> Any:
    """Clients signed as Airflow's deployment principal, their calls recorded."""
    from storepulse.aws import FAIL_FAST_CONFIG
    from storepulse_local.iam import DEPLOYER

    session = DEPLOYER.session()
    recorder.attach(session)
    return lambda service: session.client(service, config=FAIL_FAST_CONFIG)


def _dashboard(username: str) -> Any:
    """The dashboard's JSON API as ``username`` (Airflow's login overridden, as in
    test_dashboard_api), reading the grants without a cache."""
    from fastapi.testclient import TestClient

    from storepulse.clock import fixed_clock
    from storepulse.dashboard.app import Services, Viewer, create_app, current_viewer
    from storepulse.dashboard.live import LiveDashboard
    from storepulse.dashboard.reader import DynamoLiveReader, ThreadLocalTable
    from storepulse.layout import Table, table_name
    from storepulse.settings import AccessStore, SettingsStore

    table, clock = ThreadLocalTable(table_name(Table.SETTINGS)), fixed_clock(datetime.now(UTC))
    services = Services(
        settings_store=SettingsStore(table),
        access=AccessStore(table, cache_seconds=0),
        live=LiveDashboard(DynamoLiveReader.connect(), clock=clock),
        lake_factory=lambda: None,
        clock=clock,
    )
    app = create_app(services)
    app.dependency_overrides[current_viewer] = lambda: Viewer(username)
    return TestClient(app)


def _sync(lake: Lake, stack: Any, clients: tuple[Any, Any]) -> Any:
    """What sync_quicksight_access runs (with the deployer's QuickSight and S3 clients), then
    waits for the rules' ingestion."""
    from storepulse.layout import Table
    from storepulse.quicksight.access import sync_access
    from storepulse.settings import SettingsStore, StoreAccess

    grants = SettingsStore(stack.table(Table.SETTINGS)).list_valid(StoreAccess)
    report = sync_access(
        *clients,
        lake.decl,
        grants,
        account_id=ACCOUNT,
        region="us-east-1",
    )
    if report.ingestion:
        _wait(report.ingestion["data_set_id"], report.ingestion["ingestion_id"])
    return report


def _stores_seen(lake: Lake, user: str) -> set[str]:
    from storepulse_local.quicksight import query_rows

    data_set = lake.decl.data_set("daily_category_sales").id
    return {row["store_id"] for row in query_rows(lake.server.url, ACCOUNT, data_set, user)}


def test_one_grant_limits_quicksight_and_the_dashboard(lake: Lake, realtime_stack: Any) -> None:
    from storepulse.deploy.permissions import Account, CallRecorder, Policy
    from storepulse.layout import Table
    from storepulse.settings import AccessStore, StoreAccess
    from storepulse_local.iam import deployment_policy
    from storepulse_local.quicksight import ApiError
    from tests.integration.conftest import STORES

    sales = _category_sales(TODAY, TODAY)  # rows of s-0 and s-1: give them the test's ids
    sales = sales.set_column(0, "store_id", pa.array(["s-001", "s-002"]))
    lake.publish("daily_category_sales", sales)
    lake.refresh("daily_category_sales")
    grants = AccessStore(realtime_stack.table(Table.SETTINGS))
    maria = StoreAccess(
        username="maria", store_ids=("s-001",), role="manager", email="maria@example.com"
    )
    grants.put(maria, STORES)
    owner = StoreAccess(username="olga", all_stores=True, role="owner", email="olga@example.com")
    grants.put(owner, STORES)
    recorder = CallRecorder(Account(ACCOUNT))
    deployer = _as_deployer(recorder)
    clients = (deployer("quicksight"), deployer("s3"))
    clients[0].meta.events.register("after-call.quicksight", _check_shapes)
    dashboard = _dashboard("maria")

    first = _sync(lake, realtime_stack, clients)

    assert (first.rules, first.rules_changed) == (2, True)
    assert _stores_seen(lake, "maria") == {"s-001"}
    assert _stores_seen(lake, "olga") == {"s-001", "s-002"}
    me = dashboard.get("/api/me").json()
    assert [s["store_id"] for s in me["stores"]] == ["s-001"]
    assert dashboard.get("/api/live", params={"store": "s-002"}).status_code == 403
    assert set(_sync(lake, realtime_stack, clients).actions.values()) == {"unchanged"}

    # The one declaration changes: s-002 instead of s-001. The dashboard follows at once,
    # QuickSight after the sync and the rules' refresh.
    grants.put(maria.model_copy(update={"store_ids": ("s-002",)}), STORES)
    assert dashboard.get("/api/live", params={"store": "s-001"}).status_code == 403
    assert _stores_seen(lake, "maria") == {"s-001"}  # SPICE still holds the old rules
    changed = _sync(lake, realtime_stack, clients)
    assert changed.rules_changed and changed.ingestion
    assert _stores_seen(lake, "maria") == {"s-002"}

    # Revoked: the dashboard and QuickSight both fail closed.
    assert grants.delete("maria")
    revoked = _sync(lake, realtime_stack, clients)
    assert revoked.actions["membership storepulse-dev-managers/maria"] == "removed"
    with pytest.raises(ApiError, match="maria has no permission"):
        _stores_seen(lake, "maria")
    assert dashboard.get("/api/me").json()["stores"] == []

    # Every call the sync made is one the deployment policy grants (the local QuickSight does
    # not authorize: infra/local/embedded_aws_gaps.json).
    assert {"RegisterUser", "CreateGroup", "UpdateDataSetPermissions", "CreateIngestion"} <= (
        recorder.operations()["quicksight"]
    )
    statements = [
        s for s in deployment_policy()["Statement"] if s.get("Sid", "").startswith("Dash")
    ]
    policy = Policy.from_documents([{"Statement": statements}])
    denied = [a for a in policy.denied(recorder.accesses()) if a.action.startswith("quicksight")]
    assert not denied, denied


def test_a_user_without_a_rule_sees_no_rows(lake: Lake) -> None:
    """Registered and permitted, but absent from the rules: refused, not shown everything."""
    from storepulse_local.quicksight import ApiError

    lake.quicksight.register_user(
        AwsAccountId=ACCOUNT,
        Namespace="default",
        UserName="ivan",
        IdentityType="QUICKSIGHT",
        Email="ivan@example.com",
        UserRole="READER",
    )
    data_set = lake.decl.data_set("daily_category_sales").id
    user_arn = f"arn:aws:quicksight:us-east-1:{ACCOUNT}:user/default/ivan"
    grant = [{"Principal": user_arn, "Actions": ["quicksight:DescribeDataSet"]}]
    lake.quicksight.update_data_set_permissions(
        AwsAccountId=ACCOUNT, DataSetId=data_set, GrantPermissions=grant
    )
    with pytest.raises(ApiError, match="no row-level security rule lets ivan"):
        _stores_seen(lake, "ivan")
    with pytest.raises(ApiError, match="not a QuickSight user"):
        _stores_seen(lake, "nobody")
    with pytest.raises(botocore.exceptions.ClientError, match="ResourceExists"):
        lake.quicksight.register_user(
            AwsAccountId=ACCOUNT,
            Namespace="default",
            UserName="ivan",
            IdentityType="QUICKSIGHT",
            Email="ivan@example.com",
            UserRole="READER",
        )
    stranger = [{"Principal": user_arn + "x", "Actions": grant[0]["Actions"]}]
    with pytest.raises(botocore.exceptions.ClientError, match="InvalidParameterValue"):
        lake.quicksight.update_data_set_permissions(
            AwsAccountId=ACCOUNT, DataSetId=data_set, GrantPermissions=stranger
        )
