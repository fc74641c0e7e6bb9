"""Trend and unknown-SKU alerts through the Lambda handler, on the embedded AWS: what the owner
sees in the SQS inbox subscribed to the alert topic."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from storepulse.layout import Grain, Table, bucket_keys
from storepulse.settings import AlertRuleSettings, SettingsStore
from storepulse.stock_levels import read_store_levels
from tests.integration.conftest import invoke
from tests.integration.test_stream_processor import Stream, page_view, sale, stock_take

HOUR = datetime(2026, 11, 26, 10, tzinfo=UTC)  # 11:00-12:00 in Paris, a Thursday
JUDGED = HOUR + timedelta(minutes=76)  # the hour is over and settled (15 minutes)


def _history(stack: Any, revenue: str, orders: int) -> None:
    """The hour and day items the stream wrote 1 and 2 weeks ago (older than the stream's
    plausibility window, so written as the stream writes them), and the next days' (the data
    of those weeks goes on after the hour: they count as baselines)."""
    table = stack.table(Table.METRICS)
    for weeks in (1, 2):
        keys = bucket_keys("s-001", HOUR - timedelta(weeks=weeks), "Europe/Paris")
        for grain in (Grain.HOUR, Grain.DAY):
            counters = {"revenue": Decimal(revenue), "orders": Decimal(orders)}
            table.put_item(Item={**keys[grain].as_item(), **counters})
        next_day = HOUR - timedelta(weeks=weeks) + timedelta(days=1)
        day_after = bucket_keys("s-001", next_day, "Europe/Paris")[Grain.DAY]
        table.put_item(Item={**day_after.as_item(), "orders": Decimal(orders)})


def _rule(stack: Any, **params: Any) -> None:
    SettingsStore(stack.table(Table.SETTINGS)).upsert(
        AlertRuleSettings(
            rule_id="sales-trend",
            type="trend",
            cooldown_seconds=3600,
            params={"metric": "revenue", "weeks": 2, "min_volume": 100, **params},
        )
    )


def _inbox(stack: Any) -> list[tuple[dict[str, str], dict[str, Any]]]:
    notes = stack.alerts(wait_seconds=1)
    return [
        ({k: v["Value"] for k, v in n["MessageAttributes"].items()}, json.loads(n["Message"]))
        for n in notes
    ]


def test_a_sales_drop_against_the_usual_hour_reaches_the_inbox_once(
    handler, realtime_stack, clock
) -> None:
    _rule(realtime_stack)
    _history(realtime_stack, "500.00", 50)
    stream = Stream()
    quiet_hour = [
        sale("s-001", f"o-{i}", HOUR + timedelta(minutes=10 * i), ("tea-100g", 1, "12.10"))
        for i in range(2)
    ]
    shelf = stock_take("s-001", "tea-100g", 50, HOUR)
    invoke(handler, stream.records(shelf, *quiet_hour, arrived_at=HOUR + timedelta(minutes=30)))
    assert realtime_stack.alerts() == []  # the hour is not over: no drop yet

    later = stream.records(page_view("s-001", "w-1", JUDGED), arrived_at=JUDGED)
    invoke(handler, later)
    ((attributes, body),) = _inbox(realtime_stack)
    assert attributes == {"type": "trend", "severity": "warning", "store_id": "s-001"}
    assert body["details"] | {"local_start": None} == {
        "metric": "revenue",
        "direction": "drop",
        "hour": "2026-11-26T10Z",
        "hours": 1,
        "local_start": None,
        "complete": True,
        "value": "24.20",
        "baseline": "500.00",
        "weeks": 2,
    }
    assert body["title"] == "Revenue drop at s-001 Thu 11:00-12:00: 24.20 vs usual 500.00"

    invoke(handler, later)  # delivered again
    clock.advance(hours=2)  # past the cooldown, in a new container that judges the hour again
    handler.processor.cache_clear()
    invoke(handler, stream.records(page_view("s-001", "w-2", JUDGED), arrived_at=JUDGED))
    assert realtime_stack.alerts(wait_seconds=1) == []


def test_an_unknown_sku_is_reported_once_and_never_as_low_stock(handler, realtime_stack) -> None:
    stream = Stream()
    for i, store in enumerate(("s-001", "s-001", "s-002")):
        at = HOUR + timedelta(minutes=i)
        invoke(
            handler,
            stream.records(sale(store, f"o-{i}", at, ("ghost-sku", 2, "3.00"))),
        )
    inbox = _inbox(realtime_stack)
    assert [(a["type"], a["store_id"]) for a, _ in inbox] == [("unknown_sku", "s-001")]
    assert inbox[0][1]["details"] == {"sku": "ghost-sku", "first_seen_store_id": "s-001"}
    # the sale still counts (its revenue is real); its stock is there, but alerts nobody
    inventory = realtime_stack.table(Table.INVENTORY)
    assert read_store_levels(inventory, "s-001")["ghost-sku"].on_hand == -4
