"""
### Apply the lake's lifecycle rules

Keeps the S3 lifecycle configuration of the lake bucket equal to `infra/lifecycle.json`: raw/
to STANDARD_IA at 30 days, GLACIER at 90, gone at 400; quarantine/ 90 days; staging/ 7 days;
curated/ to INTELLIGENT_TIERING at 30 (Athena and QuickSight read it: never archived);
_quality/ 180 days; bucket-wide, incomplete multipart uploads aborted after 7 days and
noncurrent versions expired after 30. Weekly, so hand edits on the bucket are found and
reported within a week; trigger it after changing the file.

1. **validate_rules**: the declared rules checked as S3 would check them (the embedded AWS
   accepts anything); an invalid rule stops the run before the bucket is touched.
2. **wait_for_stack**, then **lake_bucket**: waits (rescheduled) until the real-time stack
   exists and serves, so a first run before the first deploy waits instead of failing; then
   the param `bucket`, else `STOREPULSE_LAKE_BUCKET`, else the `LakeBucket` output of the stack
   `storepulse-<env>-realtime` (`storepulse.lake.bucket`).
3. **apply_rules**: reads the bucket's rules, logs the diff per rule ID (`+` added, `~` changed
   field by field, `!` on the bucket but not declared: *drift*), puts the configuration only
   when something differs, then reads it back and checks it. Drift is kept (merged into what
   is applied) or removed, as the file's `drift` setting says; it is always reported. Returns
   `added`, `changed`, `removed`, `kept_drift`, `applied`.

Params: `dry_run` (compute and log the diff, apply nothing), `bucket` (another bucket).
Rerunning is safe: an up-to-date bucket gets no put. The embedded AWS stores the rules but
never runs them: objects there never transition nor expire.
"""

from __future__ import annotations

import logging
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from storepulse.airflow.conventions import AWS_CONN_ID, DEFAULT_ARGS
from storepulse.airflow.sensors import wait_for_stack
from storepulse.config import settings
from storepulse.deploy.stack import stack_name

log = logging.getLogger(__name__)


@dag(
    schedule="@weekly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lake", "lifecycle"],
    doc_md=__doc__,
    params={
        "dry_run": Param(False, type="boolean", description="Log the diff only; apply nothing"),
        "bucket": Param(
            None,
            type=["null", "string"],
            description="Lake bucket to use instead of the stack's LakeBucket output",
        ),
    },
)
def apply_lifecycle() -> None:
    @task
    def validate_rules() -> dict[str, Any]:
        """Check the file before anything else; pass on exactly what was checked."""
        from storepulse.lifecycle import LIFECYCLE_FILE, load_config

        config = load_config()
        count, drift = len(config.rules), config.drift
        log.info("%s: %d valid rules, drift=%s", LIFECYCLE_FILE.name, count, drift)
        return config.to_dict()

    @task
    def lake_bucket(params: dict[str, Any] | None = None) -> str:
        from storepulse.airflow.hooks import aws_client
        from storepulse.lake.bucket import lake_bucket as find_lake_bucket

        return find_lake_bucket(aws_client("cloudformation"), (params or {}).get("bucket"))

    @task
    def apply_rules(
        config: dict[str, Any], bucket: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from storepulse.lifecycle import apply_lifecycle, parse_config

        s3 = S3Hook(aws_conn_id=AWS_CONN_ID).get_conn()
        dry_run = bool((params or {}).get("dry_run", False))
        result = apply_lifecycle(s3, bucket, parse_config(config), dry_run=dry_run)
        return result.summary()

    bucket = lake_bucket()
    wait_for_stack(stack_name(settings().env)) >> bucket
    apply_rules(validate_rules(), bucket)


apply_lifecycle()
