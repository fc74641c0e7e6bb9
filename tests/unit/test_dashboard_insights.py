"""The dashboard's insights computed from simulated days and checked against the simulator's
ground truth: the business model (who each customer is) and the events it handed out."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from storepulse.dashboard import customers
from storepulse.dashboard.history import Slice, Window
from storepulse.events import CrmCustomerProfileV1, Event, PosSaleV1
from storepulse.simulator import BusinessModel, Simulator
from storepulse.simulator.engine import GroundTruth

MONDAY = datetime(2026, 3, 2, tzinfo=UTC)
MODEL = BusinessModel.generate(7)


@pytest.fixture(scope="module")
def two_days() -> list[Event]:
    """Monday and Tuesday (and the first hours of Wednesday in stores east of UTC)."""
    sim = Simulator(MODEL, 7, MONDAY, rate=0.2)
    return list(sim.events_between(MONDAY, MONDAY + timedelta(days=2)))


def _order_rows(events: list[Event]) -> list[dict[str, Any]]:
    """The ``orders`` data set's columns that the insights read, from the sales handed out."""
    truth = GroundTruth.for_model(MODEL)
    return [
        {
            "order_id": e.order_id,
            "store_id": e.store_id,
            "business_date": truth.local_day(e.store_id, e.occurred_at),
            "customer_id": e.customer_id,
            "total": e.total,
        }
        for e in events
        if isinstance(e, PosSaleV1)
    ]


def _profile_rows(events: list[Event], snapshot: date) -> list[dict[str, Any]]:
    return [
        {
            "customer_id": e.customer_id,
            "age_band": e.age_band,
            "region": e.region,
            "segment": e.segment,
            "snapshot_date": snapshot,
        }
        for e in events
        if isinstance(e, CrmCustomerProfileV1)
    ]


class FakeLake:
    uri = "s3://lake/curated"

    def __init__(self, datasets: dict[str, list[dict[str, Any]]]) -> None:
        self.datasets = datasets

    def rows(self, dataset: str, first: date, last: date) -> list[dict[str, Any]]:
        day = "snapshot_date" if dataset == customers.CUSTOMERS else "business_date"
        return [r for r in self.datasets.get(dataset, []) if first <= r[day] <= last]

    def latest(self, dataset: str, first: date, last: date) -> Slice:
        rows = self.rows(dataset, first, last)
        newest = max((r["snapshot_date"] for r in rows), default=None)
        rows = [r for r in rows if r["snapshot_date"] == newest]
        return Slice(rows, frozenset({newest} if newest else ()))


def test_customer_behaviour_equals_the_simulated_customers(two_days: list[Event]) -> None:
    monday, tuesday = date(2026, 3, 2), date(2026, 3, 3)
    orders = _order_rows(two_days)
    lake = FakeLake({"orders": orders, "customers": _profile_rows(two_days, tuesday)})

    report = customers.report(lake, Window(1, tuesday), frozenset({"s-001"}), "s-001")  # type: ignore[arg-type]

    # the ground truth: the sales of s-001 on Tuesday, counted per customer
    sales = [o for o in orders if o["store_id"] == "s-001"]
    today = [o for o in sales if o["business_date"] == tuesday]
    per_customer = Counter(o["customer_id"] for o in today if o["customer_id"])
    monday_buyers = {o["customer_id"] for o in sales if o["business_date"] == monday}
    now = report.current
    assert now.orders == len(today) and now.customers == len(per_customer) > 5
    assert now.known_orders == sum(per_customer.values())
    assert now.repeat_customers == sum(1 for n in per_customer.values() if n >= 2)
    assert now.returning_customers == len(set(per_customer) & monday_buyers)
    assert now.new_customers + now.returning_customers == now.customers
    assert now.purchase_frequency == (Decimal(now.known_orders) / now.customers).quantize(
        Decimal("0.000001")
    )

    # demographics: the model's own customers, not the CRM events the report read
    who = {c.customer_id: c for c in MODEL.customers}
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    for o in today:
        if o["customer_id"]:
            revenue[who[o["customer_id"]].segment] += o["total"]
    assert {g.key: g.revenue for g in now.demographics["segment"]} == revenue
    bands = Counter(who[c].age_band for c in per_customer)
    assert {g.key: g.customers for g in now.demographics["age_band"]} == bands
    assert report.profiles_as_of == tuesday


def test_customers_without_a_profile_are_unknown_and_ratios_without_customers_null() -> None:
    day = date(2026, 3, 3)
    rows = [
        {"customer_id": "c-1", "total": Decimal("2.50"), "business_date": day},
        {"customer_id": "c-1", "total": Decimal("1.25"), "business_date": day},
        {"customer_id": None, "total": Decimal("9.00"), "business_date": day},
    ]

    seen = customers.behaviour(rows, [], {})
    nobody = customers.behaviour([rows[2]], [], {})

    assert (seen.orders, seen.known_orders, seen.customers, seen.repeat_customers) == (3, 2, 1, 1)
    assert seen.known_revenue == Decimal("3.75") and seen.purchase_frequency == Decimal(2)
    assert [(g.key, g.orders) for g in seen.demographics["region"]] == [("unknown", 2)]
    assert nobody.purchase_frequency is None and nobody.repeat_customer_rate is None
