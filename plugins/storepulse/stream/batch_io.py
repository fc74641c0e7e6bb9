"""Batched DynamoDB reads and writes: 100 keys per BatchGetItem, 25 items per BatchWriteItem,
unprocessed keys and items retried (with backoff) until done."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from storepulse.layout import Key

GET_LIMIT = 100
MAX_ROUNDS = 8


def batch_get(
    dynamodb: Any,
    table: str,
    keys: Iterable[Key],
    names: Sequence[str] = (),
    *,
    consistent: bool = True,
) -> dict[Key, dict[str, Any]]:
    """The items that exist among ``keys`` (``dynamodb``: a boto3 resource); ``names``: the
    attributes wanted (all if empty; the keys always). Strongly consistent unless the reader can
    live with a value a second old (the dashboard), which halves the read cost."""
    keys = list(dict.fromkeys(keys))
    projection: dict[str, Any] = {}
    if names:
        aliases = {f"#a{i}": n for i, n in enumerate(dict.fromkeys(("pk", "sk", *names)))}
        projection = {
            "ProjectionExpression": ", ".join(aliases),
            "ExpressionAttributeNames": aliases,
        }
    found: dict[Key, dict[str, Any]] = {}
    for start in range(0, len(keys), GET_LIMIT):
        request = {
            "Keys": [k.as_item() for k in keys[start : start + GET_LIMIT]],
            "ConsistentRead": consistent,
            **projection,
        }
        pending: dict[str, Any] = {table: request}
        for round_ in range(MAX_ROUNDS):
            response = dynamodb.batch_get_item(RequestItems=pending)
            for item in response["Responses"].get(table, []):
                found[Key(item["pk"], item["sk"])] = item
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                break
            time.sleep(0.05 * 2**round_)
        else:
            raise RuntimeError(
                f"BatchGetItem on {table} left keys unprocessed after {MAX_ROUNDS} rounds"
            )
    return found


def batch_put(table: Any, items: Iterable[dict[str, Any]]) -> int:
    """Put ``items`` (a boto3 ``Table``); the batch writer retries unprocessed items itself."""
    count = 0
    with table.batch_writer() as writer:
        for item in items:
            writer.put_item(Item=item)
            count += 1
    return count
