"""Today's numbers, read from the aggregates the stream processor keeps in DynamoDB.

Definitions (the API documents them too):

- **Today** is the business day of the scope: the store's local date, or the business's (its
  time zone) for all stores. **So far** means up to ``as_of``: the newer of the clock and the
  newest minute that has data. Buckets follow event time, so a device clock running ahead (or
  the accelerated demo simulator) moves the dashboard forward instead of hiding its events;
  when the newest data is on a later local date than the clock's, that date is today.
- **Comparisons** are the same local time on the day before and on the same weekday a week
  before: the hour buckets before the cut-off hour plus the minute buckets of the cut-off hour
  up to the cut-off minute (the same sum as all the minutes, from ~80 items instead of ~1,440).
  Today itself is every hour bucket of the day (nothing is later than ``as_of``).
- **KPIs**: revenue, orders, units, refunds, refund amount, page views and foot traffic are the
  counters; visitors = sessions; average order value = revenue / orders; conversion rate =
  purchases / sessions; cart abandonment = 1 - purchases / checkouts started, the share of
  started checkouts that did not end in a purchase (floored at 0: a purchase may complete a
  checkout started the day before). A ratio without a denominator is null, and so is a change
  against a zero.
- **Stock cover**: days of cover = on hand / average daily units sold over the 7 complete days
  before today (the store's sales mix); null when nothing sold (no end in sight). An item is
  low when on hand <= the product's reorder point. Low items come first, then by cover.

Reads: the layout gives every bucket's key, so buckets are fetched by key (BatchGetItem), whose
cost does not grow with the table; only a store's stock, the alert log and a day's spilled mix
parts are queries. ``LiveDashboard`` caches what a refresh every 2 s would read again unchanged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final, Literal, Protocol

import boto3
from boto3.dynamodb.conditions import Key as KeyCondition
from pydantic import BaseModel, Field

from storepulse import aws
from storepulse.clock import Clock, system_clock
from storepulse.config import settings
from storepulse.layout import (
    COUNTERS,
    MAX_COUNTERS_PER_WRITE,
    Key,
    Table,
    comparison_cutoffs,
    day_start,
    local_date,
    mix_key,
    scope,
    table_name,
    utc_hour,
    utc_minute,
    zone,
)
from storepulse.settings import KPI_CATALOGUE, Catalog
from storepulse.stream.batch_io import batch_get

Item = Mapping[str, Any]
Unit = Literal["money", "count", "ratio"]

COVER_DAYS: Final = 7
TOP_PRODUCTS: Final = 10
ALERT_LIMIT: Final = 20
DEFAULT_KPIS: Final = (
    "revenue",
    "orders",
    "average_order_value",
    "visitors",
    "conversion_rate",
    "foot_traffic",
)
_CENT, _RATIO, _CHANGE, _TENTH = (Decimal(s) for s in ("0.01", "0.000001", "0.0001", "0.1"))
_ZERO = Decimal(0)
METRICS, INVENTORY, FACTS = Table.METRICS, Table.INVENTORY, Table.FACTS

# --- DynamoDB access ---------------------------------------------------------------------------


class ThreadLocalTable:
    """A boto3 ``Table`` that many threads can use: one resource per thread, since boto3
    resources are not thread-safe and FastAPI runs sync endpoints on a thread pool."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._local = threading.local()

    @property
    def resource(self) -> Any:
        resource = getattr(self._local, "resource", None)
        if resource is None:
            session = boto3.session.Session()
            resource = self._local.resource = session.resource(
                "dynamodb", region_name=settings().region, config=aws.DEFAULT_CONFIG
            )
        return resource

    def __getattr__(self, attribute: str) -> Any:
        table = getattr(self._local, "table", None)
        if table is None:
            table = self._local.table = self.resource.Table(self.name)
        return getattr(table, attribute)


class LiveReader(Protocol):
    """The two reads the dashboard makes. Keys are computed from the layout wherever possible:
    a lookup by key costs the same whatever the table's size, on DynamoDB and the embedded AWS
    alike (whose queries scan the whole table)."""

    def get_many(
        self, table: Table, keys: Sequence[Key], names: Sequence[str] = ()
    ) -> dict[Key, Item]:
        """The items that exist among ``keys``; ``names``: the attributes wanted (all if
        empty; the keys always)."""
        ...

    def query(
        self,
        table: Table,
        pk: str,
        *,
        low: str | None = None,
        high: str | None = None,
        names: Sequence[str] = (),
        newest_first: bool = False,
        limit: int | None = None,
    ) -> list[Item]:
        """Items of partition ``pk`` with ``low <= sk <= high``, in sort key order."""
        ...


class DynamoLiveReader:
    """``LiveReader`` on this environment's tables."""

    def __init__(self, tables: Mapping[Table, Any]) -> None:
        self.tables = dict(tables)

    @classmethod
    def connect(cls) -> DynamoLiveReader:
        return cls({t: ThreadLocalTable(table_name(t)) for t in (METRICS, INVENTORY, FACTS)})

    def get_many(
        self, table: Table, keys: Sequence[Key], names: Sequence[str] = ()
    ) -> dict[Key, Item]:
        target = self.tables[table]
        return batch_get(target.resource, target.name, keys, names, consistent=False)

    def query(
        self,
        table: Table,
        pk: str,
        *,
        low: str | None = None,
        high: str | None = None,
        names: Sequence[str] = (),
        newest_first: bool = False,
        limit: int | None = None,
    ) -> list[Item]:
        condition = KeyCondition("pk").eq(pk)
        if low is not None or high is not None:
            condition &= KeyCondition("sk").between(low or "", high or "\U0010ffff")
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": condition,
            "ScanIndexForward": not newest_first,
        }
        if names:  # "#q": boto3 names the key condition's attributes "#n0", "#n1"
            aliases = {f"#q{i}": n for i, n in enumerate(dict.fromkeys(("pk", "sk", *names)))}
            kwargs |= {
                "ProjectionExpression": ", ".join(aliases),
                "ExpressionAttributeNames": aliases,
            }
        items: list[Item] = []
        while limit is None or len(items) < limit:
            if limit is not None:
                kwargs["Limit"] = limit - len(items)
            page = self.tables[table].query(**kwargs)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items


class TtlCache:
    """Values kept for ``seconds``; with ``refresh`` (a pool), a stale value is served while a
    fresh one loads in the background, so a slow read never sits on a request's path twice."""

    def __init__(
        self,
        seconds: float,
        refresh: ThreadPoolExecutor | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 50_000,
    ) -> None:
        self.seconds, self.refresh, self.clock, self.max_entries = (
            seconds,
            refresh,
            clock,
            max_entries,
        )
        self._entries: dict[Any, tuple[float, Any]] = {}
        self._loading: set[Any] = set()
        self._lock = threading.Lock()

    def get(self, key: Any, load: Callable[[], Any]) -> Any:
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] < self.seconds:
                return entry[1]
            serve_stale = entry is not None and self.refresh is not None
            if serve_stale and key not in self._loading:
                self._loading.add(key)
                assert self.refresh is not None
                self.refresh.submit(self._reload, key, load)
        if serve_stale:
            assert entry is not None
            return entry[1]
        value = load()
        self.put(key, value, now)
        return value

    def peek(self, key: Any) -> tuple[bool, Any]:
        """(fresh, value) without loading."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or self.clock() - entry[0] >= self.seconds:
            return False, None
        return True, entry[1]

    def put(self, key: Any, value: Any, at: float | None = None) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._evict()
            self._entries[key] = (self.clock() if at is None else at, value)

    def _reload(self, key: Any, load: Callable[[], Any]) -> None:
        try:
            self.put(key, load())
        finally:
            with self._lock:
                self._loading.discard(key)

    def _evict(self) -> None:
        """Drop expired entries, then the oldest half if that was not enough."""
        now = self.clock()
        for key in [k for k, (at, _) in self._entries.items() if now - at >= self.seconds]:
            del self._entries[key]
        if len(self._entries) >= self.max_entries:
            for key in list(self._entries)[: len(self._entries) // 2]:
                del self._entries[key]


@dataclass(frozen=True)
class Scope:
    """One store, or the whole business (``store_id`` None) with all its stores."""

    store_id: str | None
    timezone: str
    store_ids: tuple[str, ...]

    @property
    def key(self) -> str:
        return scope(self.store_id)

    @classmethod
    def of(cls, catalogue: Catalog, store_id: str | None) -> Scope:
        stores = (store_id,) if store_id else tuple(sorted(catalogue.stores))
        return cls(store_id, catalogue.timezone_of(store_id), stores)


# --- KPIs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    """Every counter of a period, summed (Decimal, as DynamoDB keeps them)."""

    values: dict[str, Decimal]

    @classmethod
    def of(cls, items: Iterable[Item]) -> Totals:
        sums = dict.fromkeys(COUNTERS, _ZERO)
        for item in items:
            for name in COUNTERS:
                if name in item:
                    sums[name] += Decimal(item[name])
        return cls(sums)

    def __getitem__(self, name: str) -> Decimal:
        return self.values[name]


def _ratio(numerator: Decimal, denominator: Decimal, step: Decimal = _RATIO) -> Decimal | None:
    if not denominator:
        return None
    return (numerator / denominator).quantize(step, rounding=ROUND_HALF_EVEN)


def _abandonment(t: Totals) -> Decimal | None:
    completed = _ratio(t["purchases"], t["checkouts"])
    return None if completed is None else max(_ZERO, 1 - completed)


@dataclass(frozen=True)
class KpiDefinition:
    id: str
    label: str
    unit: Unit
    description: str
    compute: Callable[[Totals], Decimal | None] = field(repr=False)


def _counter(name: str) -> Callable[[Totals], Decimal | None]:
    return lambda t: t[name]


KPIS: Final[dict[str, KpiDefinition]] = {
    k.id: k
    for k in (
        KpiDefinition(
            "revenue", "Revenue", "money", "sales, in store and online", _counter("revenue")
        ),
        KpiDefinition("orders", "Orders", "count", "completed sales", _counter("orders")),
        KpiDefinition(
            "average_order_value",
            "Average order",
            "money",
            "revenue / orders",
            lambda t: _ratio(t["revenue"], t["orders"], _CENT),
        ),
        KpiDefinition("units", "Units sold", "count", "items sold", _counter("units")),
        KpiDefinition("visitors", "Visitors", "count", "web sessions", _counter("sessions")),
        KpiDefinition(
            "conversion_rate",
            "Conversion",
            "ratio",
            "web purchases / sessions",
            lambda t: _ratio(t["purchases"], t["sessions"]),
        ),
        KpiDefinition(
            "cart_abandonment_rate",
            "Cart abandonment",
            "ratio",
            "1 - purchases / checkouts started",
            _abandonment,
        ),
        KpiDefinition(
            "foot_traffic",
            "Foot traffic",
            "count",
            "people entering stores",
            _counter("foot_traffic"),
        ),
        KpiDefinition("refunds", "Refunds", "count", "refunds given", _counter("refunds")),
        KpiDefinition(
            "refund_amount", "Refunded", "money", "money refunded", _counter("refund_amount")
        ),
        KpiDefinition(
            "page_views", "Page views", "count", "web pages viewed", _counter("page_views")
        ),
    )
}
assert set(KPIS) == set(KPI_CATALOGUE), "every catalogued KPI needs a definition here"


def _shown(unit: Unit, value: Decimal | None) -> Decimal | int | None:
    """Counts as integers, money to the cent, ratios as computed."""
    if value is None:
        return None
    if unit == "count":
        return int(value)
    return value.quantize(_CENT) if unit == "money" else value


def change(current: Decimal | None, previous: Decimal | None) -> Decimal | None:
    """Relative change (0.125 = +12.5 %); null against nothing or zero."""
    if current is None or previous is None or not previous:
        return None
    return ((current - previous) / previous).quantize(_CHANGE, rounding=ROUND_HALF_EVEN)


# --- response models ---------------------------------------------------------------------------

Number = Decimal | int


class KpiTile(BaseModel):
    kpi: str
    label: str
    unit: Unit
    description: str
    value: Number | None = Field(description="today so far; money as a decimal string")
    yesterday: Number | None = Field(description="yesterday up to the same local time")
    last_week: Number | None = Field(description="same weekday last week, same local time")
    change_vs_yesterday: Decimal | None = Field(description="relative: 0.125 is +12.5 %")
    change_vs_last_week: Decimal | None


class KpiReport(BaseModel):
    store_id: str | None = Field(description="null: the whole business")
    business_date: date
    timezone: str
    currency: str
    as_of: datetime = Field(description="newer of the clock and the newest minute with data")
    yesterday_cutoff: datetime
    last_week_cutoff: datetime
    tiles: list[KpiTile]


class MinutePoint(BaseModel):
    minute: datetime = Field(description="start of the UTC minute")
    revenue: Decimal
    orders: int


class MinuteSeries(BaseModel):
    start: datetime = Field(description="local midnight of the business day, in UTC")
    end: datetime = Field(description="as_of")
    points: list[MinutePoint] = Field(description="minutes with data only, in order")


class MixEntry(BaseModel):
    name: str
    label: str
    revenue: Decimal
    units: int


class SalesMix(BaseModel):
    categories: list[MixEntry]
    top_products: list[MixEntry]


class FunnelStep(BaseModel):
    step: str
    label: str
    count: int
    of_previous: Decimal | None = Field(description="count / previous step's count")


class Funnel(BaseModel):
    steps: list[FunnelStep]
    conversion_rate: Decimal | None
    cart_abandonment_rate: Decimal | None


class HourPoint(BaseModel):
    hour: datetime = Field(description="start of the UTC hour")
    label: str = Field(description="local start time, HH:MM")
    foot_traffic: int


class StockRow(BaseModel):
    store_id: str
    sku: str
    name: str
    on_hand: int
    reorder_point: int
    low: bool
    average_daily_units: Decimal
    days_of_cover: Decimal | None = Field(description="null: nothing sold in the last 7 days")


class AlertRow(BaseModel):
    sent_at: datetime
    type: str
    severity: str
    store_id: str
    title: str


class LiveSnapshot(BaseModel):
    kpis: KpiReport
    minutes: MinuteSeries
    mix: SalesMix
    funnel: Funnel
    foot_traffic: list[HourPoint]
    stock: list[StockRow]
    alerts: list[AlertRow]


# --- the business day --------------------------------------------------------------------------

LOOKAHEAD_DAYS: Final = 31  # how far past the clock's day a day with data is looked for


@dataclass(frozen=True)
class Today:
    """The business day so far, and the comparable moments."""

    day: date
    as_of: datetime
    yesterday_cutoff: datetime
    last_week_cutoff: datetime
    start: datetime  # local midnight, UTC
    hours: list[Item]  # today's hour buckets, in order (every counter)
    minutes: list[Item]  # today's minute buckets, in order (every counter)


def _parse_minute(sk: str) -> datetime:
    return datetime.strptime(sk, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)


def _parse_hour(sk: str) -> datetime:
    return datetime.strptime(sk, "%Y-%m-%dT%HZ").replace(tzinfo=UTC)


def hour_keys(scope_key: str, day: date, timezone: str) -> list[Key]:
    """The hour buckets a local day can have: every UTC hour that overlaps it."""
    start, end = day_start(day, timezone), day_start(day + timedelta(days=1), timezone)
    hour, keys = start.replace(minute=0), []
    while hour < end:
        keys.append(Key(f"{scope_key}#HOUR#{day.isoformat()}", utc_hour(hour)))
        hour += timedelta(hours=1)
    return keys


def minute_keys(
    scope_key: str, day: date, hour: datetime, until: datetime | None = None
) -> list[Key]:
    """The minute buckets of one UTC hour of a local day, up to ``until``'s minute."""
    pk = f"{scope_key}#MIN#{day.isoformat()}"
    last = 59 if until is None else min(59, int((until - hour).total_seconds() // 60))
    return [Key(pk, utc_minute(hour + timedelta(minutes=m))) for m in range(last + 1)]


def _signature(item: Item) -> tuple[Decimal, ...]:
    return tuple(Decimal(item.get(name, 0)) for name in COUNTERS)


# --- the parts of the page ---------------------------------------------------------------------


def kpi_report(
    catalogue: Catalog,
    where: Scope,
    today: Today,
    totals: tuple[Totals, Totals, Totals],
    kpis: Sequence[str],
) -> KpiReport:
    current, yesterday, last_week = totals
    tiles = []
    for kpi in kpis:
        d = KPIS[kpi]
        now, before, week = (d.compute(t) for t in (current, yesterday, last_week))
        tiles.append(
            KpiTile(
                kpi=kpi,
                label=d.label,
                unit=d.unit,
                description=d.description,
                value=_shown(d.unit, now),
                yesterday=_shown(d.unit, before),
                last_week=_shown(d.unit, week),
                change_vs_yesterday=change(now, before),
                change_vs_last_week=change(now, week),
            )
        )
    return KpiReport(
        store_id=where.store_id,
        business_date=today.day,
        timezone=where.timezone,
        currency=catalogue.currency,
        as_of=today.as_of,
        yesterday_cutoff=today.yesterday_cutoff,
        last_week_cutoff=today.last_week_cutoff,
        tiles=tiles,
    )


def minute_series(today: Today) -> MinuteSeries:
    points = [
        MinutePoint(
            minute=_parse_minute(str(m["sk"])),
            revenue=Decimal(m.get("revenue", 0)).quantize(_CENT),
            orders=int(m.get("orders", 0)),
        )
        for m in today.minutes
    ]
    return MinuteSeries(start=today.start, end=today.as_of, points=points)


def _mix_attribute(attribute: str) -> tuple[str, str, str] | None:
    """(dimension, name, counter) of ``cat|sku#<name>#revenue|units``; names may hold '#'."""
    dimension, _, rest = attribute.partition("#")
    name, _, counter = rest.rpartition("#")
    if dimension in ("cat", "sku") and name and counter in ("revenue", "units"):
        return dimension, name, counter
    return None


def mix_totals(items: Iterable[Item]) -> dict[str, dict[str, dict[str, Decimal]]]:
    """``{"cat"|"sku": {name: {"revenue": .., "units": ..}}}`` summed over the items (parts)."""
    sums: dict[str, dict[str, dict[str, Decimal]]] = {"cat": {}, "sku": {}}
    for item in items:
        for attribute, value in item.items():
            parsed = _mix_attribute(attribute)
            if parsed:
                dimension, name, counter = parsed
                entry = sums[dimension].setdefault(name, {"revenue": _ZERO, "units": _ZERO})
                entry[counter] += Decimal(value)
    return sums


def _entries(sums: dict[str, dict[str, Decimal]], label: Callable[[str], str]) -> list[MixEntry]:
    entries = [
        MixEntry(
            name=name,
            label=label(name),
            revenue=v["revenue"].quantize(_CENT),
            units=int(v["units"]),
        )
        for name, v in sums.items()
    ]
    return sorted(entries, key=lambda e: (-e.revenue, -e.units, e.name))


def sales_mix(catalogue: Catalog, items: Iterable[Item]) -> SalesMix:
    sums = mix_totals(items)

    def product_name(sku: str) -> str:
        product = catalogue.products.get(sku)
        return product.name if product else sku

    return SalesMix(
        categories=_entries(sums["cat"], str),
        top_products=_entries(sums["sku"], product_name)[:TOP_PRODUCTS],
    )


_FUNNEL: Final = (
    ("sessions", "Visits"),
    ("add_to_carts", "Added to cart"),
    ("checkouts", "Checkout started"),
    ("purchases", "Purchased"),
)


def funnel(totals: Totals) -> Funnel:
    steps: list[FunnelStep] = []
    previous: Decimal | None = None
    for name, label in _FUNNEL:
        count = totals[name]
        of_previous = None if previous is None else _ratio(count, previous)
        steps.append(FunnelStep(step=name, label=label, count=int(count), of_previous=of_previous))
        previous = count
    return Funnel(
        steps=steps,
        conversion_rate=KPIS["conversion_rate"].compute(totals),
        cart_abandonment_rate=_abandonment(totals),
    )


def foot_traffic_by_hour(hours: Iterable[Item], timezone: str) -> list[HourPoint]:
    points = []
    for item in sorted(hours, key=lambda i: str(i["sk"])):
        start = _parse_hour(str(item["sk"]))
        points.append(
            HourPoint(
                hour=start,
                label=start.astimezone(zone(timezone)).strftime("%H:%M"),
                foot_traffic=int(item.get("foot_traffic", 0)),
            )
        )
    return points


def stock_rows(
    catalogue: Catalog, store_id: str, stock: Iterable[Item], sold: Iterable[Item]
) -> list[StockRow]:
    units = {sku: v["units"] for sku, v in mix_totals(sold)["sku"].items()}
    rows = []
    for item in stock:
        sku = str(item["sk"])
        product = catalogue.products.get(sku)
        on_hand = int(item.get("on_hand", 0))
        point = product.reorder_point if product else 0
        average = (units.get(sku, _ZERO) / COVER_DAYS).quantize(_CENT)
        cover = _ratio(Decimal(on_hand), units.get(sku, _ZERO) / COVER_DAYS, _TENTH)
        rows.append(
            StockRow(
                store_id=store_id,
                sku=sku,
                name=product.name if product else sku,
                on_hand=on_hand,
                reorder_point=point,
                low=on_hand <= point,
                average_daily_units=average,
                days_of_cover=cover,
            )
        )
    return rows


def rank_stock(rows: Iterable[StockRow]) -> list[StockRow]:
    """Low items first, then the shortest cover; items that do not sell last."""
    return sorted(
        rows,
        key=lambda r: (
            not r.low,
            r.days_of_cover is None,
            r.days_of_cover if r.days_of_cover is not None else _ZERO,
            r.store_id,
            r.sku,
        ),
    )


def alert_rows(items: Iterable[Item]) -> list[AlertRow]:
    return [
        AlertRow(
            sent_at=datetime.fromisoformat(str(i["sent_at"])),
            type=str(i.get("type", "")),
            severity=str(i.get("severity", "")),
            store_id=str(i.get("store_id", "")),
            title=str(i.get("title", "")),
        )
        for i in items
    ]


# --- the whole page ----------------------------------------------------------------------------

_POOL = ThreadPoolExecutor(max_workers=6, thread_name_prefix="dashboard-live")
MAX_CACHED_HOURS: Final = 10_000


def _gather(tasks: dict[str, Callable[[], Any]], parallel: bool) -> dict[str, Any]:
    """Run independent reads; in parallel they overlap their round trips to DynamoDB."""
    if not parallel:
        return {name: task() for name, task in tasks.items()}
    futures = {name: _POOL.submit(task) for name, task in tasks.items()}
    return {name: future.result() for name, future in futures.items()}


KpiChoice = Sequence[str] | Callable[[], Sequence[str]]


def _choice(kpis: KpiChoice) -> Callable[[], Sequence[str]]:
    return kpis if callable(kpis) else lambda: kpis


def _hour_of(minute_sk: str) -> str:
    return f"{minute_sk[:13]}Z"  # "2026-11-26T10:15Z" -> "2026-11-26T10Z"


class LiveDashboard:
    """Assembles the live parts of the page for one scope. Reads are lookups by key, and three
    caches keep a refresh (every 2 s per open page) down to what changed:

    - today's minute buckets per hour, kept while the hour's counters are unchanged: counters
      only grow, so an unchanged hour means unchanged minutes (minutes that do not add up to
      their hour, read while a batch was being written, are not kept);
    - past days' buckets (the comparisons) for ``past_seconds``: only a late event changes them;
    - the alert log and the week of sales behind stock cover, for ``slow_seconds``, reloaded in
      the background while the last value is served.
    """

    def __init__(
        self,
        reader: LiveReader,
        clock: Clock = system_clock,
        parallel: bool = True,
        past_seconds: float = 300.0,
        slow_seconds: float = 10.0,
    ) -> None:
        self.reader, self.clock, self.parallel = reader, clock, parallel
        self._hours: dict[tuple[str, str], tuple[tuple[Decimal, ...], list[Item]]] = {}
        self._hours_lock = threading.Lock()
        self._past = TtlCache(past_seconds)
        self._slow = TtlCache(slow_seconds, refresh=_POOL if parallel else None)

    # --- the endpoints ---

    def kpis(self, catalogue: Catalog, where: Scope, kpis: KpiChoice) -> KpiReport:
        """``kpis``: the ids, or a function that reads them (run beside the other reads)."""
        today = self.today(where)
        tasks = self._comparison_tasks(where, today) | {"kpis": _choice(kpis)}
        parts = _gather(tasks, self.parallel)
        totals = (Totals.of(today.hours), parts["yesterday"], parts["last_week"])
        return kpi_report(catalogue, where, today, totals, parts["kpis"])

    def snapshot(self, catalogue: Catalog, where: Scope, kpis: KpiChoice) -> LiveSnapshot:
        today = self.today(where)
        tasks = self._comparison_tasks(where, today) | {
            "kpis": _choice(kpis),
            "mix": lambda: self._mix(where.store_id, [today.day]),
            "alerts": lambda: self._alerts(where, today),
            **{f"stock:{s}": self._stock_task(catalogue, s, today) for s in where.store_ids},
        }
        parts = _gather(tasks, self.parallel)
        current = Totals.of(today.hours)
        stock = [row for s in where.store_ids for row in parts[f"stock:{s}"]]
        return LiveSnapshot(
            kpis=kpi_report(
                catalogue,
                where,
                today,
                (current, parts["yesterday"], parts["last_week"]),
                parts["kpis"],
            ),
            minutes=minute_series(today),
            mix=sales_mix(catalogue, parts["mix"]),
            funnel=funnel(current),
            foot_traffic=foot_traffic_by_hour(today.hours, where.timezone),
            stock=rank_stock(stock),
            alerts=alert_rows(parts["alerts"]),
        )

    # --- today ---

    def today(self, where: Scope) -> Today:
        now = self.clock()
        clock_day = local_date(now, where.timezone)
        parts = _gather(
            {  # the clock's day is almost always the day: read its hours meanwhile
                "day": lambda: self._business_day(where, clock_day),
                "hours": lambda: self._hours_of(where, clock_day),
            },
            self.parallel,
        )
        day, hours = parts["day"], parts["hours"]
        if day != clock_day:
            hours = self._hours_of(where, day)
        minutes = self._minutes(where.key, day, hours)
        start = day_start(day, where.timezone)
        candidates = [now if day == clock_day else start]
        if minutes:
            candidates.append(_parse_minute(str(minutes[-1]["sk"])) + timedelta(seconds=59))
        as_of = max(candidates)
        yesterday, last_week = comparison_cutoffs(day, as_of, where.timezone)
        return Today(day, as_of, yesterday, last_week, start, hours, minutes)

    def _hours_of(self, where: Scope, day: date) -> list[Item]:
        found = self.reader.get_many(METRICS, hour_keys(where.key, day, where.timezone), COUNTERS)
        return [found[k] for k in sorted(found, key=lambda k: k.sk)]

    def _business_day(self, where: Scope, clock_day: date) -> date:
        """The clock's local date, or a later one that already has data."""
        ahead = [clock_day + timedelta(days=n) for n in range(1, LOOKAHEAD_DAYS + 1)]
        keys = [Key(f"{where.key}#DAY#{d.year}", d.isoformat()) for d in ahead]
        found = self.reader.get_many(METRICS, keys, ("sk",))
        return max([clock_day, *(date.fromisoformat(k.sk) for k in found)])

    def _minutes(self, scope_key: str, day: date, hours: list[Item]) -> list[Item]:
        """Today's minute buckets. An hour whose counters did not change keeps its minutes; one
        that did has its minutes read again from its newest known minute on (new events land at
        the end) and, if they then fail to add up to the hour (a late event, or a read that
        raced a write), from its first minute."""
        kept: list[Item] = []
        changed: list[tuple[Item, list[Item]]] = []
        for hour in hours:
            with self._hours_lock:
                cached = self._hours.get((scope_key, str(hour["sk"])))
            if cached is not None and cached[0] == _signature(hour):
                kept += cached[1]
            else:
                changed.append((hour, cached[1] if cached else []))
        tail = self._read_hours(scope_key, day, [(h, known) for h, known in changed if known])
        retry = []
        for hour, known in changed:
            newest = str(known[-1]["sk"]) if known else None
            if newest is not None:
                minutes = [m for m in known if str(m["sk"]) < newest]
                minutes += tail[str(hour["sk"])]
                if self._consistent(scope_key, hour, minutes):
                    kept += minutes
                    continue
            retry.append((hour, []))
        full = self._read_hours(scope_key, day, retry)
        for hour, _ in retry:
            minutes = full[str(hour["sk"])]
            self._consistent(scope_key, hour, minutes)
            kept += minutes
        return sorted(kept, key=lambda m: str(m["sk"]))

    def _read_hours(
        self, scope_key: str, day: date, hours: list[tuple[Item, list[Item]]]
    ) -> dict[str, list[Item]]:
        """The minutes of each hour, from its newest known minute (all if none is known)."""
        if not hours:
            return {}
        keys = []
        for hour, known in hours:
            start = _parse_hour(str(hour["sk"]))
            if known:
                start = _parse_minute(str(known[-1]["sk"]))
            end = _parse_hour(str(hour["sk"])) + timedelta(minutes=59)
            keys += minute_keys(scope_key, day, start.replace(minute=0), until=end)[start.minute :]
        by_hour: dict[str, list[Item]] = {str(h["sk"]): [] for h, _ in hours}
        for key, item in self.reader.get_many(METRICS, keys, COUNTERS).items():
            by_hour.setdefault(_hour_of(key.sk), []).append(item)
        return {h: sorted(items, key=lambda m: str(m["sk"])) for h, items in by_hour.items()}

    def _consistent(self, scope_key: str, hour: Item, minutes: list[Item]) -> bool:
        """Keep minutes that add up to their hour: counters only grow, so they are exact."""
        if _signature(Totals.of(minutes).values) != _signature(hour):
            return False
        with self._hours_lock:
            if len(self._hours) >= MAX_CACHED_HOURS:
                self._hours.clear()
            self._hours[(scope_key, str(hour["sk"]))] = (_signature(hour), minutes)
        return True

    # --- comparisons ---

    def _comparison_tasks(self, where: Scope, today: Today) -> dict[str, Callable[[], Any]]:
        key, day, timezone = where.key, today.day, where.timezone
        return {
            "yesterday": lambda: self.totals_until(
                key, day - timedelta(days=1), today.yesterday_cutoff, timezone
            ),
            "last_week": lambda: self.totals_until(
                key, day - timedelta(days=7), today.last_week_cutoff, timezone
            ),
        }

    def totals_until(self, scope_key: str, day: date, cutoff: datetime, timezone: str) -> Totals:
        """A day's counters up to and including the minute of ``cutoff``: the hours before the
        cut-off hour, then the minutes of that hour."""
        hour = cutoff.replace(minute=0, second=0, microsecond=0)
        keys = [k for k in hour_keys(scope_key, day, timezone) if k.sk < utc_hour(cutoff)]
        keys += minute_keys(scope_key, day, hour, until=cutoff)
        return Totals.of(self._past_items(keys))

    def _past_items(self, keys: list[Key]) -> list[Item]:
        items, missing = [], []
        for key in keys:
            fresh, item = self._past.peek(key)
            if not fresh:
                missing.append(key)
            elif item is not None:
                items.append(item)
        found = self.reader.get_many(METRICS, missing, COUNTERS) if missing else {}
        for key in missing:
            self._past.put(key, found.get(key))
            if key in found:
                items.append(found[key])
        return items

    # --- sales mix, stock, alerts ---

    def _mix(self, store_id: str | None, days: Sequence[date]) -> list[Item]:
        """The mix items of ``days``: part 1 by key, and the other parts when part 1 is full
        (a batch spreads its counters over more parts only once part 1 got the maximum)."""
        keys = [mix_key(store_id, d) for d in days]
        items: list[Item] = []
        for key, item in self.reader.get_many(METRICS, keys).items():
            if sum(1 for name in item if _mix_attribute(name)) < MAX_COUNTERS_PER_WRITE:
                items.append(item)
            else:
                items += self.reader.query(METRICS, key.pk, low=key.sk, high=f"{key.sk}#~")
        return items

    def _stock_task(
        self, catalogue: Catalog, store_id: str, today: Today
    ) -> Callable[[], list[StockRow]]:
        def read() -> list[StockRow]:
            # The store's own business day: it may differ from the scope's (other time zone).
            day = local_date(today.as_of, catalogue.timezone_of(store_id))
            week = [day - timedelta(days=n) for n in range(1, COVER_DAYS + 1)]
            sold = self._slow.get(("sold", store_id, day), lambda: self._mix(store_id, week))
            stock = self.reader.query(INVENTORY, f"S#{store_id}", names=("on_hand",))
            return stock_rows(catalogue, store_id, stock, sold)

        return read

    def _alerts(self, where: Scope, today: Today) -> list[Item]:
        newest = today.as_of.date()
        days = (newest, newest - timedelta(days=1))  # the log is filed by UTC date
        stores = None if where.store_id is None else frozenset(where.store_ids)
        return self._slow.get(("alerts", stores, newest), lambda: self._alert_log(days, stores))

    def _alert_log(self, days: Sequence[date], stores: frozenset[str] | None) -> list[Item]:
        found: list[Item] = []
        for day in days:
            items = self.reader.query(
                FACTS,
                f"ALERTS#{day.isoformat()}",
                names=("type", "severity", "store_id", "title", "sent_at"),
                newest_first=True,
                limit=ALERT_LIMIT if stores is None else None,
            )
            found += [i for i in items if stores is None or i.get("store_id") in stores]
            if len(found) >= ALERT_LIMIT:
                break
        return found[:ALERT_LIMIT]
