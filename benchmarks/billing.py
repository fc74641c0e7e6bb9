"""DynamoDB's bill for writes, recorded inside the embedded AWS (moto runs in this process).

On-demand DynamoDB bills every item a write touches, whoever calls it (this process or a Lambda
worker process): one write unit per started KB of the larger of the item before and after the
write, for ``PutItem``, ``UpdateItem``, ``DeleteItem`` and each item of a ``BatchWriteItem``; a
conditional write that fails is billed too (the item's size, at least one unit); an item of
``TransactWriteItems`` costs twice. Counting requests instead would call a 25-item
``BatchWriteItem`` one write, and a 10 KB item rewritten for one counter one unit.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

KB = 1024


def write_units(*sizes: int) -> int:
    """Write units of one item write: the larger size, in started KB, at least one."""
    return max(1, math.ceil(max(sizes, default=0) / KB))


def item_kind(table: str, pk: str) -> str:
    """What an item is, for the breakdown: ``metrics MIN``, ``facts ORDER``, ``inventory``..."""
    short = table.rsplit("-", 1)[-1]
    parts = pk.split("#")
    if short == "metrics" and len(parts) > 2 and parts[0] == "S":
        return f"metrics {parts[2]}"
    if short == "metrics" and parts[0] == "ALL" and len(parts) > 1:
        return f"metrics ALL {parts[1]}"
    return short if short in ("inventory", "settings") else f"{short} {parts[0]}"


@dataclass
class WriteBilling:
    """Billed write units and items written, by table and item kind, while ``recording()``."""

    units: collections.Counter[str] = field(default_factory=collections.Counter)
    items: collections.Counter[str] = field(default_factory=collections.Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _local: threading.local = field(default_factory=threading.local)

    @property
    def total_units(self) -> int:
        return sum(self.units.values())

    @property
    def total_items(self) -> int:
        return sum(self.items.values())

    def reset(self) -> None:
        with self._lock:
            self.units.clear()
            self.items.clear()

    def _bill(self, table: str, pk: str, units: int) -> None:
        factor = 2 if getattr(self._local, "transaction", False) else 1
        with self._lock:
            self.units[item_kind(table, pk)] += units * factor
            self.items[item_kind(table, pk)] += 1

    @contextmanager
    def recording(self) -> Iterator[WriteBilling]:
        from moto.dynamodb.models import DynamoDBBackend

        originals = {
            name: getattr(DynamoDBBackend, name)
            for name in ("put_item", "update_item", "delete_item", "transact_write_items")
        }
        DynamoDBBackend.put_item = self._billed(originals["put_item"], _put_key)  # type: ignore[method-assign]
        DynamoDBBackend.update_item = self._billed(originals["update_item"], _arg_key)  # type: ignore[method-assign]
        DynamoDBBackend.delete_item = self._billed(originals["delete_item"], _arg_key)  # type: ignore[method-assign]
        DynamoDBBackend.transact_write_items = self._transaction(  # type: ignore[method-assign]
            originals["transact_write_items"]
        )
        try:
            yield self
        finally:
            for name, original in originals.items():
                setattr(DynamoDBBackend, name, original)

    def _billed(
        self, write: Callable[..., Any], key_of: Callable[[Any, str, Any], dict[str, Any]]
    ) -> Callable[..., Any]:
        billing = self

        def billed(backend: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
            key = key_of(backend, table_name, args[0] if args else next(iter(kwargs.values())))
            before = backend.get_item(table_name, key)
            before_size = before.size() if before is not None else 0
            pk = str(next(iter(key.values())).get("S", ""))
            try:
                after = write(backend, table_name, *args, **kwargs)
            except Exception:  # a failed condition is billed as well
                billing._bill(table_name, pk, write_units(before_size))
                raise
            after_size = after.size() if after is not None and hasattr(after, "size") else 0
            billing._bill(table_name, pk, write_units(before_size, after_size))
            return after

        return billed

    def _transaction(self, transact: Callable[..., Any]) -> Callable[..., Any]:
        local = self._local

        def billed(backend: Any, *args: Any, **kwargs: Any) -> Any:
            local.transaction = True
            try:
                return transact(backend, *args, **kwargs)
            finally:
                local.transaction = False

        return billed


def _put_key(backend: Any, table_name: str, item: dict[str, Any]) -> dict[str, Any]:
    table = backend.get_table(table_name)
    names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
    return {name: item[name] for name in names}


def _arg_key(backend: Any, table_name: str, key: dict[str, Any]) -> dict[str, Any]:
    return key
