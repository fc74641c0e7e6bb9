"""The embedded AWS lets go of what AWS drops: moto's own tracking of every model object it
ever made (storepulse_local.embedded_aws) is off, so a replaced item, an expired record or a
used shard iterator is freed."""

from __future__ import annotations

import gc
import weakref
from typing import Any


def _item(table: str) -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    (item,) = backend.get_table(table).items.values()  # a table without a range key
    return item


def test_a_replaced_item_is_freed(aws_client) -> None:
    dynamodb = aws_client("dynamodb")
    dynamodb.create_table(
        TableName="totals",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    dynamodb.put_item(TableName="totals", Item={"pk": {"S": "store#1"}, "n": {"N": "1"}})
    first = weakref.ref(_item("totals"))
    dynamodb.put_item(TableName="totals", Item={"pk": {"S": "store#1"}, "n": {"N": "2"}})
    gc.collect()

    assert first() is None  # moto kept every item ever put in Item.instances_tracked
    assert _item("totals").attrs["n"].value == "2"
