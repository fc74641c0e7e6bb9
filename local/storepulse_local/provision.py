"""Create the real-time path's storage directly (tables, lake bucket, alert topic) from the key
layout. For tests and local experiments; deployments go through CloudFormation."""

from __future__ import annotations

from typing import Any

from storepulse.layout import TABLE_SPECS, table_name


def create_tables(dynamodb: Any) -> dict[str, str]:
    """Create every table (a boto3 DynamoDB client) as the stack's template declares it (TTL,
    point-in-time recovery); return {table kind: name}."""
    names = {}
    for table, spec in TABLE_SPECS.items():
        name = table_name(table)
        dynamodb.create_table(**spec.create_table_kwargs(name))
        if spec.ttl_attribute:
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute},
            )
        dynamodb.update_continuous_backups(  # the template's PointInTimeRecoverySpecification
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
        names[table.value] = name
    return names
