"""
### Platform check

Verifies that Airflow reaches the AWS account (or the embedded AWS) through the `aws_default`
connection: who it is talking to, in which region, at which endpoint, and whether the platform's
resource names for this environment are free or taken.

Trigger it after pointing the platform at a new account (see the README, "Using real AWS").
"""

from __future__ import annotations

import logging

import pendulum
from airflow.sdk import dag, task

from storepulse.airflow.conventions import AWS_CONN_ID, DEFAULT_ARGS

log = logging.getLogger(__name__)


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["platform"],
    doc_md=__doc__,
)
def platform_check() -> None:
    @task
    def caller_identity() -> dict[str, str]:
        """Log the account, principal, region and endpoint that `aws_default` resolves to."""
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        hook = AwsBaseHook(aws_conn_id=AWS_CONN_ID, client_type="sts")
        client = hook.get_conn()
        identity = client.get_caller_identity()
        found = {
            "account": identity["Account"],
            "arn": identity["Arn"],
            "region": client.meta.region_name,
            "endpoint": client.meta.endpoint_url,
        }
        log.info(
            "aws_default -> account %(account)s as %(arn)s in %(region)s via %(endpoint)s", found
        )
        return found

    caller_identity()


platform_check()
