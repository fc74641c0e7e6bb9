"""
### QuickSight: refresh SPICE after each publish

Over `infra/quicksight/datasets.json` (see `storepulse.quicksight`). Scheduled on the curated
data sets' Assets (`s3://storepulse/curated/<dataset>`, any of them): the nightly export emits
one event per data set it published, and this DAG refreshes exactly those data sets' SPICE
copies.

1. **affected_data_sets**: the data sets the triggering asset events concern. A manual run has
   none: it refreshes the param `data_sets`, or every data set when that is empty.
2. **wait_for_data_sets** (rescheduled every 60 s, up to an hour): until those data sets exist
   in QuickSight: on a first start the export can publish while `deploy_quicksight`, which
   follows every deploy of the stack, is still creating them.
3. **plan_ingestions**: per data set, *start* an ingestion (INCREMENTAL or FULL, as declared),
   *skip* it (one is already INITIALIZED/QUEUED/RUNNING: it will read the new files), or
   *refuse* it (not deployed, or its daily quota of manual ingestions is used up: QuickSight
   Enterprise allows 32 per data set per 24 h; param `quota` lowers it).
4. **create_ingestion** (mapped, the provider's `QuickSightCreateIngestionOperator`) and
   **wait_for_ingestion** (mapped, `QuickSightSensor`): a FAILED ingestion fails its sensor with
   QuickSight's ErrorInfo, which names the column when the Parquet does not match the data set.
5. **record_ingestions** (runs whatever happened): per data set the ingestion id, status, rows
   ingested and the reason of a failure, skip or refusal, in its XCom (`ingestions`, and the
   return value when all went well); fails when a data set was not refreshed.

`deploy_quicksight` (its own DAG, after every deploy of the real-time stack) creates what
this DAG refreshes.

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
from airflow.sdk import Param, PokeReturnValue, TriggerRule, dag, get_current_context, task

from storepulse.airflow.conventions import AWS_CONN_ID, DEFAULT_ARGS
from storepulse.airflow.hooks import quicksight_client, quicksight_declarations
from storepulse.assets import curated_asset
from storepulse.export import DATASET_NAMES

log = logging.getLogger(__name__)

POKE_SECONDS = 15
WAIT_TIMEOUT_SECONDS = 2 * 3600  # a SPICE ingestion of these data sets takes minutes


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

    @task.sensor(poke_interval=POKE_SECONDS * 4, timeout=3600, mode="reschedule")
    def wait_for_data_sets(data_sets: list[str]) -> PokeReturnValue:
        from storepulse.airflow.sensors import undeployed_data_sets

        client, account_id = quicksight_client()
        decl = quicksight_declarations(account_id, client.meta.region_name)
        missing = undeployed_data_sets(client, decl, data_sets, account_id)
        if missing:
            log.info("not in QuickSight yet (deploy_quicksight creates them): %s", missing)
        return PokeReturnValue(is_done=not missing, xcom_value=data_sets)

    @task
    def plan_ingestions(
        data_sets: list[str], params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Start, skip or refuse each data set (see the DAG's doc). Returns the ingestions to
        start (the mapped tasks' kwargs); every plan goes to the XCom key ``plans``."""
        from storepulse.quicksight import plan_refresh

        client, account_id = quicksight_client()
        decl = quicksight_declarations(account_id, client.meta.region_name)
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

        client, account_id = quicksight_client()
        results = collect_results(client, plans, account_id=account_id)
        records = [r.to_dict() for r in results]
        get_current_context()["ti"].xcom_push(key="ingestions", value=records)
        check_results(results)
        return records

    plan = plan_ingestions(wait_for_data_sets(affected_data_sets()))
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


refresh_quicksight()
