"""QuickSight declarations, the requests built from them, the refresh guards and the DAG's logic."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber
from botocore.validate import ParamValidator

from storepulse import quicksight as qs
from storepulse.assets import (
    curated_asset,
    curated_uri,
    dataset_of_uri,
    datasets_of_events,
    requested_datasets,
)
from storepulse.clock import fixed_clock
from storepulse.export import DATASET_NAMES
from storepulse_local import quicksight as local

ACCOUNT = "123456789012"
NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return json.loads(qs.DECLARATIONS_FILE.read_text())


@pytest.fixture(scope="module")
def decl() -> qs.Declarations:
    return qs.load_declarations(env="dev", account_id=ACCOUNT, lake_bucket="lake")


def _model(service: str) -> Any:
    return botocore.session.get_session().get_service_model(service)


def _assert_valid(service: str, operation: str, params: dict[str, Any]) -> None:
    shape = _model(service).operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()


def _client() -> Any:
    return botocore.session.get_session().create_client(
        "quicksight",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


# --- the declarations --------------------------------------------------------------------------


def test_the_declarations_are_valid(raw: dict[str, Any]) -> None:
    assert qs.validate(raw) == []


def test_every_curated_data_set_is_declared_once(decl: qs.Declarations) -> None:
    assert tuple(decl.data_sets) == DATASET_NAMES
    assert len({d.id for d in decl.every_data_set()}) == len(DATASET_NAMES) + 1


def test_placeholders_are_resolved(decl: qs.Declarations) -> None:
    assert decl.data_source.database == "storepulse_dev_curated"
    assert decl.data_sets["orders"].id == "storepulse-dev-orders"
    table = qs.glue_table_input(decl, decl.data_sets["orders"])
    assert table["StorageDescriptor"]["Location"] == "s3://lake/curated/orders/"
    assert table["Parameters"]["storage.location.template"] == "s3://lake/curated/orders/dt=${dt}/"


def test_the_lake_bucket_is_given_never_named() -> None:
    """Refresh plans need no bucket; what reads the lake refuses to guess one."""
    decl = qs.load_declarations(env="dev", account_id=ACCOUNT)
    assert decl.data_sets["orders"].id == "storepulse-dev-orders"
    with pytest.raises(qs.DeclarationError, match="without a lake bucket"):
        qs.glue_table_input(decl, decl.data_sets["orders"])


def test_the_declared_columns_are_the_exports_schemas(decl: qs.Declarations) -> None:
    """Same columns (derived from them when the file is loaded), and Athena reads each export
    type as declared (the lake's contract)."""
    export = pytest.importorskip("storepulse.export.datasets")
    for name, data_set in decl.data_sets.items():
        schema = export.DATASETS[name].schema
        assert [c.name for c in data_set.columns] == schema.names, name
        for column in data_set.columns:
            arrow_type = schema.field(column.name).type
            assert local.athena_accepts(column.type, arrow_type), (name, column, arrow_type)


def test_refresh_modes(decl: qs.Declarations) -> None:
    modes = {name: d.refresh.ingestion_type for name, d in decl.data_sets.items()}
    assert modes["orders"] == "INCREMENTAL_REFRESH"
    assert modes["inventory_snapshot"] == modes["customers"] == "FULL_REFRESH"
    window = decl.data_sets["orders"].refresh.refresh_properties()
    assert window == {
        "RefreshConfiguration": {
            "IncrementalRefresh": {
                "LookbackWindow": {"ColumnName": "business_date", "Size": 3, "SizeUnit": "DAY"}
            }
        }
    }


def _broken(raw: dict[str, Any], change: Any) -> list[str]:
    doc = copy.deepcopy(raw)
    change(doc)
    return qs.validate(doc)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda d: d["row_level_security"]["data_set"]["columns"][0].update(type="varchar2"),
            "unknown type",
        ),
        (
            lambda d: d["data_sets"][0].update(columns=[{"name": "x", "type": "string"}]),
            "columns derive from the lake",
        ),
        (
            lambda d: d["data_sets"][0]["refresh"].update(lookback_column="store_id"),
            "date/timestamp",
        ),
        (lambda d: d["data_sets"][1].update(id=d["data_sets"][0]["id"]), "share the id"),
        (lambda d: d["data_sets"][0].update(s3_prefix="/curated/orders"), "s3_prefix"),
        (lambda d: d["data_sets"][0].update(partition_key="store_id"), "partition_key"),
        (lambda d: d["dashboard"]["views"][0].update(data_set="nope"), "unknown data set"),
        (
            lambda d: d["dashboard"]["views"][1]["measures"].append(
                {"column": "category", "aggregation": "SUM"}
            ),
            "category (string) takes",
        ),
        (lambda d: d["dashboard"]["views"][0]["dimensions"].clear(), "exactly one dimension"),
        (lambda d: d["row_level_security"]["applies_to"].append("ghost"), "unknown data set"),
        (lambda d: d["data_source"].update(database="{nope}"), "unknown placeholder {nope}"),
        (lambda d: d["refresh_quota"].update(manual_ingestions_per_data_set_per_24h=0), "quota"),
    ],
)
def test_invalid_declarations_are_reported(raw: dict[str, Any], change: Any, problem: str) -> None:
    problems = _broken(raw, change)
    assert any(problem in p for p in problems), problems


def test_an_invalid_file_does_not_load(raw: dict[str, Any]) -> None:
    doc = copy.deepcopy(raw)
    doc["version"] = 2
    with pytest.raises(qs.DeclarationError, match="version must be 1"):
        qs.parse(doc, env="dev")


# --- the requests are what the QuickSight and Glue APIs accept ---------------------------------


def test_the_requests_are_valid_for_botocore(decl: qs.Declarations) -> None:
    source_arn = f"arn:aws:quicksight:us-east-1:{ACCOUNT}:datasource/x"
    rls_arn = f"arn:aws:quicksight:us-east-1:{ACCOUNT}:dataset/rules"
    account = {"AwsAccountId": ACCOUNT}
    _assert_valid(
        "quicksight",
        "CreateDataSource",
        account | {"Type": "ATHENA"} | qs.data_source_request(decl),
    )
    for data_set in decl.every_data_set():
        request = account | qs.data_set_request(decl, data_set, source_arn, rls_arn)
        _assert_valid("quicksight", "CreateDataSet", request)
        _assert_valid(
            "glue",
            "CreateTable",
            {"DatabaseName": "db", "TableInput": qs.glue_table_input(decl, data_set)},
        )
        properties = data_set.refresh.refresh_properties()
        if properties:
            _assert_valid(
                "quicksight",
                "PutDataSetRefreshProperties",
                account | {"DataSetId": data_set.id, "DataSetRefreshProperties": properties},
            )
    arns = {
        name: f"arn:aws:quicksight:us-east-1:{ACCOUNT}:dataset/{name}" for name in decl.data_sets
    }
    definition = qs.dashboard_definition(decl, arns)
    _assert_valid(
        "quicksight",
        "CreateDashboard",
        account | {"DashboardId": "d", "Name": "d", "Definition": definition},
    )


def test_the_dashboard_has_the_six_views(decl: qs.Declarations) -> None:
    arns = {name: f"arn:{name}" for name in decl.data_sets}
    sheets = qs.dashboard_definition(decl, arns)["Sheets"]
    assert [s["Name"] for s in sheets] == [
        "Sales trend",
        "Sales by category",
        "Top products",
        "Web funnel",
        "Inventory",
        "Customer demographics",
    ]
    top = sheets[2]["Visuals"][0]["BarChartVisual"]["ChartConfiguration"]["SortConfiguration"]
    assert top["CategoryItemsLimit"]["ItemsLimit"] == 10


def test_row_level_security_points_every_store_data_set_at_the_rules(decl: qs.Declarations) -> None:
    rls = decl.row_level_security
    assert rls is not None
    request = qs.data_set_request(decl, decl.data_sets["orders"], "arn:src", "arn:rules")
    assert request["RowLevelPermissionDataSet"] == {
        "Arn": "arn:rules",
        "PermissionPolicy": "GRANT_ACCESS",
        "FormatVersion": "VERSION_2",
        "Status": "ENABLED",
    }
    rules = qs.data_set_request(decl, rls.data_set, "arn:src")
    renames = rules["LogicalTableMap"]["store-access"]["DataTransforms"]
    assert [r["RenameColumnOperation"]["NewColumnName"] for r in renames] == [
        "UserARN",
        "GroupARN",
    ]


def test_the_dashboard_fingerprint_follows_its_definition(decl: qs.Declarations) -> None:
    arns = {name: f"arn:{name}" for name in decl.data_sets}
    definition = qs.dashboard_definition(decl, arns)
    same = qs.definition_hash(qs.dashboard_definition(decl, dict(arns)), "n")
    assert qs.definition_hash(definition, "n") == same
    assert qs.definition_hash(definition, "other") != same


# --- the refresh guards (botocore's Stubber checks requests and responses against the model) ---


def _ingestion(ingestion_id: str, status: str, created: datetime, **extra: Any) -> dict[str, Any]:
    arn = f"arn:aws:quicksight:us-east-1:{ACCOUNT}:dataset/d/ingestion/{ingestion_id}"
    fields = {"RequestSource": "MANUAL", "RequestType": "FULL_REFRESH"} | extra
    return {
        "Arn": arn,
        "IngestionId": ingestion_id,
        "IngestionStatus": status,
        "CreatedTime": created,
    } | fields


def _plan_with(decl: qs.Declarations, ingestions: list[dict[str, Any]], **kwargs: Any) -> qs.Plan:
    client = _client()
    with Stubber(client) as stub:
        stub.add_response(
            "list_ingestions",
            {"Ingestions": ingestions, "RequestId": "r", "Status": 200},
            {"AwsAccountId": ACCOUNT, "DataSetId": decl.data_sets["customers"].id},
        )
        plan = qs.plan_data_set(
            client, decl, "customers", account_id=ACCOUNT, clock=fixed_clock(NOW), **kwargs
        )
        stub.assert_no_pending_responses()
    return plan


def test_a_data_set_without_ingestions_gets_one(decl: qs.Declarations) -> None:
    plan = _plan_with(decl, [])
    assert (plan.action, plan.ingestion_type) == ("start", "FULL_REFRESH")
    assert plan.ingestion_id and plan.ingestion_id.startswith("customers-20261126T030000Z-")


@pytest.mark.parametrize("status", sorted(qs.ACTIVE_STATUSES))
def test_an_ingestion_under_way_is_not_duplicated(decl: qs.Declarations, status: str) -> None:
    plan = _plan_with(decl, [_ingestion("busy", status, NOW - timedelta(minutes=1))])
    assert (plan.action, plan.ingestion_id) == ("skip", "busy")
    assert status in plan.reason


def test_the_quota_counts_manual_refreshes_of_the_last_24_hours(decl: qs.Declarations) -> None:
    history = [
        _ingestion("old", "COMPLETED", NOW - timedelta(hours=25)),
        _ingestion(
            "create", "COMPLETED", NOW - timedelta(hours=2), RequestType="INITIAL_INGESTION"
        ),
        _ingestion("sched", "COMPLETED", NOW - timedelta(hours=2), RequestSource="SCHEDULED"),
        _ingestion("one", "COMPLETED", NOW - timedelta(hours=20)),
        _ingestion("two", "FAILED", NOW - timedelta(hours=1)),
    ]
    assert _plan_with(decl, history, quota=3).action == "start"
    refused = _plan_with(decl, history, quota=2)

    assert refused.action == "refuse"
    assert refused.reason.startswith("daily quota reached: 2 manual ingestions of")
    assert "next one is allowed from 2026-11-26 07:00:00 UTC" in refused.reason


def test_the_declared_quota_is_32(decl: qs.Declarations) -> None:
    assert decl.quota == qs.DEFAULT_QUOTA == 32


def test_a_failed_ingestion_is_reported_with_its_error_info() -> None:
    failed = _ingestion(
        "i",
        "FAILED",
        NOW,
        ErrorInfo={"Type": "CUSTOMER_ERROR", "Message": "Field total's type int64 ..."},
    )
    result = qs.ingestion_result("orders", "storepulse-dev-orders", failed)
    skipped = qs.plan_result(qs.Plan("refunds", "r", "skip", "FULL_REFRESH", "x", "busy"))

    with pytest.raises(qs.RefreshError) as error:
        qs.check_results([result, skipped])

    assert "orders (storepulse-dev-orders): ingestion i FAILED: CUSTOMER_ERROR: Field total" in str(
        error.value
    )
    assert "refunds" not in str(error.value)  # a skip is not a failure
    assert qs.check_results([skipped]) == [skipped]


def test_new_ingestion_ids_are_valid_and_unique() -> None:
    ids = {qs.new_ingestion_id("daily_store_metrics", NOW) for _ in range(50)}
    assert len(ids) == 50
    pattern = _model("quicksight").shape_for("IngestionId").metadata["pattern"]
    import re

    assert all(re.match(pattern, i) and len(i) <= 128 for i in ids)


# --- assets: what a publish triggers -----------------------------------------------------------


def _event(uri: str) -> SimpleNamespace:
    return SimpleNamespace(asset=SimpleNamespace(uri=uri))


def test_one_asset_per_curated_data_set() -> None:
    assets = [curated_asset(name) for name in DATASET_NAMES]
    assert [a.uri for a in assets] == [f"s3://storepulse/curated/{n}" for n in DATASET_NAMES]
    assert curated_asset("orders") == curated_asset("orders")  # producer and consumer agree
    assert dataset_of_uri(curated_uri("refunds")) == "refunds"
    assert dataset_of_uri("s3://storepulse/curated/unknown") is None
    with pytest.raises(ValueError, match="not a curated data set"):
        curated_asset("unknown")


def test_the_events_name_each_affected_data_set_once() -> None:
    events = {
        "a": [_event(curated_uri("refunds")), _event(curated_uri("orders"))],
        "b": [_event(curated_uri("orders"))],
        "c": [_event("s3://other/asset")],
    }
    assert datasets_of_events(events) == ["orders", "refunds"]
    assert requested_datasets(events, ["customers"]) == ["orders", "refunds"]


def test_a_manual_run_refreshes_what_it_asks_for_or_everything() -> None:
    assert requested_datasets({}, ["customers", "orders"]) == ["orders", "customers"]
    assert requested_datasets({}, []) == list(DATASET_NAMES)
    with pytest.raises(ValueError, match="ghost"):
        requested_datasets({}, ["ghost"])


def test_real_triggering_asset_events_are_understood() -> None:
    """What Airflow passes to a task: TriggeringAssetEventsAccessor of AssetEvent references."""
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    def event(uri: str) -> AssetEventDagRunReferenceResult:
        return AssetEventDagRunReferenceResult(
            asset={"name": uri, "uri": uri, "extra": {}},
            extra={},
            source_task_id="publish",
            source_dag_id="export_lake",
            source_run_id="r",
            source_map_index=-1,
            source_aliases=[],
            timestamp=NOW,
        )

    accessor = TriggeringAssetEventsAccessor.build(
        [event(curated_uri("daily_store_metrics")), event(curated_uri("customers"))]
    )
    assert datasets_of_events(accessor) == ["daily_store_metrics", "customers"]


def test_the_refresh_dag_is_scheduled_on_every_curated_asset() -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.amazon.aws.operators.quicksight import (
        QuickSightCreateIngestionOperator,
    )
    from airflow.providers.amazon.aws.sensors.quicksight import QuickSightSensor

    from storepulse.config import REPO_ROOT

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "refresh_quicksight.py"))
    assert bag.import_errors == {}
    refresh = bag.dags["refresh_quicksight"]
    condition = refresh.timetable.asset_condition
    assert type(condition).__name__ == "AssetAny"
    assert [a.uri for a in condition.objects] == [curated_uri(n) for n in DATASET_NAMES]
    assert refresh.task_dict["create_ingestion"].operator_class is QuickSightCreateIngestionOperator
    assert refresh.task_dict["wait_for_ingestion"].operator_class is QuickSightSensor
    assert refresh.task_dict["record_ingestions"].trigger_rule == "all_done"
    # A refresh that comes before deploy_quicksight has created its data sets waits for them.
    wait = refresh.task_dict["wait_for_data_sets"]
    assert wait.mode == "reschedule" and "plan_ingestions" in wait.downstream_task_ids
    deploy = DagBag(dag_folder=str(REPO_ROOT / "dags" / "deploy_quicksight.py"))
    assert set(deploy.dags["deploy_quicksight"].task_dict) == {
        "validate_declarations",
        "lake_bucket",
        "deploy",
        "sync_access",
    }
    sync = DagBag(dag_folder=str(REPO_ROOT / "dags" / "sync_quicksight_access.py"))
    assert sync.import_errors == {}
    tasks = sync.dags["sync_quicksight_access"].task_dict
    assert tasks["wait_for_rules"].operator_class is QuickSightSensor
    assert "wait_for_rules" in tasks["rules_changed"].downstream_task_ids
    from storepulse.airflow import hooks

    called = tasks["sync_access"].python_callable.__globals__["apply_quicksight_access"]
    assert called is hooks.apply_quicksight_access  # not shadowed by the DAG's own name


# --- the local QuickSight's rules --------------------------------------------------------------


def test_every_local_operation_has_a_route() -> None:
    assert [r.operation for r in local.routes()] == list(local.OPERATIONS)
    route = next(r for r in local.routes() if r.operation == "CreateIngestion")
    found = route.pattern.match("/accounts/1/data-sets/ds/ingestions/i")
    assert route.method == "PUT" and found and found.group("IngestionId") == "i"


def test_quicksight_requests_are_recognized() -> None:
    signed = "AWS4-HMAC-SHA256 Credential=AKID/20261126/us-east-1/quicksight/aws4_request, ..."
    glue = signed.replace("/quicksight/", "/glue/")
    path = {"PATH_INFO": "/accounts/1/data-sets"}
    assert local.is_quicksight_request(path | {"HTTP_AUTHORIZATION": signed})
    assert not local.is_quicksight_request(path | {"HTTP_AUTHORIZATION": glue})
    assert local.is_quicksight_request({"HTTP_HOST": "quicksight.us-east-1.amazonaws.com"})
    assert not local.is_quicksight_request({"PATH_INFO": "/", "HTTP_AUTHORIZATION": signed})


@pytest.mark.parametrize(
    ("athena", "arrow", "accepted"),
    [
        ("bigint", "int64", True),
        ("bigint", "int32", True),
        ("int", "int64", False),
        ("decimal(18,2)", "decimal128(18, 2)", True),
        ("decimal(18,2)", "decimal128(18, 4)", False),
        ("decimal(18,2)", "float64", False),
        ("string", "string", True),
        ("string", "int64", False),
        ("date", "date32", True),
        ("timestamp", "timestamp[us, tz=UTC]", True),
        ("timestamp", "date32", False),
    ],
)
def test_athena_type_compatibility(athena: str, arrow: str, accepted: bool) -> None:
    import pyarrow as pa

    types = {
        "int64": pa.int64(),
        "int32": pa.int32(),
        "decimal128(18, 2)": pa.decimal128(18, 2),
        "decimal128(18, 4)": pa.decimal128(18, 4),
        "float64": pa.float64(),
        "string": pa.string(),
        "date32": pa.date32(),
        "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
    }
    assert local.athena_accepts(athena, types[arrow]) is accepted
