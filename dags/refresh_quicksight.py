"""
### QuickSight: refresh SPICE after each publish, and deploy the declarations

Two DAGs over `infra/quicksight/datasets.json` (see `storepulse.quicksight`).

**refresh_quicksight**, scheduled on the curated data sets' Assets
(`s3://storepulse/curated/<dataset>`, any of them): the nightly export emits one event per data set
it published, and this DAG refreshes exactly those data sets' SPICE copies.

1. **affected_data_sets**: the data sets the triggering asset events concern. A manual run has
   none: it refreshes the param `data_sets`, or every data set when that is empty.
2. **plan_ingestions**: per data set, *start* an ingestion (INCREMENTAL or FULL, as declared),
   *skip* it (one is already INITIALIZED/QUEUED/RUNNING: it will read the new files), or
   *refuse* it (not deployed, or its daily quota of manual ingestions is used up: QuickSight
   Enterprise allows 32 per data set per 24 h; param `quota` lowers it).
3. **create_ingestion** (mapped, the provider's `QuickSightCreateIngestionOperator`) and
   **wait_for_ingestion** (mapped, `QuickSightSensor`): a FAILED ingestion fails its sensor with
   QuickSight's ErrorInfo, which names the column when the Parquet does not match the data set.
4. **record_ingestions** (runs whatever happened): per data set the ingestion id, status, rows
   ingested and the reason of a failure, skip or refusal, in its XCom (`ingestions`, and the
   return value when all went well); fails when a data set was not refreshed.

**deploy_quicksight** (manual): the Glue tables Athena reads (missing ones only: the export owns
the curated tables and registers their partitions), the ATHENA data source, the SPICE data sets
(row-level security included) with their refresh properties, and the dashboard, each created,
updated or left alone when it already matches. Params: `lake_bucket` (default: the real-time
stack's `LakeBucket` output), `manage_catalog` (false: Glue is not touched).

Locally the embedded AWS runs a local QuickSight whose ingestions really read the lake's Parquet.
"""

from __future__ import annotations

import functools
import logging
import operator
from typing import Any

import pendulum
from airflow.providers.amazon.aws.operators.quicksight import QuickSightCreateIngestionOperator
from airflow.providers.amazon.aws.sensors.quicksight import QuickSightSensor
from airflow.sdk import Param, TriggerRule, dag, get_current_context, task

from storepulse.airflow.conventions import AWS_CONN_ID, DEFAULT_ARGS
from storepulse.assets import curated_asset
from storepulse.config import settings
from storepulse.export import DATASET_NAMES

log = logging.getLogger(__name__)

POKE_SECONDS = 15
WAIT_TIMEOUT_SECONDS = 2 * 3600  # a SPICE ingestion of these data sets takes minutes


def _quicksight() -> tuple[Any, str]:
    """The QuickSight client of the ``aws_default`` connection and its account ID."""
    from airflow.providers.amazon.aws.hooks.quicksight import QuickSightHook

    hook = QuickSightHook(aws_conn_id=AWS_CONN_ID)
    return hook.conn, hook.account_id


def _declarations(account_id: str, region: str, lake_bucket: str | None = None) -> Any:
    from storepulse.quicksight import load_declarations

    env = settings().env
    return load_declarations(env=env, region=region, account_id=account_id, lake_bucket=lake_bucket)


def _sensor_kwargs(start: dict[str, Any]) -> dict[str, Any]:
    """The sensor's kwargs from an ingestion to start (it takes no ingestion type)."""
    return {"data_set_id": start["data_set_id"], "ingestion_id": start["ingestion_id"]}


@dag(
    schedule=functools.reduce(operator.or_, [curated_asset(name) for name in DATASET_NAMES]),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # events arriving during a run queue up for the next one
    default_args=DEFAULT_ARGS,
    tags=["quicksight", "refresh"],
    doc_md=__doc__,
    params={
        "data_sets": Param(
            [],
            type="array",
            items={"type": "string", "enum": list(DATASET_NAMES)},
            description="Manual runs: data sets to refresh (empty: every one)",
        ),
        "quota": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="Manual ingestions allowed per data set per 24 h (default: declared)",
        ),
    },
)
def refresh_quicksight() -> None:
    @task
    def affected_data_sets(
        triggering_asset_events: Any = None, params: dict[str, Any] | None = None
    ) -> list[str]:
        from storepulse.assets import requested_datasets

        events = triggering_asset_events or {}
        names = requested_datasets(events, (params or {}).get("data_sets") or [])
        source = f"{sum(len(e) for e in events.values())} asset events" if events else "params"
        log.info("%d data sets to refresh (from %s): %s", len(names), source, ", ".join(names))
        return names

    @task
    def plan_ingestions(
        data_sets: list[str], params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Start, skip or refuse each data set (see the DAG's doc). Returns the ingestions to
        start (the mapped tasks' kwargs); every plan goes to the XCom key ``plans``."""
        from storepulse.quicksight import plan_refresh

        client, account_id = _quicksight()
        decl = _declarations(account_id, client.meta.region_name)
        quota = (params or {}).get("quota")
        plans = plan_refresh(client, decl, data_sets, account_id=account_id, quota=quota)
        for plan in plans:
            log.info("%s: %s %s", plan.data_set_id, plan.action, plan.reason or plan.ingestion_id)
        get_current_context()["ti"].xcom_push(key="plans", value=[p.to_dict() for p in plans])
        return [
            {
                "data_set_id": p.data_set_id,
                "ingestion_id": p.ingestion_id,
                "ingestion_type": p.ingestion_type,
            }
            for p in plans
            if p.action == "start"
        ]

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def record_ingestions(plans: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every data set's outcome in XCom, then fail if one was not refreshed."""
        from storepulse.quicksight import check_results, collect_results

        client, account_id = _quicksight()
        results = collect_results(client, plans, account_id=account_id)
        records = [r.to_dict() for r in results]
        get_current_context()["ti"].xcom_push(key="ingestions", value=records)
        check_results(results)
        return records

    plan = plan_ingestions(affected_data_sets())
    create = QuickSightCreateIngestionOperator.partial(
        task_id="create_ingestion",
        aws_conn_id=AWS_CONN_ID,
        wait_for_completion=False,  # the sensor waits, freeing the worker slot meanwhile
        map_index_template="{{ task.data_set_id }}",
    ).expand_kwargs(plan)
    wait = QuickSightSensor.partial(
        task_id="wait_for_ingestion",
        aws_conn_id=AWS_CONN_ID,
        poke_interval=POKE_SECONDS,
        timeout=WAIT_TIMEOUT_SECONDS,
        mode="reschedule",
        map_index_template="{{ task.data_set_id }}",
    ).expand_kwargs(plan.map(_sensor_kwargs))
    create >> wait >> record_ingestions(plan["plans"])


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["quicksight", "deploy"],
    doc_md=__doc__,
    params={
        "lake_bucket": Param(
            None,
            type=["null", "string"],
            description="Lake bucket instead of the real-time stack's LakeBucket output",
        ),
        "manage_catalog": Param(
            True,
            type="boolean",
            description="Create missing Glue tables (the export owns the curated ones) and "
            "keep the row-level-security table up to date",
        ),
    },
)
def deploy_quicksight() -> None:
    @task
    def validate_declarations() -> dict[str, int]:
        """Stop before touching anything when the file is invalid."""
        from storepulse.quicksight import DECLARATIONS_FILE, load_declarations

        decl = load_declarations(env=settings().env)
        counts = {"data_sets": len(decl.every_data_set()), "views": len(decl.dashboard.views)}
        log.info("%s is valid: %s", DECLARATIONS_FILE.name, counts)
        return counts

    @task
    def lake_bucket(params: dict[str, Any] | None = None) -> str:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        from storepulse.lake.bucket import lake_bucket as find_lake_bucket

        override = (params or {}).get("lake_bucket")
        if override:
            return override
        cfn = AwsBaseHook(aws_conn_id=AWS_CONN_ID, client_type="cloudformation").get_conn()
        bucket = find_lake_bucket(cfn, settings().env)
        log.info("lake bucket %s (the real-time stack's LakeBucket output)", bucket)
        return bucket

    @task
    def deploy(bucket: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        from storepulse.quicksight import deploy as deploy_declarations

        client, account_id = _quicksight()
        decl = _declarations(account_id, client.meta.region_name, bucket)
        manage_catalog = (params or {}).get("manage_catalog", True)
        glue = AwsBaseHook(aws_conn_id=AWS_CONN_ID, client_type="glue").get_conn()
        report = deploy_declarations(
            client, decl, account_id=account_id, glue=glue if manage_catalog else None
        )
        log.info("deploy: %s", report.summary())
        return report.to_dict()

    validate_declarations() >> deploy(lake_bucket())


refresh_quicksight()
deploy_quicksight()
