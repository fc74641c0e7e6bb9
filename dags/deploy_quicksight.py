"""
### Deploy QuickSight: the data source, data sets and dashboard of `infra/quicksight/datasets.json`

Scheduled on the Asset `cloudformation://storepulse/realtime`, which `deploy_realtime_stack`
emits once the stack is deployed and verified: QuickSight follows every deploy (the first one
in `make up` included), before any nightly export publishes what `refresh_quicksight` refreshes.
A manual run is safe too: everything already matching is left alone.

1. **validate_declarations**: stops before anything is touched when the file is invalid.
2. **lake_bucket**: the param `lake_bucket`, else `STOREPULSE_LAKE_BUCKET`, else the real-time
   stack's `LakeBucket` output (`storepulse.lake.bucket`).
3. **deploy**: the Glue tables Athena reads (missing ones only: the export owns the curated
   tables and registers their partitions), the ATHENA data source, the SPICE data sets
   (row-level security included) with their refresh properties, and the dashboard, each
   created, updated or left alone when it already matches. Param `manage_catalog` (false: Glue
   is not touched).
4. **sync_access**: QuickSight's groups (owner, manager, viewer), the users of the dashboard
   grants that have a role, their memberships, the groups' permissions on the data sets and
   dashboard, and the row-level-security rules generated from the same grants' store limits
   (written to the lake and ingested when they changed): see `storepulse.quicksight.access`.
   The `sync_quicksight_access` DAG applies later changes of the grants.

Locally the embedded AWS answers the QuickSight API itself (`storepulse_local.quicksight`).
"""

from __future__ import annotations

import logging
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from storepulse.airflow.conventions import AWS_CONN_ID, DEFAULT_ARGS
from storepulse.airflow.hooks import (
    apply_quicksight_access,
    aws_client,
    quicksight_client,
    quicksight_declarations,
)
from storepulse.assets import realtime_stack_asset
from storepulse.config import settings

log = logging.getLogger(__name__)


@dag(
    schedule=realtime_stack_asset(),  # every successful deploy of the real-time stack
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
        from storepulse.lake.bucket import lake_bucket as find_lake_bucket

        return find_lake_bucket(aws_client("cloudformation"), (params or {}).get("lake_bucket"))

    @task
    def deploy(bucket: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        from storepulse.quicksight import deploy as deploy_declarations

        client, account_id = quicksight_client()
        decl = quicksight_declarations(account_id, client.meta.region_name, bucket)
        manage_catalog = (params or {}).get("manage_catalog", True)
        glue = AwsBaseHook(aws_conn_id=AWS_CONN_ID, client_type="glue").get_conn()
        report = deploy_declarations(
            client, decl, account_id=account_id, glue=glue if manage_catalog else None
        )
        log.info("deploy: %s", report.summary())
        return report.to_dict()

    @task
    def sync_access(bucket: str) -> dict[str, Any]:
        """Principals, permissions and the rules; their ingestion runs on (as the deploy's)."""
        report = apply_quicksight_access(bucket)
        log.info("access: %d rules (changed: %s)", report["rules"], report["rules_changed"])
        return report

    bucket = lake_bucket()
    validate_declarations() >> deploy(bucket) >> sync_access(bucket)


deploy_quicksight()
