"""The baseline the stream processor is measured against: the per-record handler many teams
write first, doing the same work.

Each record alone: archived to the lake (``LakeArchive``, one object), deduplicated (a
conditional ``PutItem`` claiming its ``event_id``; web events also claim their session, which
counts a new one), then one ``UpdateItem`` per bucket it adds to (all its counters at once), one
per sales-mix item and per stock level (an item each, as releases before 2026-12 kept them), the
order or refund fact, the customer profile. It
computes the same buckets and facts (it reuses the key layout and the fact builders), so only the
write strategy differs. Not for production: a crash between its claim and its counters loses
the event, which the real one's per-item watermarks prevent.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from botocore.exceptions import ClientError

from storepulse import events as ev
from storepulse.layout import (
    bucket_keys,
    event_key,
    local_date,
    mix_attribute,
    mix_key,
    order_key,
    refund_key,
    session_key,
)
from storepulse.settings import Catalog
from storepulse.stock_levels import legacy_key
from storepulse.stream.aggregate import Number
from storepulse.stream.archive import LakeArchive
from storepulse.stream.facts import order_fact, refund_fact, write_profiles
from storepulse.stream.records import StreamRecord, records_from_event

FUNNEL = {
    ev.WebPageViewV1: "page_views",
    ev.WebAddToCartV1: "add_to_carts",
    ev.WebCheckoutStartedV1: "checkouts",
    ev.WebPurchaseV1: "purchases",
}


class NaiveHandler:
    def __init__(self, tables: dict[str, Any], archive: LakeArchive, catalog: Catalog) -> None:
        self.metrics, self.inventory = tables["metrics"], tables["inventory"]
        self.facts, self.archive, self.catalog = tables["facts"], archive, catalog

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        for record in records_from_event(event):
            self._record(record)
        return {"batchItemFailures": []}

    def _record(self, record: StreamRecord) -> None:
        try:
            parsed = ev.parse_event(record.data)
        except ev.InvalidEvent:
            return
        if parsed.store_id not in self.catalog.stores:
            return
        self.archive.archive_valid([record])
        if self._claim(event_key(parsed.event_id).as_item()):
            self._handle(parsed)

    def _claim(self, key: dict[str, str]) -> bool:
        try:
            self.facts.put_item(Item=key, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def _add(self, table: Any, key: Any, values: dict[str, Number]) -> None:
        names = {f"#m{i}": name for i, name in enumerate(values)}
        table.update_item(
            Key=key.as_item(),
            UpdateExpression="ADD " + ", ".join(f"#m{i} :v{i}" for i in range(len(values))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={f":v{i}": v for i, v in enumerate(values.values())},
        )

    def _scopes(self, event: ev.Event) -> list[tuple[str | None, str]]:
        timezone = self.catalog.stores[event.store_id].timezone
        return [(event.store_id, timezone), (None, self.catalog.business_timezone)]

    def _buckets(self, event: ev.Event, values: dict[str, Number]) -> None:
        for store, tz in self._scopes(event):
            for key in bucket_keys(store, event.occurred_at, tz).values():
                self._add(self.metrics, key, values)

    def _sale(self, sale: ev.PosSaleV1) -> None:
        self.facts.put_item(
            Item={**order_key(sale.order_id).as_item(), **order_fact(sale, self.catalog)}
        )
        self._buckets(sale, {"revenue": sale.total, "orders": 1, "units": sale.units})
        mix: dict[str, Number] = defaultdict(int)
        for line in sale.lines:
            for dimension, name in (("cat", line.category), ("sku", line.sku)):
                mix[mix_attribute(dimension, name, "revenue")] += line.amount
                mix[mix_attribute(dimension, name, "units")] += line.quantity
            key = legacy_key(sale.store_id, line.sku)
            self._add(self.inventory, key, {"on_hand": -line.quantity})
        for store, tz in self._scopes(sale):
            self._add(self.metrics, mix_key(store, local_date(sale.occurred_at, tz)), mix)

    def _handle(self, event: ev.Event) -> None:
        match event:
            case ev.PosSaleV1():
                self._sale(event)
            case ev.PosRefundV1():
                key = refund_key(event.refund_id).as_item()
                self.facts.put_item(Item={**key, **refund_fact(event, self.catalog)})
                self._buckets(event, {"refund_amount": event.amount, "refunds": 1})
            case ev.WebEvent():
                values: dict[str, Number] = {FUNNEL[type(event)]: 1}
                if self._claim(session_key(event.session_id).as_item()):
                    values["sessions"] = 1
                self._buckets(event, values)
            case ev.StoreFootTrafficV1():
                self._buckets(event, {"foot_traffic": event.entries})
            case ev.InventoryStockLevelV1():
                self.inventory.put_item(
                    Item={
                        **legacy_key(event.store_id, event.sku).as_item(),
                        "on_hand": event.quantity_on_hand,
                    }
                )
            case ev.InventoryAdjustmentV1():
                key = legacy_key(event.store_id, event.sku)
                self._add(self.inventory, key, {"on_hand": event.delta})
            case ev.CrmCustomerProfileV1():
                write_profiles(self.facts, [event])
