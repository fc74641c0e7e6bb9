"""Turn a batch of validated events into per-key contributions, in memory.

Nothing here talks to AWS: the result says, for every DynamoDB item the batch touches, which
record (by shard position) adds what. The writer then makes one write per item and can drop the
contributions an earlier, interrupted attempt already applied.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from storepulse import events as ev
from storepulse.layout import (
    MAX_COUNTERS_PER_WRITE,
    MINUTE_TTL,
    SOCIAL_COUNTERS,
    Grain,
    Key,
    bucket_keys,
    expires_at,
    local_date,
    mix_attribute,
    mix_key,
    social_attribute,
)
from storepulse.settings import Catalog

Number = int | Decimal


@dataclass(frozen=True)
class Contribution:
    position: str  # the record's padded sequence number in its shard
    values: dict[str, Number]


@dataclass
class CounterWrite:
    """Counters to ADD to one item, with the record each part comes from."""

    key: Key
    shard_id: str
    contributions: list[Contribution] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)  # SET on write (labels, TTL)

    def total(self, after: str = "") -> dict[str, Number]:
        """Sum of the contributions of records positioned after ``after``."""
        summed: dict[str, Number] = defaultdict(int)
        for contribution in self.contributions:
            if contribution.position > after:
                for name, value in contribution.values.items():
                    summed[name] += value
        return dict(summed)


@dataclass(frozen=True)
class StockChange:
    """One record's effect on a stock level, at its event time."""

    position: str
    occurred_at: datetime
    set_to: int | None = None  # a stock take: the absolute count at occurred_at
    add: int = 0  # a sale, refund or adjustment: relative


@dataclass
class StockWrite:
    """One SKU's changes in one store (the writer groups them by level item)."""

    shard_id: str
    store_id: str
    sku: str
    changes: list[StockChange] = field(default_factory=list)


@dataclass
class BatchAggregate:
    counters: dict[Key, CounterWrite] = field(default_factory=dict)  # metrics table
    stock: dict[tuple[str, str], StockWrite] = field(default_factory=dict)  # (store, sku)
    profiles: dict[str, ev.CrmCustomerProfileV1] = field(default_factory=dict)
    # Newest event time per store, by what the alert rules watch (traffic, sales).
    latest_traffic: dict[str, datetime] = field(default_factory=dict)
    latest_sales: dict[str, datetime] = field(default_factory=dict)

    def add(
        self, key: Key, shard_id: str, position: str, values: dict[str, Number], **attributes: Any
    ) -> None:
        self._add(self.counters, key, shard_id, position, values, attributes)

    @staticmethod
    def _add(
        target: dict[Key, CounterWrite],
        key: Key,
        shard_id: str,
        position: str,
        values: dict[str, Number],
        attributes: dict[str, Any],
    ) -> None:
        write = target.setdefault(key, CounterWrite(key, shard_id))
        write.contributions.append(Contribution(position, values))
        write.attributes.update(attributes)

    def change_stock(self, store_id: str, sku: str, shard_id: str, change: StockChange) -> None:
        write = self.stock.setdefault((store_id, sku), StockWrite(shard_id, store_id, sku))
        write.changes.append(change)


@dataclass(frozen=True)
class Located:
    """A validated event and where it sits in the stream."""

    event: ev.Event
    shard_id: str
    position: str


def _add_to_buckets(
    agg: BatchAggregate, item: Located, catalog: Catalog, values: dict[str, Number]
) -> None:
    # The store's buckets only: the business's are the sum of its stores' on read
    # (``layout.store_keys``), which saves a third of the counter writes of every batch.
    store = item.event.store_id
    timezone = catalog.stores[store].timezone
    for grain, key in bucket_keys(store, item.event.occurred_at, timezone).items():
        ttl = (
            {"expires_at": expires_at(item.event.occurred_at, MINUTE_TTL)}
            if grain is Grain.MINUTE
            else {}
        )
        agg.add(key, item.shard_id, item.position, values, **ttl)


def _add_sale(agg: BatchAggregate, item: Located, sale: ev.PosSaleV1, catalog: Catalog) -> None:
    _add_to_buckets(agg, item, catalog, {"revenue": sale.total, "orders": 1, "units": sale.units})
    mix: dict[str, Number] = defaultdict(int)
    for line in sale.lines:
        for dimension, name in (("cat", line.category), ("sku", line.sku)):
            mix[mix_attribute(dimension, name, "revenue")] += line.amount
            mix[mix_attribute(dimension, name, "units")] += line.quantity
        agg.change_stock(
            sale.store_id,
            line.sku,
            item.shard_id,
            StockChange(item.position, sale.occurred_at, add=-line.quantity),
        )
    day = local_date(sale.occurred_at, catalog.stores[sale.store_id].timezone)
    agg.add(mix_key(sale.store_id, day), item.shard_id, item.position, dict(mix))


def split_wide_writes(agg: BatchAggregate, limit: int = MAX_COUNTERS_PER_WRITE) -> None:
    """Spread a mix write with more than ``limit`` counters over parts 2, 3, ... of its day.

    Each part is an item with its own watermark, so a crash between parts is as harmless as
    between any two items: every record's counters land exactly once in exactly one part."""
    for key, write in list(agg.counters.items()):
        names = sorted({name for c in write.contributions for name in c.values})
        if "#MIX#" not in key.pk or len(names) <= limit:
            continue
        del agg.counters[key]
        day = date.fromisoformat(key.sk)
        store_id = key.pk.split("#")[1]
        for part, start in enumerate(range(0, len(names), limit), start=1):
            chunk = set(names[start : start + limit])
            part_key = mix_key(store_id, day, part)
            target = agg.counters.setdefault(part_key, CounterWrite(part_key, write.shard_id))
            for contribution in write.contributions:
                values = {n: v for n, v in contribution.values.items() if n in chunk}
                if values:
                    target.contributions.append(Contribution(contribution.position, values))


_FUNNEL_COUNTER = {
    ev.WebPageViewV1: "page_views",
    ev.WebAddToCartV1: "add_to_carts",
    ev.WebCheckoutStartedV1: "checkouts",
    ev.WebPurchaseV1: "purchases",
}


def _note_latest(latest: dict[str, datetime], event: ev.Event) -> None:
    current = latest.get(event.store_id)
    if current is None or event.occurred_at > current:
        latest[event.store_id] = event.occurred_at


def aggregate(items: list[Located], catalog: Catalog, new_sessions: set[str]) -> BatchAggregate:
    """Contributions of ``items`` (already deduplicated); ``new_sessions`` holds the positions of
    the records that open a session never seen before."""
    agg = BatchAggregate()
    for item in items:
        event = item.event
        store = event.store_id
        match event:
            case ev.PosSaleV1():
                _add_sale(agg, item, event, catalog)
                _note_latest(agg.latest_sales, event)
            case ev.PosRefundV1():
                _add_to_buckets(agg, item, catalog, {"refund_amount": event.amount, "refunds": 1})
            case ev.WebEvent():
                values: dict[str, Number] = {_FUNNEL_COUNTER[type(event)]: 1}
                if item.position in new_sessions:
                    values["sessions"] = 1
                _add_to_buckets(agg, item, catalog, values)
                _note_latest(agg.latest_traffic, event)
            case ev.StoreFootTrafficV1():
                _add_to_buckets(agg, item, catalog, {"foot_traffic": event.entries})
                _note_latest(agg.latest_traffic, event)
            case ev.SocialMetricsV1():  # per channel, beside the store's counters
                counters = {
                    social_attribute(event.channel, c): getattr(event, c) for c in SOCIAL_COUNTERS
                }
                _add_to_buckets(agg, item, catalog, counters)
            case ev.InventoryStockLevelV1():
                agg.change_stock(
                    store,
                    event.sku,
                    item.shard_id,
                    StockChange(item.position, event.occurred_at, set_to=event.quantity_on_hand),
                )
            case ev.InventoryAdjustmentV1():
                agg.change_stock(
                    store,
                    event.sku,
                    item.shard_id,
                    StockChange(item.position, event.occurred_at, add=event.delta),
                )
            case ev.CrmCustomerProfileV1():
                current = agg.profiles.get(event.customer_id)
                if current is None or current.occurred_at <= event.occurred_at:
                    agg.profiles[event.customer_id] = event
    split_wide_writes(agg)
    return agg
