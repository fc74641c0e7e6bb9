"""The dashboard's insights computed from simulated days and checked against the simulator's
ground truth: the business model (who each customer is) and the events it handed out."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from storepulse.dashboard import customers, inventory, social, staffing
from storepulse.dashboard.history import Slice, Window
from storepulse.dashboard.live import LiveDashboard
from storepulse.dashboard.today import Scope
from storepulse.events import (
    CrmCustomerProfileV1,
    Event,
    PosSaleV1,
    SocialMetricsV1,
    StoreFootTrafficV1,
)
from storepulse.layout import Table, orders_of_day
from storepulse.settings import EmployeeSettings
from storepulse.simulator import BusinessModel, Simulator
from storepulse.simulator.engine import SOCIAL_CHANNELS, GroundTruth
from storepulse.simulator.seed import roster
from tests.unit.test_dashboard_live import PARIS, FakeReader, _catalogue

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
    regions = Counter(who[o["customer_id"]].region for o in today if o["customer_id"])
    assert {g.key: g.orders for g in now.demographics["region"]} == regions
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


def test_live_customers_share_the_historys_computation(two_days: list[Event]) -> None:
    """Today live from the order facts (gsi1) and profiles equals the lake's report of the same
    day: Monday, the only earlier day, is in both the live lookback and the previous period."""
    tuesday = date(2026, 3, 3)
    orders = [o for o in _order_rows(two_days) if o["store_id"] == "s-001"]
    profiles = _profile_rows(two_days, tuesday)
    reader, gsi1 = FakeReader(), (Table.FACTS, "gsi1")  # the index, kept beside the table
    for o in orders:
        day, sk = orders_of_day(o["business_date"]), f"s-001#ORDER#{o['order_id']}"
        fact = o | {"gsi1pk": day, "gsi1sk": sk}
        reader.tables[gsi1][day][sk] = {k: v for k, v in fact.items() if v is not None}  # type: ignore[index]
    for p in profiles:
        reader.put(Table.FACTS, f"CUSTOMER#{p['customer_id']}", "PROFILE", **p)
    timezone = next(s.timezone for s in MODEL.stores if s.store_id == "s-001")
    now = datetime.combine(tuesday, time(23, 0), ZoneInfo(timezone)).astimezone(UTC)
    catalogue = _catalogue(**{"s-001": timezone})
    live = LiveDashboard(reader, clock=lambda: now, parallel=False)

    report = live.customers(catalogue, Scope.of(catalogue, "s-001"))

    lake = FakeLake({"orders": orders, "customers": profiles})
    history = customers.report(lake, Window(1, tuesday), frozenset({"s-001"}), "s-001")  # type: ignore[arg-type]
    assert report.day == tuesday and report.today == history.current
    assert report.today.returning_customers > 0 and report.today.new_customers > 0


# --- staffing ------------------------------------------------------------------------------------


def _foot_traffic(day: datetime, seed: int) -> list[StoreFootTrafficV1]:
    """One simulated day's door counts of s-001 (a simulator of its own per day: cheaper than
    simulating the weeks between)."""
    events = Simulator(MODEL, seed, day, rate=0.1).events_between(day, day + timedelta(days=1))
    return [e for e in events if isinstance(e, StoreFootTrafficV1) and e.store_id == "s-001"]


def _per_local_hour(events: list[StoreFootTrafficV1]) -> Counter[int]:
    hours: Counter[int] = Counter()
    for e in events:
        hours[e.occurred_at.astimezone(ZoneInfo(PARIS)).hour] += e.entries
    return hours


def test_staffing_equals_the_simulated_foot_traffic_and_roster() -> None:
    today, weeks = MONDAY + timedelta(weeks=3), [MONDAY + timedelta(weeks=n) for n in (1, 2)]
    reader = FakeReader()
    sent = {d: _foot_traffic(d, seed) for seed, d in enumerate([today, *weeks])}
    for events in sent.values():
        for e in events:
            reader.record("s-001", e.occurred_at, foot_traffic=e.entries)
    store = MODEL.store("s-001")
    employees = [
        EmployeeSettings(
            employee_id=e.employee_id,
            name=e.name,
            store_id=e.store_id,
            role=e.role,
            shifts=roster(store, i),
        )
        for i, e in enumerate(MODEL.employees_of("s-001"))
    ]
    catalogue = _catalogue()
    target = Decimal(4)
    stores = {"s-001": catalogue.stores["s-001"].model_copy(update={"visitors_per_staff": target})}
    catalogue = replace(catalogue, stores=stores)
    end_of_day = today + timedelta(hours=20)  # 21:00 in Paris, after closing

    report = LiveDashboard(reader, clock=lambda: end_of_day, parallel=False).staffing(
        catalogue, "s-001", employees
    )

    truth = _per_local_hour(sent[today])
    typical = [_per_local_hour(sent[d]) for d in weeks]
    rows = {r.hour: r for r in report.hours}
    assert {h: r.visitors for h, r in rows.items() if r.visitors} == {
        h: n for h, n in truth.items() if n
    }
    ground = GroundTruth.for_model(MODEL)
    for e in sent[today]:
        ground.record(e)
    assert sum(truth.values()) == ground.day("s-001", today.date()).foot_traffic_entries
    assert report.weeks == 2  # the other two weeks have no data: not averaged as zeros
    for hour, row in rows.items():
        mean = (Decimal(typical[0][hour]) + typical[1][hour]) / 2
        assert row.typical_visitors == mean.quantize(Decimal("0.01"))
        opens, closes = store.hours[0].opens.hour, store.hours[0].closes.hour
        assert (row.staff > 0) == (opens <= hour < closes)  # the roster covers opening hours
        if row.staff:
            assert row.ratio == (Decimal(row.visitors) / row.staff).quantize(Decimal("0.01"))
    under = [h for h, r in rows.items() if r.typical_status == "under"]
    assert report.understaffed_hours == under and under  # a busy Monday hour, 4 per person
    assert all(Decimal(rows[h].typical_visitors or 0) > 5 * rows[h].staff for h in under)


def test_staffing_status_against_the_target() -> None:
    target = Decimal(10)
    assert staffing.judge(13, 1, target) == "under"  # above 12.5
    assert staffing.judge(12, 1, target) == "ok"
    assert staffing.judge(7, 1, target) == "over"  # below 7.5
    assert staffing.judge(3, 0, target) == "under"  # visitors, nobody on duty
    assert staffing.judge(0, 0, target) is None and staffing.judge(5, 1, None) is None


def test_staffing_settings_fail_closed_with_a_message() -> None:
    from pydantic import ValidationError

    from storepulse.settings import Shift, StoreSettings, describe_errors

    store = {"store_id": "s-1", "name": "A", "timezone": PARIS, "currency": "EUR"}
    problems = []
    for model, data in (
        (StoreSettings, store | {"visitors_per_staff": 0}),
        (StoreSettings, store | {"visitors_per_staff": 2.5}),  # a float: not exact
        (Shift, {"start": 14, "end": 9}),
        (Shift, {"start": 9, "end": 14, "weekdays": [7]}),
    ):
        with pytest.raises(ValidationError) as refused:
            model.model_validate(data)
        problems += describe_errors(refused.value, model.__name__)
    assert problems == [
        "StoreSettings.visitors_per_staff: must be > 0",
        'StoreSettings.visitors_per_staff: must be an integer or a decimal string such as "0.5", '
        "not a float",
        "Shift: Value error, a shift must start before it ends (14 >= 9)",
        "Shift.weekdays[0]: must be <= 6",
    ]
    assert StoreSettings.model_validate(store | {"visitors_per_staff": "12.5"}).to_item()[
        "visitors_per_staff"
    ] == Decimal("12.5")


# --- inventory -----------------------------------------------------------------------------------


def _stock_at(events: list[Event], moment: datetime) -> dict[tuple[str, str], int]:
    truth = GroundTruth.for_model(MODEL)
    for e in events:
        if e.occurred_at < moment:
            truth.record(e)
    return truth.stock


def test_stock_turns_equal_the_simulated_sales_and_stock(two_days: list[Event]) -> None:
    monday, tuesday = date(2026, 3, 2), date(2026, 3, 3)
    truth = GroundTruth.for_model(MODEL)
    sold: Counter[tuple[str, str]] = Counter()
    sales = []
    for e in two_days:
        if isinstance(e, PosSaleV1):
            day = truth.local_day(e.store_id, e.occurred_at)
            for line in e.lines:
                sales.append(
                    {
                        "store_id": e.store_id,
                        "business_date": day,
                        "sku": line.sku,
                        "units": line.quantity,
                    }
                )
                if day in (monday, tuesday):
                    sold[(e.store_id, line.sku)] += line.quantity
    midnight = {
        d: datetime.combine(d + timedelta(days=1), datetime.min.time(), ZoneInfo(PARIS))
        for d in (monday, tuesday)
    }
    levels = {d: _stock_at(two_days, midnight[d]) for d in (monday, tuesday)}
    snapshots = [
        {"store_id": s, "sku": sku, "on_hand": n, "snapshot_date": d}
        for d, stock in levels.items()
        for (s, sku), n in stock.items()
    ]
    products = {p.sku: (p.name, p.category) for p in MODEL.catalogue}

    rows, categories, days = inventory.turns(sales, snapshots, Window(2, tuesday), products, 3)

    assert days == 2
    seen = {(r.store_id, r.key): r for r in rows}
    assert set(seen) == set(levels[tuesday]) | set(sold)
    for key, row in seen.items():
        units, left = sold[key], levels[tuesday].get(key)
        assert row.sold == units and row.on_hand == left
        average = (Decimal(levels[monday].get(key, 0)) + left) / 2
        assert row.average_on_hand == average.quantize(Decimal("0.0001"))
        if units:
            assert row.sell_through == (Decimal(units) / (units + left)).quantize(Decimal("0.0001"))
            assert row.days_of_cover == (Decimal(left * 2) / units).quantize(Decimal("0.1"))
        assert row.overstock == (left > 0 and (not units or Decimal(left * 2) / units > 3))
    assert any(r.overstock for r in rows) and not all(r.overstock for r in rows)
    assert [r.overstock for r in rows] == sorted((r.overstock for r in rows), reverse=True)
    by_category = {c.key: c for c in categories}
    for category in {c for _, c in products.values()}:
        skus = [k for k in seen if products[k[1]][1] == category]
        assert by_category[category].sold == sum(sold[k] for k in skus)
        assert by_category[category].on_hand == sum(levels[tuesday][k] for k in skus)


# --- social media --------------------------------------------------------------------------------


def test_social_metrics_from_the_stream_to_the_lake_equal_the_simulated_accounts(
    two_days: list[Event],
) -> None:
    """The simulator's social reports through the stream's aggregation (the DAY buckets), the
    export's rows and the dashboard, against the simulator's ground truth."""
    from storepulse.export.datasets import DATASETS, build_rows
    from storepulse.layout import Grain, bucket_keys
    from storepulse.settings import StoreSettings
    from storepulse.stream.aggregate import Located, aggregate

    stores = {
        s.store_id: StoreSettings(
            store_id=s.store_id, name=s.name, timezone=s.timezone, currency=s.currency
        )
        for s in MODEL.stores
    }
    catalog = replace(_catalogue(), stores=stores)
    reports = [e for e in two_days if isinstance(e, SocialMetricsV1)]
    located = [Located(e, "shard-0", f"{n:064d}") for n, e in enumerate(reports)]
    monday = date(2026, 3, 2)
    day_key = bucket_keys("s-001", datetime(2026, 3, 2, 12, tzinfo=UTC), PARIS)[Grain.DAY]

    item = {**day_key.as_item(), **aggregate(located, catalog, set()).counters[day_key].total()}
    live = social.from_bucket(item)
    lake_rows = list(build_rows(DATASETS["daily_social_metrics"], [item], monday))
    history = social.from_rows(lake_rows)

    truth = GroundTruth.for_model(MODEL)
    for e in reports:
        truth.record(e)
    expected = {
        channel: totals
        for (s, d, channel), totals in truth.social.items()
        if (s, d) == ("s-001", monday)
    }
    assert set(expected) == set(SOCIAL_CHANNELS) and len(reports) > 100
    for totals in (live, history):
        assert {
            c.channel: c.model_dump(exclude={"channel", "net_followers"}) for c in totals
        } == expected
        assert all(c.net_followers == c.followers_gained - c.followers_lost for c in totals)
    assert [c.engagements for c in live] == sorted((c.engagements for c in live), reverse=True)
