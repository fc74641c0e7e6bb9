"""AWS access for tasks: every client comes from the Amazon provider's hook and the
``aws_default`` connection, so the connection alone decides between real and embedded AWS."""

from __future__ import annotations

from typing import Any

from storepulse.airflow.conventions import AWS_CONN_ID


def aws_client(service: str) -> Any:
    """A boto3 client for ``service`` through the provider's ``AwsBaseHook``."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=AWS_CONN_ID, client_type=service).get_conn()


def quicksight_client() -> tuple[Any, str]:
    """The QuickSight client of the ``aws_default`` connection and its account ID."""
    from airflow.providers.amazon.aws.hooks.quicksight import QuickSightHook

    hook = QuickSightHook(aws_conn_id=AWS_CONN_ID)
    return hook.conn, hook.account_id


def quicksight_declarations(account_id: str, region: str, lake_bucket: str | None = None) -> Any:
    """``infra/quicksight/datasets.json`` for this environment, account and region; with the
    ``lake_bucket`` task's bucket where the lake is read (deploy, access), else without one."""
    from storepulse.config import settings
    from storepulse.quicksight import load_declarations

    env = settings().env
    return load_declarations(env=env, region=region, account_id=account_id, lake_bucket=lake_bucket)


def apply_quicksight_access(lake_bucket: str) -> dict[str, Any]:
    """``storepulse.quicksight.access.sync_access`` with the ``aws_default`` clients and the
    grants of the environment's settings table (an invalid grant is left out: that user sees
    nothing). Returns the report; ``ingestion`` names the rules' ingestion to wait for."""
    from storepulse.layout import Table, table_name
    from storepulse.quicksight.access import sync_access
    from storepulse.settings import SettingsStore, StoreAccess

    client, account_id = quicksight_client()
    region = client.meta.region_name
    decl = quicksight_declarations(account_id, region, lake_bucket)
    settings_table = aws_resource("dynamodb").Table(table_name(Table.SETTINGS))
    grants = SettingsStore(settings_table).list_valid(StoreAccess)
    report = sync_access(
        client, aws_client("s3"), decl, grants, account_id=account_id, region=region
    )
    return report.to_dict()


def aws_resource(service: str) -> Any:
    """A boto3 resource for ``service`` through the provider's ``AwsBaseHook``."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=AWS_CONN_ID, resource_type=service).get_conn()


def lake_filesystem(uri: str) -> tuple[Any, str]:
    """A pyarrow filesystem for the lake from the ``aws_default`` connection (endpoint and
    credentials), like every boto3 client of the tasks: the connection alone decides.
    (dags/nightly_export.py has the same as ``_lake_filesystem``, to be folded into this.)"""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from storepulse.lake.filesystem import open_filesystem

    hook = AwsBaseHook(aws_conn_id=AWS_CONN_ID, client_type="s3")
    credentials = hook.get_credentials()
    return open_filesystem(
        uri,
        endpoint_url=hook.conn_config.get_service_endpoint_url("s3"),
        region=hook.conn_region_name,
        credentials={
            "access_key": credentials.access_key,
            "secret_key": credentials.secret_key,
            "session_token": credentials.token,
        },
    )
