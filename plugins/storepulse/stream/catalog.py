"""What the stream processor needs from the settings table, cached for a short while.

Stores (time zone, currency), products (category, reorder point) and alert rules change rarely;
one Lambda container re-reads them at most every ``ttl`` seconds instead of on every batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Key as KeyCondition

from storepulse.layout import SettingsKind

DEFAULT_TIMEZONE = "UTC"


@dataclass(frozen=True)
class Store:
    store_id: str
    timezone: str
    currency: str
    name: str = ""


@dataclass(frozen=True)
class Product:
    sku: str
    category: str
    reorder_point: int


@dataclass(frozen=True)
class AlertRule:
    rule_id: str
    type: str  # low_stock | traffic_spike | sales_drop
    severity: str
    cooldown_seconds: int
    params: dict[str, Decimal]
    store_ids: frozenset[str] = frozenset()  # empty: every store
    enabled: bool = True

    def applies_to(self, store_id: str) -> bool:
        return self.enabled and (not self.store_ids or store_id in self.store_ids)


@dataclass(frozen=True)
class Catalog:
    business_timezone: str = DEFAULT_TIMEZONE
    stores: dict[str, Store] = field(default_factory=dict)
    products: dict[str, Product] = field(default_factory=dict)
    rules: tuple[AlertRule, ...] = ()


def _query_kind(table: Any, kind: SettingsKind) -> list[dict[str, Any]]:
    items, kwargs = [], {"KeyConditionExpression": KeyCondition("pk").eq(kind.value)}
    while True:
        page = table.query(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def load_catalog(table: Any) -> Catalog:
    """Read the settings table (a boto3 ``Table``)."""
    business = table.get_item(Key={"pk": SettingsKind.BUSINESS.value, "sk": "profile"}).get("Item")
    stores = {
        i["sk"]: Store(i["sk"], i["timezone"], i["currency"], i.get("name", ""))
        for i in _query_kind(table, SettingsKind.STORE)
    }
    products = {
        i["sk"]: Product(i["sk"], i["category"], int(i.get("reorder_point", 0)))
        for i in _query_kind(table, SettingsKind.PRODUCT)
    }
    rules = tuple(
        AlertRule(
            rule_id=i["sk"],
            type=i["type"],
            severity=i.get("severity", "warning"),
            cooldown_seconds=int(i.get("cooldown_seconds", 3600)),
            params=dict(i.get("params", {})),
            store_ids=frozenset(i.get("store_ids", [])),
            enabled=bool(i.get("enabled", True)),
        )
        for i in _query_kind(table, SettingsKind.ALERT_RULE)
    )
    return Catalog((business or {}).get("timezone", DEFAULT_TIMEZONE), stores, products, rules)


class CachedCatalog:
    """``load()`` re-reads the table when the cached copy is older than ``ttl`` seconds."""

    def __init__(
        self,
        loader: Callable[[], Catalog],
        ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loader, self._ttl, self._clock = loader, ttl, clock
        self._cached: Catalog | None = None
        self._loaded_at = 0.0
        self._reloaded_at: float | None = None

    def load(self) -> Catalog:
        if self._cached is None or self._clock() - self._loaded_at > self._ttl:
            self._cached, self._loaded_at = self._loader(), self._clock()
        return self._cached

    def reload(self, min_interval: float = 5.0) -> bool:
        """Re-read now (a record names a store the copy lacks), unless a re-read was forced
        less than ``min_interval`` seconds ago: a stream of unknown stores cannot turn every
        batch into a table read. Throttled on forced re-reads, not on the copy's age, so a store
        added just after a load is found by its first events. True if it re-read."""
        now = self._clock()
        if self._reloaded_at is not None and now - self._reloaded_at < min_interval:
            return False
        self._cached, self._loaded_at = self._loader(), now
        self._reloaded_at = now
        return True
