"""The baseline the stream processor is measured against: the handler many teams write first.

One ``UpdateItem`` per record, per metric, per bucket key; one ``PutItem`` per order. It computes
the same buckets (it reuses the key layout), so only the write strategy differs. Not for
production: it double-counts on every retry, which is the other reason the real one exists.
"""

from __future__ import annotations

from typing import Any

from storepulse import events as ev
from storepulse.layout import (
    Grain,
    bucket_keys,
    inventory_key,
    local_date,
    mix_attribute,
    mix_key,
    order_key,
)
from storepulse.settings import Catalog
from storepulse.stream.records import records_from_event

FUNNEL = {
    ev.WebPageViewV1: "page_views",
    ev.WebAddToCartV1: "add_to_carts",
    ev.WebCheckoutStartedV1: "checkouts",
    ev.WebPurchaseV1: "purchases",
}


class NaiveHandler:
    def __init__(self, metrics: Any, inventory: Any, facts: Any, catalog: Catalog) -> None:
        self.metrics, self.inventory, self.facts, self.catalog = metrics, inventory, facts, catalog

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        for record in records_from_event(event):
            try:
                parsed = ev.parse_event(record.data)
            except ev.InvalidEvent:
                continue
            if parsed.store_id in self.catalog.stores:
                self._handle(parsed)
        return {"batchItemFailures": []}

    def _add(self, table: Any, key: Any, metric: str, value: Any) -> None:
        table.update_item(
            Key=key.as_item(),
            UpdateExpression="ADD #m :v",
            ExpressionAttributeNames={"#m": metric},
            ExpressionAttributeValues={":v": value},
        )

    def _buckets(self, event: ev.Event, values: dict[str, Any]) -> None:
        timezone = self.catalog.stores[event.store_id].timezone
        for store in (event.store_id, None):
            tz = timezone if store else self.catalog.business_timezone
            for grain in Grain:
                key = bucket_keys(store, event.occurred_at, tz)[grain]
                for metric, value in values.items():
                    self._add(self.metrics, key, metric, value)

    def _mix(self, sale: ev.PosSaleV1) -> None:
        timezone = self.catalog.stores[sale.store_id].timezone
        for store, tz in ((sale.store_id, timezone), (None, self.catalog.business_timezone)):
            key = mix_key(store, local_date(sale.occurred_at, tz))
            for line in sale.lines:
                for dimension, name in (("cat", line.category), ("sku", line.sku)):
                    self._add(
                        self.metrics, key, mix_attribute(dimension, name, "revenue"), line.amount
                    )
                    self._add(
                        self.metrics, key, mix_attribute(dimension, name, "units"), line.quantity
                    )
        for line in sale.lines:
            self._add(
                self.inventory, inventory_key(sale.store_id, line.sku), "on_hand", -line.quantity
            )

    def _handle(self, event: ev.Event) -> None:
        match event:
            case ev.PosSaleV1():
                self.facts.put_item(
                    Item={**order_key(event.order_id).as_item(), "total": event.total}
                )
                self._buckets(event, {"revenue": event.total, "orders": 1, "units": event.units})
                self._mix(event)
            case ev.PosRefundV1():
                self._buckets(event, {"refund_amount": event.amount, "refunds": 1})
            case ev.WebEvent():
                self._buckets(event, {FUNNEL[type(event)]: 1})
            case ev.StoreFootTrafficV1():
                self._buckets(event, {"foot_traffic": event.entries})
            case ev.InventoryAdjustmentV1():
                self._add(
                    self.inventory, inventory_key(event.store_id, event.sku), "on_hand", event.delta
                )
