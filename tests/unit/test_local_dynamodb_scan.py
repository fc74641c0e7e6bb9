"""The embedded AWS's DynamoDB Scan (storepulse_local.dynamodb_scan): moto's key order, sorted
by plain values, so paging through a table returns every item once, in that order."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from storepulse_local.dynamodb_scan import sort_key


def _scan_all(dynamodb: Any, table: str, page: int) -> list[dict[str, Any]]:
    items, start = [], {}
    while True:
        answer = dynamodb.scan(TableName=table, Limit=page, **start)
        items += answer["Items"]
        if "LastEvaluatedKey" not in answer:
            return items
        start = {"ExclusiveStartKey": answer["LastEvaluatedKey"]}


def test_pages_return_every_item_once_in_key_order_numbers_as_numbers(aws_client) -> None:
    dynamodb = aws_client("dynamodb")
    dynamodb.create_table(
        TableName="scanned",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "n", "AttributeType": "N"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "n", "KeyType": "RANGE"},
        ],
    )
    keys = [(pk, n) for pk in ("b", "a", "STORE#1") for n in (100, 9, 10, -1, 2.5)]
    random.Random(7).shuffle(keys)
    for pk, n in keys:
        dynamodb.put_item(TableName="scanned", Item={"pk": {"S": pk}, "n": {"N": str(n)}})

    scanned = [(i["pk"]["S"], Decimal(i["n"]["N"])) for i in _scan_all(dynamodb, "scanned", 4)]

    assert scanned == sorted((pk, Decimal(str(n))) for pk, n in keys)


def test_the_sort_key_of_an_item_without_a_range_key_is_its_hash_keys_value() -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    item = Item(DynamoType({"N": "12"}), None, {"pk": {"N": "12"}})

    assert sort_key(item) == Decimal(12)
