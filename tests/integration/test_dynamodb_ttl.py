"""The embedded AWS deletes expired items as DynamoDB's TTL does (moto stores TTL, applies none)."""

from __future__ import annotations

import json
import time
from typing import Any

from storepulse.capture.changes import decode_record
from storepulse_local.dynamodb_ttl import sweep
from storepulse_local.embedded_aws import EmbeddedAws
from storepulse_local.lambda_runtime.sources import DynamoDBStreamSource

NOW = 1_800_000_000.0  # the sweep's clock: any moment, the items' TTLs are around it
FACTS = "storepulse-dev-facts"  # a table of the lake: the change capture reads its records


def _table(aws_client: Any, name: str = FACTS, ttl: bool = True) -> Any:
    dynamodb = aws_client("dynamodb")
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    if ttl:
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )
    return dynamodb


def _put(dynamodb: Any, sk: str, expires_at: dict[str, str] | None, table: str = FACTS) -> None:
    item = {"pk": {"S": "p"}, "sk": {"S": sk}}
    if expires_at is not None:
        item["expires_at"] = expires_at
    dynamodb.put_item(TableName=table, Item=item)


def _keys(dynamodb: Any, table: str = FACTS) -> list[str]:
    return sorted(i["sk"]["S"] for i in dynamodb.scan(TableName=table)["Items"])


def _lambda_event_records(aws_client: Any, table: str = FACTS) -> list[dict[str, Any]]:
    """The table's stream records as the local runtime hands them to a function."""
    arn = aws_client("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
    streams, source = aws_client("dynamodbstreams"), DynamoDBStreamSource()
    shard = source.list_shards(streams, arn)[0]["ShardId"]
    iterator = source.iterator(streams, arn, shard, {"ShardIteratorType": "TRIM_HORIZON"})
    raw = streams.get_records(ShardIterator=iterator)["Records"]
    return [{**r.entry, "eventSourceARN": arn} for r in source.records(shard, raw)]


def test_expired_items_are_deleted_by_the_service_and_nothing_else(aws_client) -> None:
    dynamodb = _table(aws_client)
    _put(dynamodb, "expired", {"N": str(int(NOW) - 1)})
    _put(dynamodb, "fresh", {"N": str(int(NOW) + 3600)})
    _put(dynamodb, "text", {"S": "1"})  # AWS reads only a Number: never expires
    _put(dynamodb, "none", None)
    _put(dynamodb, "deleted-by-a-user", {"N": str(int(NOW) + 3600)})
    dynamodb.delete_item(TableName=FACTS, Key={"pk": {"S": "p"}, "sk": {"S": "deleted-by-a-user"}})

    assert sweep(at=NOW) == 1

    assert _keys(dynamodb) == ["fresh", "none", "text"]
    removes = [r for r in _lambda_event_records(aws_client) if r["eventName"] == "REMOVE"]
    by_key = {r["dynamodb"]["Keys"]["sk"]["S"]: r for r in removes}
    assert by_key["expired"]["userIdentity"] == {
        "type": "Service",
        "principalId": "dynamodb.amazonaws.com",
    }
    assert by_key["expired"]["dynamodb"]["OldImage"]["expires_at"] == {"N": str(int(NOW) - 1)}
    assert "userIdentity" not in by_key["deleted-by-a-user"]  # a user's delete says nothing
    # The change capture tells the expiry from the user's delete.
    assert decode_record(by_key["expired"]).expired
    assert not decode_record(by_key["deleted-by-a-user"]).expired
    assert sweep(at=NOW) == 0  # nothing left to expire


def test_a_table_without_ttl_keeps_its_expired_items(aws_client) -> None:
    dynamodb = _table(aws_client, "no-ttl", ttl=False)
    _put(dynamodb, "old", {"N": "1"}, table="no-ttl")

    assert sweep(at=NOW) == 0
    assert _keys(dynamodb, "no-ttl") == ["old"]


def test_a_stack_table_has_the_templates_time_to_live(aws_client) -> None:
    """moto's CloudFormation ignores TimeToLiveSpecification (DescribeTimeToLive: DISABLED)."""
    template = {
        "Resources": {
            "Table": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "TableName": "stack-ttl",
                    "BillingMode": "PAY_PER_REQUEST",
                    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                    "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
                },
            }
        }
    }
    aws_client("cloudformation").create_stack(StackName="ttl", TemplateBody=json.dumps(template))

    described = aws_client("dynamodb").describe_time_to_live(TableName="stack-ttl")

    assert described["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "expires_at",
    }


def test_the_platforms_server_sweeps_in_the_background(aws_client) -> None:
    """As `python -m storepulse_local.embedded_aws` runs it (--ttl-sweep-seconds): the deletes
    count as changes, so the next snapshot keeps them."""
    dynamodb = _table(aws_client)
    _put(dynamodb, "expired", {"N": str(int(time.time()) - 1)})
    _put(dynamodb, "fresh", {"N": str(int(time.time()) + 3600)})
    sweeping = EmbeddedAws(port=0, ttl_sweep_seconds=0.1)  # the same moto state, in-process
    assert sweeping.ttl is not None
    sweeping.start()
    try:
        deadline = time.monotonic() + 30
        while _keys(dynamodb) != ["fresh"] and time.monotonic() < deadline:
            time.sleep(0.1)
        gate = sweeping.gate  # the request gate in front of moto
    finally:
        sweeping.stop()
    assert _keys(dynamodb) == ["fresh"]
    assert gate is not None and gate.mutations >= 1
