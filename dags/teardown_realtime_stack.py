"""
### Tear down the real-time path

Deletes the stack `storepulse-<env>-realtime` and says what it left behind. **It never deletes
data.**

1. **record_retained_resources**: before the stack goes, the resources it would leave: those
   with `DeletionPolicy: Retain` in the deployed template: the four DynamoDB tables and the lake
   bucket (the business's history), the stream (records not yet processed), the dead-letter
   queue (batches given up) and the alert topic's KMS key.
2. **delete_stack** / **wait_for_deletion**: the Amazon provider's CloudFormation operator and
   sensor. Function, topic, role, log group and alarms go; a missing stack is not an error.
3. **report_leftovers**: which retained resources still exist, and the artifacts bucket
   (`storepulse-<env>-artifacts-<account>`, every Lambda zip ever uploaded), with object counts.
   Delete those by hand if you mean it; `deploy_realtime_stack` cannot recreate the stack while
   the named tables, lake bucket, stream and queue exist (import or delete them first; a
   retained key only costs its monthly fee, schedule its deletion once nothing needs it).
"""

from __future__ import annotations

import logging
from typing import Any

import pendulum
from airflow.providers.amazon.aws.operators.cloud_formation import (
    CloudFormationDeleteStackOperator,
)
from airflow.providers.amazon.aws.sensors.cloud_formation import CloudFormationDeleteStackSensor
from airflow.sdk import dag, task

from storepulse.airflow.conventions import AWS_CONN_ID, DEFAULT_ARGS
from storepulse.airflow.hooks import aws_client
from storepulse.config import settings
from storepulse.deploy.stack import stack_name

log = logging.getLogger(__name__)

STACK_NAME = stack_name(settings().env)


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["realtime", "deploy"],
    doc_md=__doc__,
)
def teardown_realtime_stack() -> None:
    @task
    def record_retained_resources() -> list[dict[str, str]]:
        from dataclasses import asdict

        from storepulse.deploy.teardown import retained_resources

        retained = retained_resources(aws_client("cloudformation"), STACK_NAME)
        names = ", ".join(r.physical_id for r in retained) or "none (no stack)"
        log.info("%s: %d resources are retained on deletion: %s", STACK_NAME, len(retained), names)
        return [asdict(r) for r in retained]

    @task
    def report_leftovers(retained: list[dict[str, str]]) -> dict[str, Any]:
        """Say what remains (and holds data); delete nothing."""
        from storepulse.deploy.package import artifacts_bucket
        from storepulse.deploy.teardown import RetainedResource, bucket_usage, still_existing

        left = still_existing(aws_client, [RetainedResource(**r) for r in retained])
        for resource in left:
            log.info("left: %s %s", resource.resource_type, resource.physical_id)
        account = aws_client("sts").get_caller_identity()["Account"]
        bucket = artifacts_bucket(settings().env, account)
        usage = bucket_usage(aws_client("s3"), bucket)
        if usage:
            log.info("left: artifacts bucket %s (%d objects, %d bytes)", bucket, *usage)
        state = "kept" if usage else "absent"
        log.info(
            "%d of %d retained resources exist; artifacts bucket %s",
            len(left),
            len(retained),
            state,
        )
        return {
            "retained": [r.physical_id for r in left],
            "artifacts_bucket": bucket if usage else None,
            "artifact_objects": usage[0] if usage else 0,
        }

    retained = record_retained_resources()
    delete_stack = CloudFormationDeleteStackOperator(
        task_id="delete_stack", stack_name=STACK_NAME, aws_conn_id=AWS_CONN_ID
    )
    wait_for_deletion = CloudFormationDeleteStackSensor(
        task_id="wait_for_deletion",
        stack_name=STACK_NAME,
        aws_conn_id=AWS_CONN_ID,
        poke_interval=5,
        timeout=60 * 60,
    )
    retained >> delete_stack >> wait_for_deletion >> report_leftovers(retained)


teardown_realtime_stack()
