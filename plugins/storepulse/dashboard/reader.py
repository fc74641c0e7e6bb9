"""Reading the aggregates: the two reads the dashboard makes (lookups by key and one-partition
queries), on this environment's tables; boto3 ``Table`` resources made safe for threads."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

import boto3
from boto3.dynamodb.conditions import Key as KeyCondition

from storepulse import aws
from storepulse.config import settings
from storepulse.layout import (
    Key,
    Table,
    store_keys,
    table_name,
)
from storepulse.stream.batch_io import batch_get

Item = Mapping[str, Any]
METRICS, INVENTORY, FACTS = Table.METRICS, Table.INVENTORY, Table.FACTS


class ThreadLocalTable:
    """A boto3 ``Table`` that many threads can use: one resource per thread, since boto3
    resources are not thread-safe and FastAPI runs sync endpoints on a thread pool."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._local = threading.local()

    @property
    def resource(self) -> Any:
        resource = getattr(self._local, "resource", None)
        if resource is None:
            session = boto3.session.Session()
            resource = self._local.resource = session.resource(
                "dynamodb", region_name=settings().region, config=aws.DEFAULT_CONFIG
            )
        return resource

    def __getattr__(self, attribute: str) -> Any:
        table = getattr(self._local, "table", None)
        if table is None:
            table = self._local.table = self.resource.Table(self.name)
        return getattr(table, attribute)


class LiveReader(Protocol):
    """The two reads the dashboard makes. Keys are computed from the layout wherever possible:
    a lookup by key costs the same whatever the table's size, on DynamoDB and the embedded AWS
    alike (whose queries scan the whole table)."""

    def get_many(
        self, table: Table, keys: Sequence[Key], names: Sequence[str] = ()
    ) -> dict[Key, Item]:
        """The items that exist among ``keys``; ``names``: the attributes wanted (all if
        empty; the keys always)."""
        ...

    def query(
        self,
        table: Table,
        pk: str,
        *,
        low: str | None = None,
        high: str | None = None,
        names: Sequence[str] = (),
        newest_first: bool = False,
        limit: int | None = None,
        index: str | None = None,
    ) -> list[Item]:
        """Items of partition ``pk`` with ``low <= sk <= high``, in sort key order; with
        ``index`` (``gsi1``), of that index: its keys are ``<index>pk`` and ``<index>sk``."""
        ...


class DynamoLiveReader:
    """``LiveReader`` on this environment's tables."""

    def __init__(self, tables: Mapping[Table, Any]) -> None:
        self.tables = dict(tables)

    @classmethod
    def connect(cls) -> DynamoLiveReader:
        return cls({t: ThreadLocalTable(table_name(t)) for t in (METRICS, INVENTORY, FACTS)})

    def get_many(
        self, table: Table, keys: Sequence[Key], names: Sequence[str] = ()
    ) -> dict[Key, Item]:
        target = self.tables[table]
        return batch_get(target.resource, target.name, keys, names, consistent=False)

    def query(
        self,
        table: Table,
        pk: str,
        *,
        low: str | None = None,
        high: str | None = None,
        names: Sequence[str] = (),
        newest_first: bool = False,
        limit: int | None = None,
        index: str | None = None,
    ) -> list[Item]:
        hash_key, range_key = ("pk", "sk") if index is None else (f"{index}pk", f"{index}sk")
        condition = KeyCondition(hash_key).eq(pk)
        if low is not None or high is not None:
            condition &= KeyCondition(range_key).between(low or "", high or "\U0010ffff")
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": condition,
            "ScanIndexForward": not newest_first,
        }
        if index is not None:
            kwargs["IndexName"] = index
        if names:  # "#q": boto3 names the key condition's attributes "#n0", "#n1"
            wanted = ("pk", "sk", hash_key, range_key, *names)
            aliases = {f"#q{i}": n for i, n in enumerate(dict.fromkeys(wanted))}
            kwargs |= {
                "ProjectionExpression": ", ".join(aliases),
                "ExpressionAttributeNames": aliases,
            }
        items: list[Item] = []
        while limit is None or len(items) < limit:
            if limit is not None:
                kwargs["Limit"] = limit - len(items)
            page = self.tables[table].query(**kwargs)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items


def business_items(
    reader: LiveReader, keys: Sequence[Key], timezones: Mapping[str, str], names: Sequence[str] = ()
) -> dict[Key, Item]:
    """Metrics items of the business scope (``ALL`` keys) as the sums of its stores' items
    (stores by time zone: ``layout.store_keys``), in one read; a key none of them has is
    missing. Numbers add up; other attributes are the first store's."""
    parts = {key: store_keys(key, timezones) for key in keys}
    wanted = list(dict.fromkeys(k for found in parts.values() for k in found))
    found = reader.get_many(METRICS, wanted, names) if wanted else {}
    summed: dict[Key, Item] = {}
    for key, of_stores in parts.items():
        items = [found[k] for k in of_stores if k in found]
        if items:
            summed[key] = {**_add_up(items), **key.as_item()}
    return summed


def _add_up(items: Sequence[Item]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for item in items:
        for name, value in item.items():
            if name in total and isinstance(value, int | Decimal) and not isinstance(value, bool):
                total[name] = total[name] + value
            else:
                total.setdefault(name, value)
    return total
