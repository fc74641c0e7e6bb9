"""Traffic simulator: determinism, business rules, ground truth, late and malformed records, CLI.

Most checks share one simulated week at a low rate (module fixture) to keep the file fast.
"""

from __future__ import annotations

import json
import signal
import sys
import types
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

from storepulse.clock import FrozenClock, fixed_clock
from storepulse.events import (
    CrmCustomerProfileV1,
    Event,
    InvalidEvent,
    InventoryAdjustmentV1,
    InventoryStockLevelV1,
    PosRefundV1,
    PosSaleV1,
    StoreFootTrafficV1,
    WebAddToCartV1,
    WebCheckoutStartedV1,
    WebPageViewV1,
    WebPurchaseV1,
    parse_event,
)
from storepulse.simulator import BusinessModel, Simulator
from storepulse.simulator.__main__ import main
from storepulse.simulator.backfill import history_rate, shown_days
from storepulse.simulator.engine import expected_events
from storepulse_local.platform.realtime import BACKFILL_EVENTS, SIMULATOR_RATE

E = TypeVar("E", bound=Event)
MONDAY = datetime(2026, 3, 2, tzinfo=UTC)  # a week without a DST change in Europe
SATURDAY_NOON = datetime(2026, 3, 7, 12, tzinfo=UTC)  # the CLI tests' clock
MODEL = BusinessModel.generate(7)
WEEK_RATE = 0.1
TOTAL_FIELDS = (
    "revenue",
    "refunds_amount",
    "refunds",
    "orders",
    "units",
    "page_views",
    "sessions",
    "add_to_carts",
    "checkouts",
    "purchases",
    "foot_traffic_entries",
)


def simulate(
    hours: float, *, model: BusinessModel = MODEL, seed: int = 7, rate: float = 0.2, **options: Any
) -> tuple[Simulator, list[Event]]:
    sim = Simulator(model, seed, MONDAY, rate=rate, **options)
    return sim, list(sim.events_between(MONDAY, MONDAY + timedelta(hours=hours)))


def wire(events: Iterable[Event]) -> bytes:
    return b"\n".join(event.to_json() for event in events)


def local(model: BusinessModel, event: Event) -> datetime:
    return event.occurred_at.astimezone(model.store(event.store_id).tz)


def of_type(events: Iterable[Event], kind: type[E]) -> list[E]:
    return [event for event in events if isinstance(event, kind)]


@pytest.fixture(scope="module")
def week() -> tuple[Simulator, list[Event]]:
    return simulate(7 * 24, rate=WEEK_RATE)


# --- the business model ------------------------------------------------------------------------


def test_model_is_generated_from_the_seed() -> None:
    assert BusinessModel.generate(7) == MODEL
    assert BusinessModel.generate(8) != MODEL
    assert [store.store_id for store in MODEL.stores] == ["s-001", "s-002"]
    assert {store.timezone for store in MODEL.stores} == {"Europe/Paris"}
    assert len(MODEL.catalogue) == 40
    assert len({product.category for product in MODEL.catalogue}) == 6
    assert len({product.sku for product in MODEL.catalogue}) == 40
    assert len(MODEL.customers) == 200
    assert all(MODEL.employees_of(store.store_id) for store in MODEL.stores)
    for product in MODEL.catalogue:
        assert isinstance(product.unit_price, Decimal)
        assert product.unit_price.as_tuple().exponent == -2
        assert 0 < product.reorder_point < min(product.stock_for(s.store_id) for s in MODEL.stores)


def test_model_is_frozen_and_exports_json() -> None:
    with pytest.raises(FrozenInstanceError):
        MODEL.catalogue[0].unit_price = Decimal("0.01")  # type: ignore[misc]

    data = json.loads(MODEL.to_json())

    assert data["catalogue"][0]["unit_price"] == str(MODEL.catalogue[0].unit_price)
    assert data["stores"][0]["hours"]["mon"] == {"opens": "09:00", "closes": "20:00"}
    assert len(data["employees"]) == len(MODEL.employees)


def test_model_options_are_validated() -> None:
    model = BusinessModel.generate(1, stores=3, timezones=("Europe/London", "Asia/Tokyo"))
    assert [s.timezone for s in model.stores] == ["Europe/London", "Asia/Tokyo", "Europe/London"]
    with pytest.raises(ValueError, match="time zone"):
        BusinessModel.generate(1, timezones=("Mars/Olympus",))
    with pytest.raises(ValueError, match="currency"):
        BusinessModel.generate(1, currency="euro")


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_another_seed_differs() -> None:
    first = wire(simulate(12)[1])

    assert first == wire(simulate(12)[1])
    assert first != wire(simulate(12, seed=8)[1])


def test_the_stream_does_not_depend_on_how_it_is_windowed() -> None:
    sim = Simulator(MODEL, 7, MONDAY, rate=0.2)
    windows = []
    while sim.clock < MONDAY + timedelta(hours=12):
        windows.extend(sim.events_between(*sim.window(7.0)))  # 7 simulated minutes

    whole = Simulator(MODEL, 7, MONDAY, rate=0.2).events_between(MONDAY, sim.clock)
    assert wire(windows) == wire(whole)
    with pytest.raises(ValueError, match="back in time"):
        sim.events_between(MONDAY, MONDAY + timedelta(hours=13))


def test_a_simulated_day_is_a_days_traffic() -> None:
    # How fast it is generated is benchmarked (benchmarks/), not timed here: timings on a
    # shared CI machine are noise.
    _, events = simulate(24)

    assert len(events) > 5000


# --- behaviour ---------------------------------------------------------------------------------


def test_every_event_validates_and_has_a_unique_id(week: tuple[Simulator, list[Event]]) -> None:
    _, events = week

    assert all(parse_event(event.to_json()) == event for event in events)
    assert len({event.event_id for event in events}) == len(events)
    assert {event.schema_name for event in events} == {
        "pos.sale",
        "pos.refund",
        "web.page_view",
        "web.add_to_cart",
        "web.checkout_started",
        "web.purchase",
        "inventory.stock_level",
        "inventory.adjustment",
        "crm.customer_profile",
        "store.foot_traffic",
        "social.metrics",
    }


def test_events_come_in_occurred_at_order(week: tuple[Simulator, list[Event]]) -> None:
    times = [event.occurred_at for event in week[1]]
    assert times == sorted(times)


def test_nothing_happens_in_store_while_it_is_closed(week: tuple[Simulator, list[Event]]) -> None:
    _, events = week
    in_store = [e for e in of_type(events, PosSaleV1) if e.channel == "in_store"]
    doors = of_type(events, StoreFootTrafficV1)

    for sale in in_store:
        when = local(MODEL, sale)
        hours = MODEL.store(sale.store_id).hours_on(when.date())
        assert hours is not None and hours.opens <= when.time() < hours.closes, sale
    for count in doors:
        when = local(MODEL, count)
        hours = MODEL.store(count.store_id).hours_on(when.date())
        assert hours is not None and hours.opens < when.time() <= hours.closes, count
    night = [e for e in of_type(events, WebPageViewV1) if local(MODEL, e).hour < 6]
    assert night  # the webshop never closes


def test_saturday_is_busiest_and_lunch_beats_mid_morning(
    week: tuple[Simulator, list[Event]],
) -> None:
    _, events = week
    in_store = [e for e in of_type(events, PosSaleV1) if e.channel == "in_store"]
    views = of_type(events, WebPageViewV1)
    sales_by_day = Counter(local(MODEL, e).strftime("%a") for e in in_store)
    views_by_day = Counter(local(MODEL, e).strftime("%a") for e in views)
    sales_by_hour = Counter(local(MODEL, e).hour for e in in_store)
    views_by_hour = Counter(local(MODEL, e).hour for e in views)

    assert sales_by_day.most_common(1)[0][0] == "Sat"
    assert sales_by_day["Sat"] > 2 * sales_by_day["Sun"]
    assert views_by_day["Sat"] > views_by_day["Sun"]
    assert sales_by_hour[12] > 1.2 * sales_by_hour[10]
    assert views_by_hour[12] > views_by_hour[10]
    assert views_by_hour[3] < views_by_hour[12] / 3


def test_foot_traffic_is_counted_every_5_minutes_and_drives_sales(
    week: tuple[Simulator, list[Event]],
) -> None:
    _, events = week
    entries: Counter[tuple[str, str]] = Counter()
    for count in of_type(events, StoreFootTrafficV1):
        assert count.interval_seconds == 300
        assert local(MODEL, count).minute % 5 == 0
        entries[count.store_id, local(MODEL, count).date().isoformat()] += count.entries
    orders = Counter(
        (e.store_id, local(MODEL, e).date().isoformat())
        for e in of_type(events, PosSaleV1)
        if e.channel == "in_store"
    )

    for key, sold in orders.items():
        assert 0.2 * entries[key] < sold < 0.6 * entries[key], key


def test_stock_is_taken_at_opening(week: tuple[Simulator, list[Event]]) -> None:
    _, events = week
    takes: defaultdict[tuple[str, datetime], set[str]] = defaultdict(set)
    for take in of_type(events, InventoryStockLevelV1):
        takes[take.store_id, local(MODEL, take)].add(take.sku)

    every_sku = {product.sku for product in MODEL.catalogue}
    assert all(skus == every_sku for skus in takes.values())
    for store in MODEL.stores:
        opened = sorted(when for store_id, when in takes if store_id == store.store_id)
        assert opened[0] == MONDAY  # the snapshot when the simulation starts
        for when in opened[1:]:
            hours = store.hours_on(when.date())
            assert hours is not None and when.time() == hours.opens
        week_days = [(MONDAY + timedelta(days=d)).date() for d in range(7)]
        open_days = sum(store.hours_on(day) is not None for day in week_days)
        assert len(opened) == 1 + open_days


def test_stock_runs_low_and_is_restocked(week: tuple[Simulator, list[Event]]) -> None:
    sim, events = week
    level: dict[tuple[str, str], int] = {}
    low: set[tuple[str, str]] = set()
    restocked_after_low: set[tuple[str, str]] = set()
    for event in events:
        match event:
            case InventoryStockLevelV1():
                level[event.store_id, event.sku] = event.quantity_on_hand
            case InventoryAdjustmentV1():
                key = (event.store_id, event.sku)
                level[key] += event.delta
                if event.reason == "restock" and key in low:
                    restocked_after_low.add(key)
                    assert level[key] > MODEL.product(event.sku).reorder_point
            case PosSaleV1():
                for line in event.lines:
                    key = (event.store_id, line.sku)
                    level[key] -= line.quantity
                    assert level[key] >= 0
                    if level[key] <= MODEL.product(line.sku).reorder_point:
                        low.add(key)

    assert len(restocked_after_low) >= 5
    assert level == sim.stock == sim.ground_truth.stock


def test_refunds_are_rare_partial_or_full_and_follow_their_sale(
    week: tuple[Simulator, list[Event]],
) -> None:
    _, events = week
    sales = {sale.order_id: sale for sale in of_type(events, PosSaleV1)}
    refunds = of_type(events, PosRefundV1)

    assert 0.005 < len(refunds) / len(sales) < 0.05
    partial = 0
    for refund in refunds:
        sale = sales[refund.order_id]
        assert sale.occurred_at < refund.occurred_at
        assert Decimal("0.00") < refund.amount <= sale.total
        sold = {line.sku: line.quantity for line in sale.lines}
        assert refund.lines and all(line.quantity <= sold[line.sku] for line in refund.lines)
        partial += refund.amount < sale.total
    assert 0 < partial < len(refunds)
    assert any(e.reason == "return" for e in of_type(events, InventoryAdjustmentV1))


def test_web_sessions_go_through_a_funnel(week: tuple[Simulator, list[Event]]) -> None:
    _, events = week
    sessions = {e.session_id for e in of_type(events, WebPageViewV1)}
    carts = {e.session_id for e in of_type(events, WebAddToCartV1)}
    checkouts = {e.session_id for e in of_type(events, WebCheckoutStartedV1)}
    purchases = of_type(events, WebPurchaseV1)
    online = {s.order_id: s for s in of_type(events, PosSaleV1) if s.channel == "online"}

    assert len(sessions) > 5 * len(carts) > 0
    assert carts > checkouts > {p.session_id for p in purchases}
    assert 0.01 < len(purchases) / len(sessions) < 0.06
    assert {p.order_id for p in purchases} == set(online)
    for purchase in purchases:
        assert online[purchase.order_id].occurred_at == purchase.occurred_at
        assert online[purchase.order_id].customer_id is not None


def test_a_customer_profile_comes_before_the_customer(week: tuple[Simulator, list[Event]]) -> None:
    _, events = week
    profiled: set[str] = set()
    for event in events:
        if isinstance(event, CrmCustomerProfileV1):
            assert event.customer_id not in profiled
            profiled.add(event.customer_id)
        elif isinstance(event, PosSaleV1 | WebPageViewV1) and event.customer_id:
            assert event.customer_id in profiled
    assert 50 < len(profiled) <= len(MODEL.customers)


# --- ground truth ------------------------------------------------------------------------------


def recompute(model: BusinessModel, events: Iterable[Event]) -> dict[str, Any]:
    """Totals by store-local day, computed independently of GroundTruth."""
    days: dict[str, dict[str, dict[str, Any]]] = {}
    first_view: dict[str, tuple[datetime, str]] = {}
    for event in events:
        day = local(model, event).date().isoformat()
        totals = days.setdefault(event.store_id, {}).setdefault(day, dict.fromkeys(TOTAL_FIELDS, 0))
        match event:
            case PosSaleV1():
                totals["revenue"] += sum(line.unit_price * line.quantity for line in event.lines)
                totals["orders"] += 1
                totals["units"] += sum(line.quantity for line in event.lines)
            case PosRefundV1():
                totals["refunds"] += 1
                totals["refunds_amount"] += event.amount
            case WebPageViewV1():
                totals["page_views"] += 1
                seen = first_view.get(event.session_id)
                if seen is None or event.occurred_at < seen[0]:
                    first_view[event.session_id] = (event.occurred_at, event.store_id)
            case WebAddToCartV1():
                totals["add_to_carts"] += 1
            case WebCheckoutStartedV1():
                totals["checkouts"] += 1
            case WebPurchaseV1():
                totals["purchases"] += 1
            case StoreFootTrafficV1():
                totals["foot_traffic_entries"] += event.entries
    for at, store_id in first_view.values():
        zone = model.store(store_id).tz
        days[store_id][at.astimezone(zone).date().isoformat()]["sessions"] += 1
    for store_days in days.values():
        for totals in store_days.values():
            for name in ("revenue", "refunds_amount"):
                totals[name] = f"{Decimal(totals[name]):.2f}"
    return days


def test_ground_truth_equals_a_recomputation_in_each_store_local_day() -> None:
    model = BusinessModel.generate(3, timezones=("America/New_York", "Asia/Tokyo"))
    sim, events = simulate(60, model=model, seed=3)

    truth = json.loads(sim.ground_truth.to_json())

    assert truth["days"] == recompute(model, events)
    assert set(truth["days"]["s-002"]) == {"2026-03-02", "2026-03-03", "2026-03-04"}
    assert set(truth["days"]["s-001"]) == {"2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"}
    revenue = Decimal(truth["days"]["s-001"]["2026-03-02"]["revenue"])
    assert revenue > 0 and isinstance(truth["days"]["s-001"]["2026-03-02"]["revenue"], str)
    stock = {(s, sku): n for s, skus in truth["stock"].items() for sku, n in skus.items()}
    assert stock == sim.stock


def test_ground_truth_writes_json(tmp_path: Path) -> None:
    sim, _ = simulate(2)
    target = tmp_path / "truth.json"

    sim.ground_truth.write(target)

    assert json.loads(target.read_text()) == sim.ground_truth.to_dict()
    assert [p.name for p in tmp_path.iterdir()] == ["truth.json"]


def test_late_events_keep_occurred_at_and_their_local_day() -> None:
    hours = 2 * 24 + 9  # late POS events are at most 8 hours late
    _, on_time = simulate(hours)
    late_sim, late = simulate(hours, late_fraction=0.3)
    cutoff = MONDAY + timedelta(days=2)

    assert {e.to_json() for e in late if e.occurred_at < cutoff} == {
        e.to_json() for e in on_time if e.occurred_at < cutoff
    }
    newest, crossed_midnight = MONDAY, 0
    for event in late:
        if event.occurred_at < newest:
            assert isinstance(event, PosSaleV1 | PosRefundV1)
            crossed_midnight += (
                local(MODEL, event).date()
                < newest.astimezone(MODEL.store(event.store_id).tz).date()
            )
        newest = max(newest, event.occurred_at)
    assert crossed_midnight > 0
    truth = late_sim.ground_truth.to_dict()["days"]
    assert truth == recompute(MODEL, late)
    assert truth["s-001"]["2026-03-02"] == recompute(MODEL, on_time)["s-001"]["2026-03-02"]


def test_malformed_records_fail_validation_and_stay_out_of_ground_truth() -> None:
    clean_sim, clean = simulate(24, rate=0.1)
    sim = Simulator(MODEL, 7, MONDAY, rate=0.1, malformed_fraction=0.1)
    records = list(sim.raw_records_between(MONDAY, MONDAY + timedelta(hours=24)))
    valid, reasons = [], []
    for payload, key in records:
        assert key
        try:
            valid.append(parse_event(payload))
        except InvalidEvent as exc:
            reasons.append(exc.reason)

    assert 0.07 < len(reasons) / len(records) < 0.13
    assert wire(valid) == wire(clean)
    assert sim.ground_truth.to_dict() == clean_sim.ground_truth.to_dict()
    assert any(r.startswith("not valid JSON") for r in reasons)
    assert any(r.startswith("unknown schema") for r in reasons)
    assert any("quantity: must be >= 1" in r for r in reasons)


# --- bursts ------------------------------------------------------------------------------------


def test_a_burst_dwarfs_the_baseline_and_leaves_the_stream_alone() -> None:
    saturday_noon = MONDAY + timedelta(days=5, hours=11)
    sim = Simulator(MODEL, 7, saturday_noon, rate=0.2)
    baseline = list(sim.events_between(saturday_noon, saturday_noon + timedelta(hours=1)))
    per_minute = Counter(
        e.occurred_at.replace(second=0, microsecond=0) for e in of_type(baseline, WebPageViewV1)
    )
    views_before = sum(d.page_views for d in sim.ground_truth.days["s-001"].values())

    spike = list(sim.burst("s-001", size=500))

    views = of_type(spike, WebPageViewV1)
    assert len(views) == 500
    assert len(views) > 20 * max(per_minute.values())
    assert max(e.occurred_at for e in spike) - min(e.occurred_at for e in spike) < timedelta(
        minutes=2
    )
    assert sum(e.entries for e in of_type(spike, StoreFootTrafficV1)) == 100
    assert all(parse_event(e.to_json()) == e for e in spike)
    views_after = sum(d.page_views for d in sim.ground_truth.days["s-001"].values())
    assert views_after == views_before + 500
    after = list(sim.events_between(sim.clock, sim.clock + timedelta(hours=1)))
    undisturbed = Simulator(MODEL, 7, saturday_noon, rate=0.2)
    expected = list(undisturbed.events_between(saturday_noon, saturday_noon + timedelta(hours=2)))
    assert wire(baseline + after) == wire(expected)
    assert {e.event_id for e in spike}.isdisjoint(e.event_id for e in sim.burst("s-001", size=10))


def test_no_foot_traffic_burst_while_closed() -> None:
    sunday_night = MONDAY + timedelta(days=6, hours=22)
    sim = Simulator(MODEL, 7, sunday_night)

    assert of_type(sim.burst("s-002", "traffic", 50), StoreFootTrafficV1) == []
    assert list(sim.burst("s-002", "foot", 50)) == []
    with pytest.raises(KeyError, match="unknown store"):
        sim.burst("s-404")


# --- command line ------------------------------------------------------------------------------


class TickingClock(FrozenClock):
    """A clock that moves on by half a second each time it is read (the CLI reads it once a
    tick): slower than the ticks, so a simulator that ignored it would run ahead."""

    def __init__(self, at: datetime) -> None:
        super().__init__(at)
        self.readings: list[datetime] = []

    def __call__(self) -> datetime:
        self.readings.append(self.now)
        self.advance(seconds=0.5)
        return self.readings[-1]


class FakeProducer:
    """Stands in for storepulse.producer.KinesisProducer; can raise SIGTERM mid-run, and notes
    the time the CLI last read from ``clock`` when each batch was put."""

    instances: ClassVar[list[FakeProducer]] = []
    sigterm_on_call = 0
    clock: ClassVar[TickingClock | None] = None

    def __init__(self, *, stream_name: str) -> None:
        self.stream_name = stream_name
        self.batches: list[list[Any]] = []
        self.put_at: list[datetime] = []
        FakeProducer.instances.append(self)

    def _report(self, batch: list[Any]) -> types.SimpleNamespace:
        self.batches.append(batch)
        if FakeProducer.clock is not None:
            self.put_at.append(FakeProducer.clock.readings[-1])
        if len(self.batches) == FakeProducer.sigterm_on_call:
            signal.raise_signal(signal.SIGTERM)
        return types.SimpleNamespace(records_sent=len(batch))

    def send(self, events: Iterable[Event]) -> types.SimpleNamespace:
        return self._report(list(events))

    def send_raw(self, records: Iterable[tuple[bytes, str]]) -> types.SimpleNamespace:
        return self._report(list(records))


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    module = types.ModuleType("storepulse.producer")
    module.KinesisProducer = FakeProducer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "storepulse.producer", module)
    FakeProducer.instances, FakeProducer.sigterm_on_call, FakeProducer.clock = [], 0, None
    return FakeProducer


def test_cli_catalogue_prints_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalogue", "--seed", "7"]) == 0
    assert json.loads(capsys.readouterr().out) == MODEL.to_dict()


def test_cli_dry_run_prints_json_lines_and_writes_ground_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = tmp_path / "truth.json"
    args = ["run", "--dry-run", "--no-wait", "--duration", "3", "--rate", "1"]
    args += ["--start", "2026-03-07T10:00:00Z", "--acceleration", "60"]

    assert main([*args, "--ground-truth", str(truth)], clock=fixed_clock(SATURDAY_NOON)) == 0

    events = [parse_event(line) for line in capsys.readouterr().out.splitlines()]
    assert events and max(e.occurred_at for e in events) < datetime(2026, 3, 7, 10, 3, tzinfo=UTC)
    assert json.loads(truth.read_text())["days"] == recompute(MODEL, events)


def test_cli_run_sends_each_tick_and_stops_on_sigterm(
    tmp_path: Path, producer: type[FakeProducer]
) -> None:
    producer.sigterm_on_call = 2
    handler = signal.getsignal(signal.SIGTERM)
    truth = tmp_path / "truth.json"
    args = ["run", "--stream", "s1", "--rate", "2", "--no-wait", "--ground-truth", str(truth)]

    args += ["--start", "2026-03-07T10:00:00Z", "--malformed-fraction", "0.2"]

    assert main(args, clock=fixed_clock(SATURDAY_NOON)) == 0

    (sent,) = producer.instances
    assert sent.stream_name == "s1"
    assert len(sent.batches) == 2  # stopped after the tick during which SIGTERM arrived
    assert all(isinstance(payload, bytes) for payload, _ in sent.batches[0])
    assert truth.exists()
    assert signal.getsignal(signal.SIGTERM) is handler


def test_cli_burst_sends_a_spike(producer: type[FakeProducer]) -> None:
    clock = fixed_clock(SATURDAY_NOON)

    assert main(["burst", "--store", "s-001", "--size", "300", "--kind", "web"], clock) == 0

    (batch,) = producer.instances[0].batches
    assert len(of_type(batch, WebPageViewV1)) == 300
    assert SATURDAY_NOON - timedelta(minutes=1) <= min(e.occurred_at for e in batch)
    assert max(e.occurred_at for e in batch) < SATURDAY_NOON
    assert main(["burst", "--store", "s-404"], clock) == 2


def test_cli_run_never_dates_an_event_after_the_clock(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", "--dry-run", "--no-wait", "--duration", "5", "--rate", "1"]
    args += ["--start", "2026-03-07T11:59:00Z", "--acceleration", "60"]  # 5 minutes in 5 ticks

    assert main(args, clock=fixed_clock(SATURDAY_NOON)) == 0

    events = [parse_event(line) for line in capsys.readouterr().out.splitlines()]
    assert events and max(e.occurred_at for e in events) < SATURDAY_NOON
    assert main([*args[:-4], "--backfill", "100", "--start", "2026-03-07T11:59:00Z"]) == 2


# --- history, then live ------------------------------------------------------------------------


def hours(text: str) -> tuple[datetime, datetime]:
    """``"2027-01-12T23:00 2027-01-13T02:00"``: a window in UTC."""
    start, end = (datetime.fromisoformat(part).replace(tzinfo=UTC) for part in text.split())
    return start, end


@pytest.mark.parametrize(("rate", "span"), [(0.05, 15), (0.2, 24), (1.0, 3), (1.0, 15)])
def test_expected_events_is_close_to_the_simulation(rate: float, span: int) -> None:
    start = datetime(2026, 3, 4, 23, tzinfo=UTC)  # Thursday's local midnight in Paris
    end = start + timedelta(hours=span)

    simulated = sum(1 for _ in Simulator(MODEL, 7, start, rate=rate).events_between(start, end))

    assert 0.75 < simulated / expected_events(MODEL, start, end, rate) < 1.33


# Local midnight to the clock today, and the same local times yesterday and a week before, in
# UTC, worked out by hand (Paris: UTC+1 in winter, UTC+2 in summer).
WINDOWS = {
    "03:00 winter": (
        datetime(2027, 1, 13, 2, tzinfo=UTC),  # a Wednesday
        [
            hours("2027-01-05T23:00 2027-01-06T02:00"),
            hours("2027-01-11T23:00 2027-01-12T02:00"),
            hours("2027-01-12T23:00 2027-01-13T02:00"),
        ],
    ),
    "03:00 summer": (
        datetime(2027, 7, 14, 1, tzinfo=UTC),
        [
            hours("2027-07-06T22:00 2027-07-07T01:00"),
            hours("2027-07-12T22:00 2027-07-13T01:00"),
            hours("2027-07-13T22:00 2027-07-14T01:00"),
        ],
    ),
    "15:00": (
        datetime(2027, 1, 13, 14, tzinfo=UTC),
        [
            hours("2027-01-05T23:00 2027-01-06T14:00"),
            hours("2027-01-11T23:00 2027-01-12T14:00"),
            hours("2027-01-12T23:00 2027-01-13T14:00"),
        ],
    ),
    "spring forward: a 23-hour day": (
        datetime(2027, 3, 28, 1, 30, tzinfo=UTC),  # 03:30 CEST, clocks went 02:00 -> 03:00
        [
            hours("2027-03-20T23:00 2027-03-21T02:30"),
            hours("2027-03-26T23:00 2027-03-27T02:30"),
            hours("2027-03-27T23:00 2027-03-28T01:30"),
        ],
    ),
    "fall back: a 25-hour day": (
        datetime(2027, 10, 31, 1, 30, tzinfo=UTC),  # 02:30 CET, the second 02:30 of the night
        [
            hours("2027-10-23T22:00 2027-10-24T00:30"),
            hours("2027-10-29T22:00 2027-10-30T00:30"),
            hours("2027-10-30T22:00 2027-10-31T01:30"),
        ],
    ),
}
BUDGET, LIVE_RATE = BACKFILL_EVENTS, SIMULATOR_RATE  # the demo's settings


def backfill(
    producer: type[FakeProducer], now: datetime, tmp_path: Path, ticks: int = 30
) -> FakeProducer:
    """``run --backfill`` for ``ticks`` ticks, from a clock at ``now`` that each tick moves on."""
    producer.clock = TickingClock(now)
    args = ["run", "--stream", "s1", "--rate", str(LIVE_RATE), "--backfill", str(BUDGET)]
    args += ["--no-wait", "--duration", str(ticks)]
    assert main([*args, "--ground-truth", str(tmp_path / "truth.json")], producer.clock) == 0
    (sent,) = producer.instances
    return sent


def in_window(events: Iterable[Event], window: tuple[datetime, datetime]) -> bool:
    return all(window[0] <= event.occurred_at < window[1] for event in events)


@pytest.mark.parametrize("case", WINDOWS)
def test_backfill_sends_the_compared_days_up_to_the_clock_then_goes_live(
    case: str, producer: type[FakeProducer], tmp_path: Path
) -> None:
    now, windows = WINDOWS[case]

    sent = backfill(producer, now, tmp_path)

    history, live = sent.batches[:3], sent.batches[3:]
    for batch, window in zip(history, windows, strict=True):  # oldest first
        assert batch and in_window(batch, window), case
    today = history[2]
    assert sum(sale.total for sale in of_type(today, PosSaleV1)) > 0
    assert of_type(today, WebPageViewV1)
    assert 0.6 * BUDGET < sum(map(len, history)) < 1.35 * BUDGET
    assert producer.clock is not None and len(producer.clock.readings) == 31  # plan + 30 ticks
    assert any(e.occurred_at >= now for batch in live for e in batch)  # today goes on live
    for batch, put_at in zip(live, sent.put_at[3:], strict=True):
        elapsed = put_at - now
        lanes = [(start, end + elapsed) for start, end in windows]
        assert all(any(in_window([e], lane) for lane in lanes) for e in batch)
        assert all(e.occurred_at <= put_at for e in batch)  # never after the clock
    events = [event for batch in sent.batches for event in batch]
    assert len({event.event_id for event in events}) == len(events)
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["days"] == recompute(MODEL, events)


def test_the_history_rate_fits_the_budget_so_a_night_history_has_web_sales(
    producer: type[FakeProducer], tmp_path: Path
) -> None:
    now, _ = WINDOWS["03:00 winter"]

    today = backfill(producer, now, tmp_path).batches[2]

    online = [sale for sale in of_type(today, PosSaleV1) if sale.channel == "online"]
    assert len(online) >= 3  # the stores are closed: all of them are web sales
    assert all(sale.channel == "online" for sale in of_type(today, PosSaleV1))
    late_evening = backfill_rate_at(datetime(2027, 1, 13, 22, 50, tzinfo=UTC))
    assert late_evening < backfill_rate_at(now) <= LIVE_RATE
    assert backfill_rate_at(datetime(2027, 1, 12, 23, 1, tzinfo=UTC)) == LIVE_RATE


def test_the_compared_days_stop_at_their_midnight_and_today_goes_past_it(
    producer: type[FakeProducer], tmp_path: Path
) -> None:
    now = datetime(2027, 1, 13, 22, 59, 30, tzinfo=UTC)  # 23:59:30 in Paris
    midnight = datetime(2027, 1, 13, 23, tzinfo=UTC)

    sent = backfill(producer, now, tmp_path, ticks=180)  # the clock moves on by 90 s

    live = [event for batch in sent.batches[3:] for event in batch]
    lanes = [(now - timedelta(days=back), midnight - timedelta(days=back)) for back in (7, 1)]
    lanes.append((now, now + timedelta(seconds=90)))
    assert all(any(in_window([e], lane) for lane in lanes) for e in live)
    assert any(e.occurred_at >= midnight for e in live)  # today's day is the next one now
    assert 0.6 * BUDGET < sum(map(len, sent.batches[:3])) < 1.35 * BUDGET  # nearly 3 whole days


def backfill_rate_at(now: datetime) -> float:
    return history_rate(MODEL, shown_days(now, MODEL.timezone), BUDGET, LIVE_RATE)
