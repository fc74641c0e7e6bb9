"""A simulated day of a two-store business through the handler: every total in DynamoDB equals
the simulator's ground truth, with late POS syncs, malformed records and replayed batches."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from storepulse.layout import MONEY_COUNTERS, Grain, Table, bucket_keys
from storepulse.settings import SettingsStore
from storepulse.simulator.engine import Simulator
from storepulse.simulator.model import BusinessModel
from storepulse.simulator.seed import seed_settings
from storepulse.stock_levels import read_store_levels
from storepulse.stream.records import StreamRecord
from tests.integration.conftest import SHARD, business_day_total, invoke

START = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)  # a Friday
BATCH = 100
# ground-truth field -> DynamoDB counter
COUNTERS = {
    "revenue": "revenue",
    "refunds_amount": "refund_amount",
    "refunds": "refunds",
    "orders": "orders",
    "units": "units",
    "page_views": "page_views",
    "sessions": "sessions",
    "add_to_carts": "add_to_carts",
    "checkouts": "checkouts",
    "purchases": "purchases",
    "foot_traffic_entries": "foot_traffic",
}


def _exact(counter: str, value: Any) -> Decimal | int:
    return Decimal(value).quantize(Decimal("0.01")) if counter in MONEY_COUNTERS else int(value)


def _day_item(metrics: Any, store_id: str, day: date, timezone: str) -> dict[str, Any]:
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo(timezone))
    key = bucket_keys(store_id, noon, timezone)[Grain.DAY]
    return metrics.get_item(Key=key.as_item()).get("Item", {})


def test_a_simulated_day_matches_the_ground_truth(handler, realtime_stack) -> None:
    # GIVEN a seeded two-store business in two time zones and a day of its traffic
    model = BusinessModel.generate(
        seed=13, stores=2, timezones=("Europe/Paris", "America/New_York")
    )
    seed_settings(SettingsStore(realtime_stack.table(Table.SETTINGS)), model)
    simulator = Simulator(
        model, seed=13, start=START, rate=0.1, late_fraction=0.05, malformed_fraction=0.01
    )
    raw = list(simulator.raw_records_between(START, START + timedelta(days=1)))
    arrived = START + timedelta(days=1)  # the day's events (late syncs too) are all in the past
    records = [
        StreamRecord(SHARD, str(10**20 + i), key, data, arrived)
        for i, (data, key) in enumerate(raw)
    ]

    # WHEN it goes through the handler in batches, some retried whole and some bisected
    for start in range(0, len(records), BATCH):
        batch = records[start : start + BATCH]
        assert invoke(handler, batch) == {"batchItemFailures": []}
        if start % (10 * BATCH) == 0:
            invoke(handler, batch)
            invoke(handler, batch[BATCH // 2 :])

    # THEN every store-day total equals the ground truth, refunds included
    truth = simulator.ground_truth
    metrics = realtime_stack.table(Table.METRICS)
    business_revenue, store_revenue = Decimal(0), Decimal(0)
    for store in model.stores:
        for day, totals in truth.days[store.store_id].items():
            item = _day_item(metrics, store.store_id, day, store.timezone)
            expected = {
                COUNTERS[k]: _exact(COUNTERS[k], v)
                for k, v in totals.to_dict().items()
                if k in COUNTERS
            }
            actual = {name: _exact(name, item.get(name, 0)) for name in expected}
            assert actual == expected, (store.store_id, day)
            store_revenue += actual["revenue"]
    assert sum(t.refunds for days in truth.days.values() for t in days.values()) > 0

    # AND the business-wide days add up to the stores' (each in its own time zone)
    timezones = {store.store_id: store.timezone for store in model.stores}
    for day in {START.date() + timedelta(days=d) for d in range(-1, 3)}:
        business = business_day_total(realtime_stack, day, timezones)
        business_revenue += Decimal(business.get("revenue", 0))
    assert business_revenue == store_revenue

    # AND every stock level equals the ground truth
    inventory = realtime_stack.table(Table.INVENTORY)
    levels = {store_id: read_store_levels(inventory, store_id) for store_id, _ in truth.stock}
    actual_stock = {(store_id, sku): levels[store_id][sku].on_hand for store_id, sku in truth.stock}
    assert actual_stock == truth.stock
