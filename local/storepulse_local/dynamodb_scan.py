"""moto's DynamoDB Scan, made cheaper to start: same items, same order, same pages.

moto 5.2.5 sorts every item of the table by its key for each Scan page (``Table.all_items``),
comparing moto's ``DynamoType`` objects, whose ``__lt__`` and ``__eq__`` are Python calls that
convert both values again: 1.3 s of CPU per page on 125,000 items (the metrics table after a
simulated week of the demo), which ``make up`` paid for its one question to the restored state
(``storepulse_local.platform.restored.history_sent``). Here the sort key is each key's value as
those methods compare it (``cast_value``), computed once per item, and compared by Python's own
types: the order is moto's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from storepulse_local.cloudformation import patch_once


def patch_dynamodb_scans() -> None:
    """Apply the patch (once per process, however many servers start)."""
    from moto.dynamodb.models.table import Table

    patch_once(Table, "all_items", _sorted_by_plain_keys)


def _sorted_by_plain_keys(_original: Callable[..., Any]) -> Callable[..., list[Any]]:
    def all_items(self: Any) -> list[Any]:
        if self.range_key_attr:
            items = [item for by_range in self.items.values() for item in by_range.values()]
        else:
            items = list(self.items.values())
        return sorted(items, key=sort_key)

    return all_items


def sort_key(item: Any) -> Any:
    """moto's key for ``sorted``, with each ``DynamoType`` replaced by the value it compares."""
    if item.range_key:
        return item.hash_key.cast_value, item.range_key.cast_value
    return item.hash_key.cast_value
