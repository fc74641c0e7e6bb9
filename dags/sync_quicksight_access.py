"""
### QuickSight access: apply the dashboard grants to QuickSight

The dashboard grants (`python -m storepulse.dashboard.access set USER s-001 --role manager
--email ...`, items of the settings table) are the one declaration of who sees which store.
This DAG makes QuickSight follow them (`storepulse.quicksight.access`): the users of the grants
with a role, in their role's group (owner, manager, viewer), the groups' permissions, and the
row-level-security rules generated from the same store limits. Every 10 minutes: the grants are
changed by a command line outside Airflow, which cannot emit an Asset event; a run that finds
nothing changed reads the grants and one S3 object's metadata and writes nothing. A revoked grant
thus reaches QuickSight within ~10 minutes plus the rules' ingestion (the dashboard applies it
within seconds). `deploy_quicksight` runs the same sync after every deploy.

1. **wait_for_stack**, then **lake_bucket**: `STOREPULSE_LAKE_BUCKET`, else the real-time
   stack's `LakeBucket` output (`storepulse.lake.bucket`).
2. **quicksight_deployed**: skips the rest until `deploy_quicksight` created the dashboard.
3. **sync_access**: groups, users, memberships, permissions; the rules file rewritten only when
   its content changes, then a FULL ingestion of the rules data set (QuickSight enforces its
   SPICE copy of the rules, not the file).
4. **rules_changed**, then **wait_for_rules** (the provider's `QuickSightSensor`): waits for
   that ingestion, when one was started; a FAILED one fails the run with QuickSight's ErrorInfo
   (the rules stay as they were: users keep the previous limits, revoked users included).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.amazon.aws.sensors.quicksight import QuickSightSensor
from airflow.sdk import dag, task

from storepulse.airflow.conventions import AWS_CONN_ID, DEFAULT_ARGS
from storepulse.airflow.hooks import (
    apply_quicksight_access,
    aws_client,
    quicksight_client,
    quicksight_declarations,
)
from storepulse.airflow.sensors import wait_for_stack
from storepulse.config import settings
from storepulse.deploy.stack import stack_name

log = logging.getLogger(__name__)

SYNC_EVERY = timedelta(minutes=10)


@dag(
    schedule=SYNC_EVERY,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["quicksight", "access"],
    doc_md=__doc__,
)
def sync_quicksight_access() -> None:
    @task
    def lake_bucket() -> str:
        from storepulse.lake.bucket import lake_bucket as find_lake_bucket

        return find_lake_bucket(aws_client("cloudformation"))

    @task.short_circuit
    def quicksight_deployed() -> bool:
        from botocore.exceptions import ClientError

        client, account_id = quicksight_client()
        decl = quicksight_declarations(account_id, client.meta.region_name)  # ids only
        try:
            client.describe_dashboard(AwsAccountId=account_id, DashboardId=decl.dashboard.id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            log.info("QuickSight is not deployed yet: deploy_quicksight syncs access itself")
            return False
        return True

    @task
    def sync_access(bucket: str) -> dict[str, Any]:
        report = apply_quicksight_access(bucket)
        changed = {k: v for k, v in report["actions"].items() if v != "unchanged"}
        log.info(
            "%d rules (changed: %s); changes: %s", report["rules"], report["rules_changed"], changed
        )
        return report

    @task.short_circuit
    def rules_changed(report: dict[str, Any]) -> bool:
        return report["ingestion"] is not None

    bucket = lake_bucket()
    report = sync_access(bucket)
    wait = QuickSightSensor(
        task_id="wait_for_rules",
        aws_conn_id=AWS_CONN_ID,
        data_set_id="{{ ti.xcom_pull(task_ids='sync_access')['ingestion']['data_set_id'] }}",
        ingestion_id="{{ ti.xcom_pull(task_ids='sync_access')['ingestion']['ingestion_id'] }}",
        poke_interval=15,
        timeout=3600,
        mode="reschedule",
    )
    wait_for_stack(stack_name(settings().env)) >> bucket >> quicksight_deployed() >> report
    rules_changed(report) >> wait


sync_quicksight_access()
