"""AWS access for tasks: every client comes from the Amazon provider's hook and the
``aws_default`` connection, so the connection alone decides between real and embedded AWS."""

from __future__ import annotations

from typing import Any

from storepulse.airflow.conventions import AWS_CONN_ID


def aws_client(service: str) -> Any:
    """A boto3 client for ``service`` through the provider's ``AwsBaseHook``."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=AWS_CONN_ID, client_type=service).get_conn()
