"""The reconciliation of a day that changed while it was exported.

The audit reconciles, per store, the staged orders' revenue with the staged revenue metric. Both
come from snapshots taken moments apart (two tables, two tasks): when events for the day arrive
in between (a POS syncing after being offline; the demo's yesterday, which runs on live), the
snapshots disagree although the pipeline is right. That is not a data-quality failure, but it
must not hide one either. So a store whose staged numbers disagree is read again from the
tables: if they still hold the staged numbers, the mismatch is real and the audit fails; if the
day moved, the store is reconciled on the tables themselves, re-read until orders and metric
agree at one moment (a batch may be between its facts and its counters), and the result says
so; tables that hold still on a mismatch fail it. The published snapshot then misses only
what arrived during the export, which the day's rerun picks up."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import pyarrow as pa
from boto3.dynamodb.conditions import Key as KeyCondition

from storepulse.aws import query_items
from storepulse.layout import day_bucket_key, orders_of_day

log = logging.getLogger(__name__)

CENT = Decimal("0.01")
SNAPSHOT, TABLES = "snapshot", "tables"  # what a store's reconciliation compared


@dataclass(frozen=True)
class Revenue:
    """One store's day: the sum of its orders' totals and its revenue metric."""

    orders: Decimal
    metric: Decimal

    @property
    def agrees(self) -> bool:
        return self.orders == self.metric


LiveRevenue = Callable[[Iterable[str]], Mapping[str, Revenue]]


def table_revenue(facts: Any, metrics: Any, day: date) -> LiveRevenue:
    """Reads the stores' day from the facts table (the day's orders, index ``gsi1``) and the
    metrics table (the store's day bucket), as boto3 ``Table`` resources."""

    def read(stores: Iterable[str]) -> dict[str, Revenue]:
        wanted = set(stores)
        orders = {store: Decimal(0) for store in wanted}
        for item in day_orders(facts, day):
            if item.get("store_id") in wanted and str(item["pk"]).startswith("ORDER#"):
                orders[item["store_id"]] += Decimal(item["total"])
        return {
            store: Revenue(orders[store].quantize(CENT), _metric(metrics, store, day))
            for store in wanted
        }

    return read


def day_orders(facts: Any, day: date) -> Iterable[dict[str, Any]]:
    """The order and refund facts of a business day as the table holds them (index ``gsi1``)."""
    return query_items(
        facts,
        IndexName="gsi1",
        KeyConditionExpression=KeyCondition("gsi1pk").eq(orders_of_day(day)),
    )


def _metric(metrics: Any, store: str, day: date) -> Decimal:
    item = metrics.get_item(Key=day_bucket_key(store, day).as_item(), ConsistentRead=True)
    return Decimal(item.get("Item", {}).get("revenue", 0)).quantize(CENT)


def settle(
    frame: pa.Table,
    live: LiveRevenue,
    *,
    attempts: int = 6,
    pause: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> pa.Table:
    """``frame`` (``reconciliation_frame``) with a ``compared`` column: ``snapshot`` where the
    staged numbers stand, ``tables`` where the day moved during the export and the store's
    numbers were reconciled on the tables instead (their values replace the staged ones)."""
    rows = frame.to_pylist()
    staged = {r["store_id"]: Revenue(r["order_revenue"], r["metric_revenue"]) for r in rows}
    moving = [s for s, revenue in staged.items() if s is not None and not revenue.agrees]
    settled: dict[str, Revenue] = {}
    last: Mapping[str, Revenue] = staged
    for attempt in range(attempts):
        if not moving:
            break
        if attempt:
            sleep(pause)
        now = live(moving)
        for store in list(moving):
            if now[store].agrees:
                settled[store] = now[store]
                moving.remove(store)
            elif now[store] == last[store]:
                moving.remove(store)  # the tables hold still on a mismatch: a real one
        last = {**last, **now}
    for store, revenue in settled.items():
        log.warning(
            "%s: the day changed during the export (orders %s -> %s, metric %s -> %s); "
            "reconciled on the tables; its rerun publishes what arrived",
            store,
            staged[store].orders,
            revenue.orders,
            staged[store].metric,
            revenue.metric,
        )
    money = frame.schema.field("order_revenue").type
    final = {s: settled.get(s, r) for s, r in staged.items()}
    return pa.table(
        {
            "store_id": frame["store_id"],
            "order_revenue": pa.array([final[s].orders for s in staged], money),
            "metric_revenue": pa.array([final[s].metric for s in staged], money),
            "compared": pa.array([TABLES if s in settled else SNAPSHOT for s in staged]),
        }
    )
