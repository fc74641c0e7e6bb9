"""Deterministic event generator: a discrete-event simulation of a ``BusinessModel``.

Why a simulation rather than independent random events: the analytics must be testable against
data with real structure. Sales decrement a stock that runs low and gets restocked, refunds refer
to earlier orders, foot traffic counts the visitors who also make the in-store sales, and web
sessions go through a funnel. Each actor (a visitor, a web session, a store's day, a restock) is a
generator *process* that yields how long it waits (in simulated milliseconds); a heap ordered by
(time, priority, sequence) runs them in time order, and every event is emitted at the simulated
time it happens. Nothing depends on the wall clock or the global ``random``: the same model, seed,
start and options give a byte-identical stream, however it is cut into windows.

Independent random streams (``random.Random`` seeded from the seed and start) keep options from
perturbing each other: turning on ``late_fraction`` changes when POS events are *emitted*, never
what they contain, and ``malformed_fraction`` only adds records between the valid ones.

``GroundTruth`` is accumulated from the events actually handed out, so tests can compare what
the pipeline stored with what was sent. ``anomalies`` (``storepulse.simulator.anomalies``: a
spike, a drop, a conversion collapse) disturb a store at known times and are listed in it.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import os
import random
import uuid
from collections import deque
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from storepulse.events import (
    CrmCustomerProfileV1,
    Event,
    InventoryAdjustmentV1,
    InventoryStockLevelV1,
    PosRefundV1,
    PosSaleV1,
    RefundLine,
    SaleLine,
    SocialMetricsV1,
    StoreFootTrafficV1,
    WebAddToCartV1,
    WebCheckoutStartedV1,
    WebPageViewV1,
    WebPurchaseV1,
    partition_key,
)
from storepulse.simulator import anomalies as anomaly_factors
from storepulse.simulator.anomalies import Anomaly
from storepulse.simulator.model import BusinessModel, Customer, Product, Seasonality, Store

__all__ = ["DayTotals", "GroundTruth", "MalformedRecord", "Simulator", "expected_events"]

Process = Generator[int, None, None]
"""A simulated actor: each ``yield`` is the number of milliseconds it waits."""

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
SECOND: Final = 1000
MINUTE: Final = 60 * SECOND
HOUR: Final = 60 * MINUTE
DAY: Final = 24 * HOUR
TICK: Final = MINUTE  # arrivals are drawn minute by minute
FOOT_TRAFFIC_INTERVAL: Final = 5 * MINUTE
LAST_ENTRY: Final = 10 * MINUTE  # no new visitor in the last minutes before closing
# The catalogue's stock quantities suit a shop at up to this rate; above it they are scaled up
# (initial stock, reorder point, restock level), or a fast simulation would only sell out.
STOCK_REFERENCE_RATE: Final = 0.2

# Calibration: ``rate`` is the event rate at the busiest hour of the week. Page views dominate a
# shop's event volume, so web sessions get most of it. Measured averages per arrival:
WEB_SHARE: Final = 0.75
EVENTS_PER_SESSION: Final = 3.2
EVENTS_PER_VISITOR: Final = 0.45

# Behaviour, roughly in line with small retail and e-commerce benchmarks.
IN_STORE_CONVERSION: Final = 0.4  # visitors who buy something
LOYALTY_SHARE: Final = 0.45  # in-store sales with a known customer
LOGGED_IN_SHARE: Final = 0.25  # web sessions of a known customer
ADD_TO_CART: Final = 0.09  # per product page view
CHECKOUT: Final = 0.5  # carts that reach checkout; the others are abandoned
PURCHASE: Final = 0.65  # checkouts that are paid
REFUND_RATE: Final = 0.03
FULL_REFUND: Final = 0.55
SHRINKAGE_PER_DAY: Final = 0.3  # chance that a store loses a unit on a given day
LINES_CUM_WEIGHTS: Final = (45, 75, 92, 100)  # 1-4 lines per in-store basket
QUANTITY_CUM_WEIGHTS: Final = (80, 95, 100)  # 1-3 units per line
DEVICES: Final = ("mobile", "desktop", "tablet", "app")
DEVICE_CUM_WEIGHTS: Final = (55, 90, 97, 100)
REFERRERS: Final = (
    None,
    None,
    "https://www.google.com/",
    "https://www.instagram.com/",
    "https://www.facebook.com/",
    "https://newsletter.example.com/",
)
REFUND_REASONS: Final = ("changed_mind", "wrong_item", "damaged", "defective", "late_delivery")
RESTOCKABLE_REASONS: Final = frozenset({"changed_mind", "wrong_item", "late_delivery"})
LATE_DELAY_MS: Final = (2 * MINUTE, 8 * HOUR)  # how long an offline POS takes to sync
MALFORMED_KINDS: Final = ("truncated", "unknown_schema", "negative_quantity")
UNKNOWN_SCHEMAS: Final = ("pos.void", "web.scroll", "inventory.count")

# Social media: each store's accounts report every 15 minutes, busier when people browse (the
# web's intensity); engagements per web event at the same moment, and the rest per engagement.
SOCIAL_INTERVAL: Final = 15 * MINUTE
SOCIAL_CHANNELS: Final = ("instagram", "facebook", "tiktok")
SOCIAL_CHANNEL_WEIGHTS: Final = (0.5, 0.3, 0.2)
SOCIAL_PER_WEB_EVENT: Final = 0.5
SOCIAL_MENTIONS: Final = 0.05
SOCIAL_GAINED: Final = 0.03
SOCIAL_LOST: Final = 0.01

BurstKind = Literal["traffic", "web", "foot"]
_ZERO: Final = Decimal("0.00")
_COLLAPSE: Final = frozenset({"conversion_collapse"})


@dataclass(frozen=True)
class MalformedRecord:
    """A record that must fail validation (for quarantine tests); never part of ground truth."""

    payload: bytes
    partition_key: str
    kind: str


# --- ground truth ------------------------------------------------------------------------------


@dataclass
class DayTotals:
    """What one store did on one store-local day. Refunds are kept apart from revenue."""

    revenue: Decimal = _ZERO
    refunds_amount: Decimal = _ZERO
    refunds: int = 0
    orders: int = 0
    units: int = 0
    page_views: int = 0
    sessions: int = 0
    add_to_carts: int = 0
    checkouts: int = 0
    purchases: int = 0
    foot_traffic_entries: int = 0

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: str(v) if isinstance(v, Decimal) else v for name, v in values.items()}


@dataclass
class _StockLedger:
    """Last absolute count plus the signed changes that happened at or after it.

    Bucketing by occurred_at (not arrival) keeps the result right when a POS syncs late: a sale
    that happened before a stock take is already reflected in that count.
    """

    counted_at: datetime | None = None
    counted: int = 0
    changes: list[tuple[datetime, int]] = field(default_factory=list)

    def count(self, at: datetime, quantity: int) -> None:
        if self.counted_at is not None and at < self.counted_at:
            return
        self.counted_at, self.counted = at, quantity
        self.changes = [(t, delta) for t, delta in self.changes if t >= at]

    def change(self, at: datetime, delta: int) -> None:
        if self.counted_at is None or at >= self.counted_at:
            self.changes.append((at, delta))

    @property
    def level(self) -> int:
        return self.counted + sum(delta for _, delta in self.changes)


class GroundTruth:
    """Totals per store and store-local day, and final stock, from the events handed out.

    A session counts on the local day of its first page view. Stock is the latest
    ``inventory.stock_level`` plus adjustments and minus sold units that occurred at or after it.
    """

    def __init__(self, timezones: Mapping[str, str]) -> None:
        self._zones = {store: ZoneInfo(name) for store, name in timezones.items()}
        self.days: dict[str, dict[date, DayTotals]] = {}
        # social.metrics counters per (store, local day, channel)
        self.social: dict[tuple[str, date, str], dict[str, int]] = {}
        self._sessions: set[str] = set()
        self._stock: dict[tuple[str, str], _StockLedger] = {}
        self.anomalies: list[Anomaly] = []  # injected at known times (``Simulator(anomalies=)``)

    @classmethod
    def for_model(cls, model: BusinessModel) -> GroundTruth:
        return cls({store.store_id: store.timezone for store in model.stores})

    def local_day(self, store_id: str, at: datetime) -> date:
        return at.astimezone(self._zones.get(store_id, UTC)).date()

    def day(self, store_id: str, day: date) -> DayTotals:
        return self.days.setdefault(store_id, {}).setdefault(day, DayTotals())

    @property
    def stock(self) -> dict[tuple[str, str], int]:
        """Final on-hand units per (store_id, sku)."""
        return {key: ledger.level for key, ledger in sorted(self._stock.items())}

    def record(self, event: Event) -> None:
        totals = self.day(event.store_id, self.local_day(event.store_id, event.occurred_at))
        match event:
            case PosSaleV1():
                self._record_sale(totals, event)
            case PosRefundV1():
                totals.refunds += 1
                totals.refunds_amount += event.amount
            case WebPageViewV1():
                totals.page_views += 1
                if event.session_id not in self._sessions:
                    self._sessions.add(event.session_id)
                    totals.sessions += 1
            case WebAddToCartV1():
                totals.add_to_carts += 1
            case WebCheckoutStartedV1():
                totals.checkouts += 1
            case WebPurchaseV1():
                totals.purchases += 1
            case StoreFootTrafficV1():
                totals.foot_traffic_entries += event.entries
            case InventoryStockLevelV1():
                self._ledger(event.store_id, event.sku).count(
                    event.occurred_at, event.quantity_on_hand
                )
            case InventoryAdjustmentV1():
                self._ledger(event.store_id, event.sku).change(event.occurred_at, event.delta)
            case SocialMetricsV1():
                self._record_social(event)

    def _record_social(self, event: SocialMetricsV1) -> None:
        day = self.local_day(event.store_id, event.occurred_at)
        totals = self.social.setdefault((event.store_id, day, event.channel), {})
        for name in ("mentions", "followers_gained", "followers_lost", "engagements"):
            totals[name] = totals.get(name, 0) + getattr(event, name)

    def _record_sale(self, totals: DayTotals, sale: PosSaleV1) -> None:
        totals.revenue += sale.total
        totals.orders += 1
        totals.units += sale.units
        for line in sale.lines:
            self._ledger(sale.store_id, line.sku).change(sale.occurred_at, -line.quantity)

    def _ledger(self, store_id: str, sku: str) -> _StockLedger:
        return self._stock.setdefault((store_id, sku), _StockLedger())

    def to_dict(self) -> dict[str, Any]:
        stock: dict[str, dict[str, int]] = {}
        for (store_id, sku), level in self.stock.items():
            stock.setdefault(store_id, {})[sku] = level
        truth: dict[str, Any] = {
            "timezones": {store: zone.key for store, zone in self._zones.items()},
            "days": {
                store: {day.isoformat(): days[day].to_dict() for day in sorted(days)}
                for store, days in sorted(self.days.items())
            },
            "stock": stock,
        }
        if self.anomalies:
            truth["anomalies"] = [anomaly.to_dict() for anomaly in self.anomalies]
        return truth

    def to_json(self, indent: int | None = 2) -> str:
        """JSON with money as decimal strings (exact), days as ISO dates."""
        return json.dumps(self.to_dict(), indent=indent)

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write ``to_json()`` atomically (a reader never sees half a file)."""
        target = Path(path)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_text(self.to_json() + "\n")
        partial.replace(target)


# --- the simulator -----------------------------------------------------------------------------


def _ms(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError(f"{when!r} has no timezone; use an aware datetime (UTC)")
    return (when - EPOCH) // timedelta(milliseconds=1)


def _dt(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def _poisson(rng: random.Random, mean: float) -> int:
    """Poisson sample (Knuth below 30, normal approximation above: both exact enough here)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def expected_events(model: BusinessModel, start: datetime, end: datetime, rate: float) -> float:
    """About how many events ``Simulator(model, seed, start, rate)`` hands out in [start, end):
    the calibrated traffic plus the stock counts (the start snapshot, one per opening). Sizes a
    backfill without running it."""
    weights = sum(store.traffic_weight for store in model.stores)
    total = float(len(model.stores) * len(model.catalogue))
    for store in model.stores:
        share = store.traffic_weight / weights
        total += rate * share * _peak_seconds(model.seasonality, store, start, end)
        total += len(model.catalogue) * _openings(store, start, end)
        total += len(SOCIAL_CHANNELS) * _quarter_hours(start, end)
    return total


def _quarter_hours(start: datetime, end: datetime) -> int:
    """Social reports in [start, end): one per quarter hour after the start."""
    return max(0, (_ms(end) - 1) // SOCIAL_INTERVAL - _ms(start) // SOCIAL_INTERVAL)


def _peak_seconds(seasonality: Seasonality, store: Store, start: datetime, end: datetime) -> float:
    """Seconds of [start, end) weighted, hour by hour, by the store's share of web and in-store
    traffic relative to the weekly peak (in store only while it is open)."""
    seconds, moment = 0.0, start
    while moment < end:
        step = min(end, moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1))
        local = moment.astimezone(store.tz)
        weekday, hour = local.weekday(), local.hour
        intensity = WEB_SHARE * seasonality.web_intensity(weekday, hour)
        if store.is_open(moment):
            intensity += (1 - WEB_SHARE) * seasonality.store_intensity(weekday, hour)
        seconds += intensity * (step - moment).total_seconds()
        moment = step
    return seconds


def _openings(store: Store, start: datetime, end: datetime) -> int:
    first, last = (moment.astimezone(store.tz).date() for moment in (start, end))
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    windows = (store.open_on(day) for day in days)
    return sum(1 for window in windows if window is not None and start <= window[0] < end)


class Simulator:
    """Generates the model's events over simulated time, from ``start`` (UTC) onwards.

    ``rate`` is roughly the number of events per simulated second at the busiest hour of the
    week (all stores); the default is a busy small business. Above ``STOCK_REFERENCE_RATE``
    stock quantities are scaled with it (see ``reorder_points``). ``acceleration`` is simulated
    seconds per wall second, used by ``window()`` for real-time loops. ``late_fraction`` of
    in-store POS events (sales, refunds) are emitted minutes to hours after they occurred, as
    from a POS that was offline; ``malformed_fraction`` of the records from
    ``raw_records_between`` are invalid. Simulators that feed one pipeline can share one
    ``ground_truth`` (as the pipeline shares its tables).
    """

    def __init__(
        self,
        model: BusinessModel,
        seed: int,
        start: datetime,
        rate: float = 0.2,
        acceleration: float = 60.0,
        *,
        late_fraction: float = 0.0,
        malformed_fraction: float = 0.0,
        ground_truth: GroundTruth | None = None,
        anomalies: Sequence[Anomaly] = (),
    ) -> None:
        if rate <= 0 or acceleration <= 0:
            raise ValueError("rate and acceleration must be > 0")
        if not 0 <= late_fraction <= 1 or not 0 <= malformed_fraction <= 0.5:
            raise ValueError("late_fraction must be in [0, 1] and malformed_fraction in [0, 0.5]")
        self.model, self.seed, self.rate, self.acceleration = model, seed, rate, acceleration
        self.late_fraction, self.malformed_fraction = late_fraction, malformed_fraction
        start_ms = _ms(start)  # rejects a naive start
        self.start = _dt(start_ms)
        self.ground_truth = GroundTruth.for_model(model) if ground_truth is None else ground_truth
        for anomaly in anomalies:
            model.store(anomaly.store_id)  # an unknown store raises, naming the known ones
        self.anomalies = tuple(anomalies)
        self.ground_truth.anomalies.extend(anomalies)
        # The start is part of the seed: two runs started at different times must not share
        # event ids, or consumers would drop the second run's events as duplicates.
        self._seed_text = f"storepulse-sim:{seed}:{start_ms}"
        self._rng = random.Random(self._seed_text)
        self._late_rng = random.Random(f"{self._seed_text}:late")
        self._bad_rng = random.Random(f"{self._seed_text}:malformed")
        self._social_rng = random.Random(
            f"{self._seed_text}:social"
        )  # the others stay as they were
        # A malformed record follows a valid one with probability p / (1 - p), so that p is
        # the share of malformed records among all records.
        self._bad_odds = malformed_fraction / (1 - malformed_fraction)
        self._bursts = 0
        self._now = self._clock = start_ms
        self._heap: list[tuple[int, int, int, Process]] = []
        self._seq = itertools.count()
        self._out: deque[Event | MalformedRecord] = deque()
        self._setup_state()
        self._schedule_actors(start_ms)

    # --- public API ----------------------------------------------------------------------------

    @property
    def clock(self) -> datetime:
        """The simulated time up to which events have been handed out."""
        return _dt(self._clock)

    @property
    def stock(self) -> dict[tuple[str, str], int]:
        """Simulated on-hand units per (store_id, sku) at ``clock`` (including sales whose
        late event is not handed out yet)."""
        return dict(self._stock)

    def window(self, wall_seconds: float = 1.0) -> tuple[datetime, datetime]:
        """The next ``wall_seconds * acceleration`` simulated seconds, from ``clock``."""
        span = timedelta(milliseconds=round(wall_seconds * self.acceleration * SECOND))
        return self.clock, self.clock + span

    def events_between(self, start: datetime, end: datetime) -> Iterator[Event]:
        """Valid events emitted in [start, end), in emission order (= occurred_at order unless
        ``late_fraction`` delays some). Windows must not go back in time; events before
        ``start`` that were never handed out are skipped."""
        items = self._items_between(start, end)
        return (item for item in items if isinstance(item, Event))

    def raw_records_between(self, start: datetime, end: datetime) -> Iterator[tuple[bytes, str]]:
        """(payload, partition key) for every record in [start, end): valid events as
        ``to_json()`` plus the malformed records, for a producer's ``send_raw``."""
        items = self._items_between(start, end)
        return (
            (item.to_json(), partition_key(item))
            if isinstance(item, Event)
            else (item.payload, item.partition_key)
            for item in items
        )

    def burst(
        self,
        store_id: str,
        kind: BurstKind = "traffic",
        size: int = 500,
        *,
        at: datetime | None = None,
        duration: float = 60.0,
    ) -> Iterator[Event]:
        """A traffic spike at ``at`` (default: ``clock``) over ``duration`` seconds.

        ``size`` page views ("web"), door counts of ``size`` entries in total ("foot", only
        while the store is open) or both with a fifth of the entries ("traffic"). A burst is
        traffic only: it leaves stock and the regular stream untouched, but its events are
        added to the ground truth as they are handed out.
        """
        store = self.model.store(store_id)
        if kind not in ("traffic", "web", "foot") or size < 1 or duration <= 0:
            raise ValueError("kind must be traffic, web or foot; size and duration must be > 0")
        start_ms = self._clock if at is None else _ms(at)
        rng = random.Random(f"{self._seed_text}:burst:{start_ms}:{self._bursts}")
        self._bursts += 1
        span = max(SECOND, round(duration * SECOND))
        events: list[Event] = []
        if kind in ("traffic", "web"):
            events += _BurstMaker(self, rng, store).page_views(start_ms, span, size)
        if kind in ("traffic", "foot"):
            entries = size if kind == "foot" else max(1, size // 5)
            events += _BurstMaker(self, rng, store).foot_traffic(start_ms, span, entries)
        events.sort(key=lambda event: event.occurred_at)
        return self._hand_out(events)

    # --- the event loop ------------------------------------------------------------------------

    def _hand_out(self, events: list[Event]) -> Iterator[Event]:
        for event in events:
            self.ground_truth.record(event)
            yield event

    def _items_between(self, start: datetime, end: datetime) -> Iterator[Event | MalformedRecord]:
        start_ms, end_ms = _ms(start), _ms(end)
        if end_ms < start_ms:
            raise ValueError(f"window [{start}, {end}) ends before it starts")
        if start_ms < self._clock:
            raise ValueError(
                f"window [{start}, {end}) goes back in time: events were handed out up to "
                f"{self.clock}"
            )
        return self._pull(start_ms, end_ms)

    def _pull(self, start_ms: int, end_ms: int) -> Iterator[Event | MalformedRecord]:
        """Run the processes due before ``end_ms``, handing out what they emit from
        ``start_ms`` on. Stepping one process at a time (no look-ahead) keeps the state, e.g.
        ``stock``, exactly at the end of the window."""
        heap = self._heap
        while True:
            while self._out:
                item = self._out.popleft()
                if self._now >= start_ms:
                    if isinstance(item, Event):
                        self.ground_truth.record(item)
                    yield item
            if not heap or heap[0][0] >= end_ms:
                break
            self._step()
            self._clock = max(self._clock, self._now)
        self._clock = end_ms

    def _step(self) -> None:
        at, priority, _, process = heapq.heappop(self._heap)
        self._now = at
        wait = next(process, None)
        if wait is not None:
            if wait < 0:
                raise RuntimeError(f"a simulated process waited {wait} ms (a bug)")
            heapq.heappush(self._heap, (at + wait, priority, next(self._seq), process))

    def _spawn(self, at: int, process: Process, priority: int = 1) -> None:
        """Start ``process`` at ``at``; priority 0 runs first at equal times (store clocks)."""
        heapq.heappush(self._heap, (max(at, self._now), priority, next(self._seq), process))

    def _emit(self, event: Event, *, may_be_late: bool = False) -> None:
        if may_be_late and self.late_fraction and self._late_rng.random() < self.late_fraction:
            self._spawn(self._now + self._late_rng.randint(*LATE_DELAY_MS), self._deliver(event))
        else:
            self._release(event)

    def _deliver(self, event: Event) -> Process:
        self._release(event)
        yield from ()

    def _release(self, event: Event) -> None:
        self._out.append(event)
        if self._bad_odds and self._bad_rng.random() < self._bad_odds:
            self._out.append(_malformed(self._bad_rng, event, self.model))

    # --- state ---------------------------------------------------------------------------------

    def _setup_state(self) -> None:
        model = self.model
        self._products = list(model.catalogue)
        self._product_cum = list(itertools.accumulate(p.popularity for p in self._products))
        scale = max(1.0, self.rate / STOCK_REFERENCE_RATE)
        keys = [(store.store_id, p) for store in model.stores for p in model.catalogue]
        self._stock = {(s, p.sku): round(p.stock_for(s) * scale) for s, p in keys}
        self._restock_to = dict(self._stock)
        self.reorder_points = {(s, p.sku): round(p.reorder_point * scale) for s, p in keys}
        self._pending_restock: dict[tuple[str, str], int] = {}  # demand since the order
        self._seen_customers: set[str] = set()
        self._employees = {s.store_id: model.employees_of(s.store_id) for s in model.stores}
        self._zones = {store.store_id: store.tz for store in model.stores}
        self._windows: dict[tuple[str, date], tuple[int, int] | None] = {}
        self._entries = {sensor: 0 for store in model.stores for sensor in store.sensors}
        self._exits = dict(self._entries)
        self._customer_pools = self._build_customer_pools()

    def _build_customer_pools(self) -> dict[str | None, tuple[list[Customer], list[float]]]:
        pools: dict[str | None, tuple[list[Customer], list[float]]] = {}
        for store_id in [None, *(s.store_id for s in self.model.stores)]:
            members = [c for c in self.model.customers if store_id in (None, c.home_store_id)]
            members = members or list(self.model.customers)
            weights = list(itertools.accumulate(c.visit_weight for c in members))
            pools[store_id] = (members, weights)
        return pools

    def _schedule_actors(self, start_ms: int) -> None:
        total_weight = sum(store.traffic_weight for store in self.model.stores)
        self._spawn(start_ms, self._snapshot(), priority=0)
        for store in self.model.stores:
            share = self.rate * store.traffic_weight / total_weight * TICK / SECOND
            visitors = share * (1 - WEB_SHARE) / EVENTS_PER_VISITOR
            sessions = share * WEB_SHARE / EVENTS_PER_SESSION
            self._spawn(start_ms, self._store_days(store), priority=0)
            self._spawn(start_ms, self._visitor_arrivals(store, visitors))
            self._spawn(start_ms, self._session_arrivals(store, sessions))
            self._spawn(start_ms, self._social_accounts(store, share * WEB_SHARE / TICK * SECOND))

    def _local(self, store: Store, at: int) -> datetime:
        return datetime.fromtimestamp(at / SECOND, self._zones[store.store_id])

    def _window_on(self, store: Store, day: date) -> tuple[int, int] | None:
        """Opening and closing time (UTC ms) of ``store`` on its local ``day``."""
        key = (store.store_id, day)
        if key not in self._windows:
            window = store.open_on(day)
            self._windows[key] = None if window is None else (_ms(window[0]), _ms(window[1]))
        return self._windows[key]

    def _next_window(self, store: Store, at: int) -> tuple[int, int]:
        """The opening window that contains ``at`` or comes next."""
        day = self._local(store, at).date()
        for offset in range(8):
            window = self._window_on(store, day + timedelta(days=offset))
            if window is not None and window[1] > at:
                return window
        raise ValueError(f"store {store.store_id} is never open")

    def _open_moment(self, store: Store, at: int, spread: int) -> int:
        """A time at or after ``at`` when the store is open, up to ``spread`` ms into it."""
        opens, closes = self._next_window(store, at)
        moment = max(at, opens) + self._rng.randint(0, spread)
        if moment >= closes - MINUTE:
            opens, closes = self._next_window(store, closes)
            moment = min(opens + self._rng.randint(0, spread), closes - MINUTE)
        return moment

    def _envelope(self, store: Store, source: str) -> dict[str, Any]:
        return {
            "event_id": str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
            "store_id": store.store_id,
            "occurred_at": _dt(self._now),
            "source": source,
        }

    def _anomaly_factor(self, store: Store, kinds: frozenset[str]) -> float:
        """1.0 (exactly) unless an injected anomaly of ``kinds`` is active now."""
        if not self.anomalies:
            return 1.0
        return anomaly_factors.factor(self.anomalies, kinds, store.store_id, _dt(self._now))

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{self._rng.getrandbits(48):012x}"

    def _pick_product(self) -> Product:
        return self._rng.choices(self._products, cum_weights=self._product_cum)[0]

    def _pick_customer(self, store: Store) -> Customer:
        pool = store.store_id if self._rng.random() < 0.7 else None
        members, weights = self._customer_pools[pool]
        customer = self._rng.choices(members, cum_weights=weights)[0]
        self._introduce(customer, store)
        return customer

    def _introduce(self, customer: Customer, store: Store) -> None:
        """The CRM sends a profile the first time a customer shows up."""
        if customer.customer_id in self._seen_customers:
            return
        self._seen_customers.add(customer.customer_id)
        self._emit(
            CrmCustomerProfileV1(
                **self._envelope(store, "crm"),
                customer_id=customer.customer_id,
                age_band=customer.age_band,
                region=customer.region,
                segment=customer.segment,
            )
        )

    # --- stock ---------------------------------------------------------------------------------

    def _take(self, store: Store, product: Product, wanted: int) -> int:
        """Remove up to ``wanted`` units; the shortfall is lost demand (an empty shelf)."""
        key = (store.store_id, product.sku)
        taken = min(wanted, self._stock[key])
        self._stock[key] -= taken
        if key in self._pending_restock:
            self._pending_restock[key] += wanted
        self._check_reorder(store, product)
        return taken

    def _check_reorder(self, store: Store, product: Product) -> None:
        """At the reorder point, order once; the delivery comes hours later, in opening hours,
        so the shelf really runs low (and sometimes empty) meanwhile."""
        key = (store.store_id, product.sku)
        if key in self._pending_restock or self._stock[key] > self.reorder_points[key]:
            return
        self._pending_restock[key] = 0
        delivery = self._open_moment(store, self._now + self._rng.randint(4, 28) * HOUR, HOUR)
        self._spawn(delivery, self._restock(store, product))

    def _restock(self, store: Store, product: Product) -> Process:
        """Delivery of an order placed at the reorder point: back to the shelf's capacity, plus
        what was asked for meanwhile (so restocks grow with demand at high rates)."""
        key = (store.store_id, product.sku)
        demand = self._pending_restock.pop(key)
        delta = max(0, self._restock_to[key] - self._stock[key]) + demand
        if delta > 0:
            self._adjust(store, product, delta, "restock", "erp")
        yield from ()

    def _adjust(self, store: Store, product: Product, delta: int, reason: str, source: str) -> None:
        self._stock[(store.store_id, product.sku)] += delta
        self._emit(
            InventoryAdjustmentV1(
                **self._envelope(store, source), sku=product.sku, delta=delta, reason=reason
            )
        )

    def _stock_take(self, store: Store) -> None:
        for product in self._products:
            self._emit(
                InventoryStockLevelV1(
                    **self._envelope(store, "stock-take"),
                    sku=product.sku,
                    quantity_on_hand=self._stock[(store.store_id, product.sku)],
                )
            )

    def _snapshot(self) -> Process:
        """The inventory system's full count when the simulation starts (the baseline)."""
        for store in self.model.stores:
            self._stock_take(store)
        yield from ()

    def _shrinkage(self, store: Store) -> Process:
        product = self._pick_product()
        if self._stock[(store.store_id, product.sku)] > 0:
            self._adjust(store, product, -1, "shrinkage", "stock-take")
            self._check_reorder(store, product)
        yield from ()

    # --- stores --------------------------------------------------------------------------------

    def _store_days(self, store: Store) -> Process:
        """Opening: stock take, then a door count every 5 minutes until closing."""
        while True:
            opens, closes = self._next_window(store, self._now)
            if opens >= self._now:
                yield opens - self._now
                self._open_store(store, opens, closes)
                previous = opens
            else:  # started mid-day: the start snapshot stands in for the stock take
                previous = opens + (self._now - opens) // FOOT_TRAFFIC_INTERVAL * (
                    FOOT_TRAFFIC_INTERVAL
                )
            while previous < closes:
                end = min(previous + FOOT_TRAFFIC_INTERVAL, closes)
                yield end - self._now
                self._count_doors(store, (end - previous) // SECOND)
                previous = end

    def _open_store(self, store: Store, opens: int, closes: int) -> None:
        for sensor in store.sensors:
            self._entries[sensor] = self._exits[sensor] = 0
        self._stock_take(store)
        if self._rng.random() < SHRINKAGE_PER_DAY:
            self._spawn(self._rng.randint(opens + HOUR, closes - HOUR), self._shrinkage(store))

    def _count_doors(self, store: Store, interval_seconds: int) -> None:
        for sensor in store.sensors:
            self._emit(
                StoreFootTrafficV1(
                    **self._envelope(store, sensor),
                    sensor_id=sensor,
                    entries=self._entries[sensor],
                    exits=self._exits[sensor],
                    interval_seconds=max(1, interval_seconds),
                )
            )
            self._entries[sensor] = self._exits[sensor] = 0

    def _social_accounts(self, store: Store, web_per_second_at_peak: float) -> Process:
        """Every 15 minutes (on the quarter hour), each channel's activity since the last report,
        drawn from its own random stream (the other events do not change)."""
        rng, seasonality = self._social_rng, self.model.seasonality
        yield SOCIAL_INTERVAL - self._now % SOCIAL_INTERVAL
        while True:
            local = self._local(store, self._now)
            web = web_per_second_at_peak * seasonality.web_intensity(local.weekday(), local.hour)
            engaged = web * SOCIAL_INTERVAL / SECOND * SOCIAL_PER_WEB_EVENT
            for channel, weight in zip(SOCIAL_CHANNELS, SOCIAL_CHANNEL_WEIGHTS, strict=True):
                engagements = _poisson(rng, engaged * weight)
                self._emit(
                    SocialMetricsV1(
                        event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                        store_id=store.store_id,
                        occurred_at=_dt(self._now),
                        source=f"{channel}-api",
                        channel=channel,
                        mentions=_poisson(rng, engagements * SOCIAL_MENTIONS),
                        followers_gained=_poisson(rng, engagements * SOCIAL_GAINED),
                        followers_lost=_poisson(rng, engagements * SOCIAL_LOST),
                        engagements=engagements,
                        interval_seconds=SOCIAL_INTERVAL // SECOND,
                    )
                )
            yield SOCIAL_INTERVAL

    def _visitor_arrivals(self, store: Store, per_minute_at_peak: float) -> Process:
        """Walk-ins, minute by minute, only while the store is open."""
        seasonality = self.model.seasonality
        while True:
            opens, closes = self._next_window(store, self._now)
            if self._now < opens:
                yield opens - self._now
            last_entry = closes - LAST_ENTRY
            while self._now < last_entry:
                end = min(self._now + TICK, last_entry)
                local = self._local(store, self._now)
                intensity = seasonality.store_intensity(local.weekday(), local.hour)
                mean = per_minute_at_peak * intensity * (end - self._now) / TICK
                mean *= self._anomaly_factor(store, anomaly_factors.TRAFFIC_KINDS)
                for _ in range(_poisson(self._rng, mean)):
                    arrival = self._rng.randrange(self._now, end)
                    self._spawn(arrival, self._visitor(store, closes))
                yield end - self._now
            yield closes - self._now

    def _visitor(self, store: Store, closes: int) -> Process:
        """One walk-in: counted at the door, maybe buys, leaves before closing."""
        rng = self._rng
        sensor = rng.choice(store.sensors)
        self._entries[sensor] += 1
        leave = min(self._now + rng.randint(3, 25) * MINUTE, closes - SECOND)
        if rng.random() < IN_STORE_CONVERSION:
            checkout = self._now + int((leave - self._now) * rng.uniform(0.5, 0.95))
            yield checkout - self._now
            self._in_store_sale(store)
        yield max(0, leave - self._now)
        self._exits[sensor] += 1

    def _basket(self, store: Store, lines: int) -> list[SaleLine]:
        chosen: dict[str, SaleLine] = {}
        for _ in range(lines):
            product = self._pick_product()
            if product.sku in chosen:
                continue
            wanted = self._rng.choices((1, 2, 3), cum_weights=QUANTITY_CUM_WEIGHTS)[0]
            taken = self._take(store, product, wanted)
            if taken:
                chosen[product.sku] = _line(product, taken)
        return list(chosen.values())

    def _in_store_sale(self, store: Store) -> None:
        rng = self._rng
        lines = self._basket(store, rng.choices((1, 2, 3, 4), cum_weights=LINES_CUM_WEIGHTS)[0])
        if not lines:
            return  # everything wanted was out of stock
        customer = self._pick_customer(store) if rng.random() < LOYALTY_SHARE else None
        sale = PosSaleV1(
            **self._envelope(store, rng.choice(store.terminals)),
            order_id=self._new_id("o"),
            channel="in_store",
            currency=store.currency,
            customer_id=customer.customer_id if customer else None,
            employee_id=rng.choice(self._employees[store.store_id]).employee_id,
            lines=tuple(lines),
        )
        self._emit(sale, may_be_late=True)
        self._maybe_refund(store, sale)

    # --- refunds -------------------------------------------------------------------------------

    def _maybe_refund(self, store: Store, sale: PosSaleV1) -> None:
        if self._rng.random() >= REFUND_RATE:
            return
        delay = HOUR + min(int(self._rng.expovariate(1 / (36 * HOUR))), 10 * DAY)
        at = self._now + delay
        if sale.channel == "in_store":  # brought back to the shop, so while it is open
            at = self._open_moment(store, at, 3 * HOUR)
        self._spawn(at, self._refund(store, sale))

    def _refund(self, store: Store, sale: PosSaleV1) -> Process:
        rng = self._rng
        lines = [(line, line.quantity) for line in sale.lines]
        if rng.random() >= FULL_REFUND:
            lines = [(line, rng.randint(1, line.quantity)) for line in sale.lines]
            lines = [item for item in lines if rng.random() < 0.5] or [rng.choice(lines)]
        reason = rng.choice(REFUND_REASONS)
        source = "webshop" if sale.channel == "online" else rng.choice(store.terminals)
        refund = PosRefundV1(
            **self._envelope(store, source),
            refund_id=self._new_id("r"),
            order_id=sale.order_id,
            currency=sale.currency,
            amount=sum((line.unit_price * qty for line, qty in lines), _ZERO),
            lines=tuple(RefundLine(sku=line.sku, quantity=qty) for line, qty in lines),
            reason=reason,
        )
        self._emit(refund, may_be_late=sale.channel == "in_store")
        if reason in RESTOCKABLE_REASONS:
            for line, qty in lines:
                self._adjust(store, self.model.product(line.sku), qty, "return", source)
        yield from ()

    # --- web -----------------------------------------------------------------------------------

    def _session_arrivals(self, store: Store, per_minute_at_peak: float) -> Process:
        """Web sessions for the store's webshop, 24/7 with the web seasonality."""
        seasonality = self.model.seasonality
        while True:
            local = self._local(store, self._now)
            intensity = seasonality.web_intensity(local.weekday(), local.hour)
            intensity *= self._anomaly_factor(store, anomaly_factors.TRAFFIC_KINDS)
            for _ in range(_poisson(self._rng, per_minute_at_peak * intensity)):
                arrival = self._rng.randrange(self._now, self._now + TICK)
                self._spawn(arrival, self._session(store))
            yield TICK

    def _session(self, store: Store) -> Process:
        """Browse a few pages, maybe add to cart, check out, pay; or abandon on the way."""
        visit = _WebVisit(self, store)
        pages = 1 + min(int(self._rng.expovariate(0.55)), 14)
        for page in range(pages):
            if page:
                yield self._rng.randint(8, 120) * SECOND
            visit.browse()
        if not visit.cart or self._rng.random() >= CHECKOUT:
            return  # no cart, or an abandoned one
        yield self._rng.randint(20, 180) * SECOND
        visit.check_out()
        paid = PURCHASE * self._anomaly_factor(store, _COLLAPSE)
        if self._rng.random() >= paid:
            return
        yield self._rng.randint(30, 300) * SECOND
        sale = visit.pay()
        if sale is not None:
            self._maybe_refund(store, sale)


class _WebVisit:
    """State of one web session; the session process decides when each step happens."""

    def __init__(self, sim: Simulator, store: Store) -> None:
        rng = sim._rng
        self.sim, self.store = sim, store
        self.session_id = sim._new_id("ws")
        self.device = rng.choices(DEVICES, cum_weights=DEVICE_CUM_WEIGHTS)[0]
        self.customer = sim._pick_customer(store) if rng.random() < LOGGED_IN_SHARE else None
        self.referrer = rng.choice(REFERRERS)
        self.cart: dict[str, tuple[Product, int]] = {}

    def _web(self) -> dict[str, Any]:
        envelope = self.sim._envelope(self.store, "webshop")
        return {**envelope, "session_id": self.session_id, "device": self.device}

    def _view(self, page: str) -> None:
        self.sim._emit(
            WebPageViewV1(
                **self._web(),
                page=page,
                referrer=self.referrer,
                customer_id=self.customer.customer_id if self.customer else None,
            )
        )
        self.referrer = None  # only the landing page has an external referrer

    def browse(self) -> None:
        sim, rng = self.sim, self.sim._rng
        roll = rng.random()
        if roll < 0.1:
            self._view("/")
        elif roll < 0.35:
            self._view(f"/c/{sim._pick_product().category}")
        else:
            product = sim._pick_product()
            self._view(f"/p/{product.sku.lower()}")
            if rng.random() < ADD_TO_CART and sim._stock[(self.store.store_id, product.sku)]:
                self._add(product, rng.choices((1, 2, 3), cum_weights=QUANTITY_CUM_WEIGHTS)[0])

    def _add(self, product: Product, quantity: int) -> None:
        _, before = self.cart.get(product.sku, (product, 0))
        self.cart[product.sku] = (product, before + quantity)
        self.sim._emit(
            WebAddToCartV1(
                **self._web(), sku=product.sku, quantity=quantity, unit_price=product.unit_price
            )
        )

    def check_out(self) -> None:
        self._view("/checkout")
        value = sum((p.unit_price * q for p, q in self.cart.values()), _ZERO)
        self.sim._emit(WebCheckoutStartedV1(**self._web(), cart_value=value))

    def pay(self) -> PosSaleV1 | None:
        """The payment: a funnel ``web.purchase`` and the revenue-carrying online ``pos.sale``."""
        sim = self.sim
        lines = [
            _line(product, taken)
            for product, quantity in self.cart.values()
            if (taken := sim._take(self.store, product, quantity))
        ]
        if not lines:
            return None  # sold out meanwhile: the order cannot be placed
        customer = self.customer or sim._pick_customer(self.store)  # guests sign up to pay
        order_id = sim._new_id("o")
        sim._emit(WebPurchaseV1(**self._web(), order_id=order_id))
        sale = PosSaleV1(
            **sim._envelope(self.store, "webshop"),
            order_id=order_id,
            channel="online",
            currency=self.store.currency,
            customer_id=customer.customer_id,
            lines=tuple(lines),
        )
        sim._emit(sale)
        return sale


class _BurstMaker:
    """Builds a burst's events with its own random stream (the regular stream is untouched)."""

    def __init__(self, sim: Simulator, rng: random.Random, store: Store) -> None:
        self.sim, self.rng, self.store = sim, rng, store

    def _envelope(self, at: int, source: str) -> dict[str, Any]:
        return {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "store_id": self.store.store_id,
            "occurred_at": _dt(at),
            "source": source,
        }

    def page_views(self, start: int, span: int, size: int) -> list[Event]:
        """A promotion went viral: sessions land on /promo and look at a product or two."""
        rng, events = self.rng, []
        products = [p.sku.lower() for p in self.sim.model.catalogue]
        while len(events) < size:
            session = f"ws-{rng.getrandbits(48):012x}"
            device = rng.choices(DEVICES, cum_weights=DEVICE_CUM_WEIGHTS)[0]
            at = start + rng.randrange(span)
            for view in range(min(rng.randint(1, 3), size - len(events))):
                events.append(
                    WebPageViewV1(
                        **self._envelope(min(at, start + span - 1), "webshop"),
                        session_id=session,
                        device=device,
                        page="/promo" if view == 0 else f"/p/{rng.choice(products)}",
                        referrer="https://www.instagram.com/" if view == 0 else None,
                    )
                )
                at += rng.randint(2, 15) * SECOND
        return events

    def foot_traffic(self, start: int, span: int, entries: int) -> list[Event]:
        """A crowd at the doors: one count per sensor and minute, while the store is open."""
        ends = range(start + MINUTE, start + span + MINUTE, MINUTE)
        is_open = self.store.is_open
        minutes = [m for m in ends if is_open(_dt(m - MINUTE)) and is_open(_dt(m - 1))]
        if not minutes:
            return []
        slots = len(minutes) * len(self.store.sensors)
        events: list[Event] = []
        for i, (at, sensor) in enumerate(itertools.product(minutes, self.store.sensors)):
            count = entries // slots + (1 if i < entries % slots else 0)
            events.append(
                StoreFootTrafficV1(
                    **self._envelope(at, sensor),
                    sensor_id=sensor,
                    entries=count,
                    exits=self.rng.randint(count // 2, count),
                    interval_seconds=60,
                )
            )
        return events


def _line(product: Product, quantity: int) -> SaleLine:
    return SaleLine(
        sku=product.sku, category=product.category, quantity=quantity, unit_price=product.unit_price
    )


def _malformed(rng: random.Random, event: Event, model: BusinessModel) -> MalformedRecord:
    """An invalid record shaped like ``event``: truncated, of an unknown schema, or a sale with
    a negative quantity (the three failures the quarantine must tell apart)."""
    kind = rng.choice(MALFORMED_KINDS)
    event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    data = json.loads(event.to_json())
    data["event_id"] = event_id
    if kind == "truncated":
        whole = json.dumps(data, separators=(",", ":")).encode()
        return MalformedRecord(whole[: rng.randint(1, len(whole) - 1)], partition_key(event), kind)
    if kind == "unknown_schema":
        data["schema"] = rng.choice(UNKNOWN_SCHEMAS)
        payload = json.dumps(data, separators=(",", ":")).encode()
        return MalformedRecord(payload, partition_key(event), kind)
    product = rng.choice(model.catalogue)
    sale = {
        "schema": "pos.sale",
        "version": 1,
        "event_id": event_id,
        "store_id": event.store_id,
        "occurred_at": data["occurred_at"],
        "order_id": f"o-{rng.getrandbits(48):012x}",
        "channel": "in_store",
        "currency": model.currency,
        "lines": [
            {
                "sku": product.sku,
                "category": product.category,
                "quantity": -rng.randint(1, 3),
                "unit_price": str(product.unit_price),
            }
        ],
    }
    return MalformedRecord(json.dumps(sale, separators=(",", ":")).encode(), event.store_id, kind)
