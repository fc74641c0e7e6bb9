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

Here: ``LiveDashboard``, which reads and assembles. Beside it: ``reader`` (the DynamoDB reads),
``kpis`` (definitions and totals), ``today`` (the business day and
its bucket keys), ``panels`` (the parts of the page) and ``responses`` (the response models).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from storepulse import stock_levels
from storepulse.cache import TtlCache
from storepulse.clock import Clock, system_clock
from storepulse.dashboard import customers, social, staffing
from storepulse.dashboard.kpis import Totals
from storepulse.dashboard.panels import (
    ALERT_LIMIT,
    COVER_DAYS,
    alert_rows,
    foot_traffic_by_hour,
    funnel,
    kpi_report,
    minute_series,
    mix_parts,
    rank_stock,
    sales_mix,
    stock_rows,
)
from storepulse.dashboard.reader import (
    FACTS,
    INVENTORY,
    METRICS,
    Item,
    LiveReader,
    business_items,
)
from storepulse.dashboard.responses import KpiReport, LiveSnapshot, StockRow
from storepulse.dashboard.staffing import StaffingReport
from storepulse.dashboard.today import (
    LOOKAHEAD_DAYS,
    Scope,
    Today,
    hour_keys,
    minute_keys,
    parse_hour,
    parse_minute,
    signature,
)
from storepulse.layout import (
    COUNTERS,
    MAX_COUNTERS_PER_WRITE,
    Key,
    comparison_cutoffs,
    customer_profile_key,
    day_start,
    local_date,
    mix_key,
    orders_of_day,
    utc_hour,
    zone,
)
from storepulse.settings import Catalog, EmployeeSettings

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
            "mix": lambda: self._scope_mix(where, today.day),
            "alerts": lambda: self._alerts(where, today),
            "social": lambda: self._social(where, today.day),
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
            social=social.from_bucket(parts["social"]),
        )

    def staffing(
        self, catalogue: Catalog, store_id: str, employees: Sequence[EmployeeSettings]
    ) -> StaffingReport:
        """One store's visitors per staff member per local hour, today and on the same weekday
        of the previous weeks (``storepulse.dashboard.staffing``)."""
        where = Scope.of(catalogue, store_id)
        today = self.today(where)
        weeks = [today.day - timedelta(weeks=n) for n in range(1, staffing.WEEKS + 1)]
        by_day: dict[str, list[Item]] = {
            hour_keys(where.key, d, where.timezone)[0].pk: [] for d in weeks
        }
        keys = [k for d in weeks for k in hour_keys(where.key, d, where.timezone)]
        for item in self._past_items(where, keys):
            by_day[str(item["pk"])].append(item)
        return staffing.report(
            store_id,
            today.day,
            staffing.visitors_by_hour(today.hours, where.timezone),
            [staffing.visitors_by_hour(items, where.timezone) for items in by_day.values()],
            [e for e in employees if e.store_id == store_id],
            catalogue.stores[store_id].visitors_per_staff,
            now_hour=today.as_of.astimezone(zone(where.timezone)).hour,
        )

    def customers(self, catalogue: Catalog, where: Scope) -> customers.LiveCustomers:
        """Today's customer behaviour in the scope's stores, each on its own business day
        (``storepulse.dashboard.customers``): today's orders for ``slow_seconds``, the days
        before for ``past_seconds``."""
        today = self.today(where)
        days = {s: local_date(today.as_of, catalogue.timezone_of(s)) for s in where.store_ids}
        current = [o for s, d in days.items() for o in self._slow_orders(s, d)]
        before = [
            o
            for s, d in days.items()
            for n in range(1, customers.LIVE_LOOKBACK_DAYS + 1)
            for o in self._past_orders(s, d - timedelta(days=n))
        ]
        keys = [customer_profile_key(c) for c in customers.customer_ids(current)]
        profiles = self.reader.get_many(FACTS, keys, customers.PROFILE_FIELDS) if keys else {}
        return customers.LiveCustomers(
            store_id=where.store_id,
            store_ids=list(where.store_ids),
            day=today.day,
            as_of=today.as_of,
            returning_days=customers.LIVE_LOOKBACK_DAYS,
            today=customers.behaviour(current, before, customers.profiles_by_id(profiles.values())),
        )

    def _slow_orders(self, store_id: str, day: date) -> list[Item]:
        return self._slow.get(("orders", store_id, day), lambda: self._orders(store_id, day))

    def _past_orders(self, store_id: str, day: date) -> list[Item]:
        return self._past.get(("orders", store_id, day), lambda: self._orders(store_id, day))

    def _orders(self, store_id: str, day: date) -> list[Item]:
        """One store's order facts of one business day (not its refunds), from ``gsi1``."""
        prefix = f"{store_id}#ORDER#"
        return self.reader.query(
            FACTS,
            orders_of_day(day),
            low=prefix,
            high=f"{prefix}\U0010ffff",
            names=customers.ORDER_FIELDS,
            index="gsi1",
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
        minutes = self._minutes(where, day, hours)
        start = day_start(day, where.timezone)
        candidates = [now if day == clock_day else start]
        if minutes:
            candidates.append(parse_minute(str(minutes[-1]["sk"])) + timedelta(seconds=59))
        as_of = max(candidates)
        yesterday, last_week = comparison_cutoffs(day, as_of, where.timezone)
        return Today(day, as_of, now, yesterday, last_week, start, hours, minutes)

    def _metrics(
        self, where: Scope, keys: Sequence[Key], names: Sequence[str] = ()
    ) -> dict[Key, Item]:
        """Metrics items by key; the business's are the sums of its stores' items."""
        if where.store_id is not None:
            return self.reader.get_many(METRICS, keys, names)
        return business_items(self.reader, keys, dict(where.store_timezones), names)

    def _hours_of(self, where: Scope, day: date) -> list[Item]:
        found = self._metrics(where, hour_keys(where.key, day, where.timezone), COUNTERS)
        return [found[k] for k in sorted(found, key=lambda k: k.sk)]

    def _business_day(self, where: Scope, clock_day: date) -> date:
        """The clock's local date, or a later one that already has data."""
        ahead = [clock_day + timedelta(days=n) for n in range(1, LOOKAHEAD_DAYS + 1)]
        keys = [Key(f"{where.key}#DAY#{d.year}", d.isoformat()) for d in ahead]
        found = self._metrics(where, keys, ("sk",))
        return max([clock_day, *(date.fromisoformat(k.sk) for k in found)])

    def _minutes(self, where: Scope, day: date, hours: list[Item]) -> list[Item]:
        """Today's minute buckets. An hour whose counters did not change keeps its minutes; one
        that did has its minutes read again from its newest known minute on (new events land at
        the end) and, if they then fail to add up to the hour (a late event, or a read that
        raced a write), from its first minute."""
        scope_key = where.key
        kept: list[Item] = []
        changed: list[tuple[Item, list[Item]]] = []
        for hour in hours:
            with self._hours_lock:
                cached = self._hours.get((scope_key, str(hour["sk"])))
            if cached is not None and cached[0] == signature(hour):
                kept += cached[1]
            else:
                changed.append((hour, cached[1] if cached else []))
        tail = self._read_hours(where, day, [(h, known) for h, known in changed if known])
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
        full = self._read_hours(where, day, retry)
        for hour, _ in retry:
            minutes = full[str(hour["sk"])]
            self._consistent(scope_key, hour, minutes)
            kept += minutes
        return sorted(kept, key=lambda m: str(m["sk"]))

    def _read_hours(
        self, where: Scope, day: date, hours: list[tuple[Item, list[Item]]]
    ) -> dict[str, list[Item]]:
        """The minutes of each hour, from its newest known minute (all if none is known)."""
        if not hours:
            return {}
        keys = []
        for hour, known in hours:
            start = parse_hour(str(hour["sk"]))
            if known:
                start = parse_minute(str(known[-1]["sk"]))
            end = parse_hour(str(hour["sk"])) + timedelta(minutes=59)
            keys += minute_keys(where.key, day, start.replace(minute=0), until=end)[start.minute :]
        by_hour: dict[str, list[Item]] = {str(h["sk"]): [] for h, _ in hours}
        for key, item in self._metrics(where, keys, COUNTERS).items():
            by_hour.setdefault(_hour_of(key.sk), []).append(item)
        return {h: sorted(items, key=lambda m: str(m["sk"])) for h, items in by_hour.items()}

    def _consistent(self, scope_key: str, hour: Item, minutes: list[Item]) -> bool:
        """Keep minutes that add up to their hour: counters only grow, so they are exact."""
        if signature(Totals.of(minutes).values) != signature(hour):
            return False
        with self._hours_lock:
            if len(self._hours) >= MAX_CACHED_HOURS:
                self._hours.clear()
            self._hours[(scope_key, str(hour["sk"]))] = (signature(hour), minutes)
        return True

    # --- comparisons ---

    def _comparison_tasks(self, where: Scope, today: Today) -> dict[str, Callable[[], Any]]:
        day = today.day
        return {
            "yesterday": lambda: self.totals_until(
                where, day - timedelta(days=1), today.yesterday_cutoff
            ),
            "last_week": lambda: self.totals_until(
                where, day - timedelta(days=7), today.last_week_cutoff
            ),
        }

    def totals_until(self, where: Scope, day: date, cutoff: datetime) -> Totals:
        """A day's counters up to and including the minute of ``cutoff``: the hours before the
        cut-off hour, then the minutes of that hour."""
        hour = cutoff.replace(minute=0, second=0, microsecond=0)
        keys = [k for k in hour_keys(where.key, day, where.timezone) if k.sk < utc_hour(cutoff)]
        keys += minute_keys(where.key, day, hour, until=cutoff)
        return Totals.of(self._past_items(where, keys))

    def _past_items(self, where: Scope, keys: list[Key]) -> list[Item]:
        items, missing = [], []
        for key in keys:
            fresh, item = self._past.peek(key)
            if not fresh:
                missing.append(key)
            elif item is not None:
                items.append(item)
        found = self._metrics(where, missing, COUNTERS) if missing else {}
        for key in missing:
            self._past.put(key, found.get(key))
            if key in found:
                items.append(found[key])
        return items

    def _social(self, where: Scope, day: date) -> Item | None:
        """The day's social counters: its DAY bucket's ``social#<channel>#*`` attributes."""
        key = Key(f"{where.key}#DAY#{day.year}", day.isoformat())
        return self._metrics(where, [key], social.ATTRIBUTES).get(key)

    # --- sales mix, stock, alerts ---

    def _scope_mix(self, where: Scope, day: date) -> list[Item]:
        """The day's mix items of the scope's stores (the business's mix is their sum)."""
        return [item for store_id in where.store_ids for item in self._mix(store_id, [day])]

    def _mix(self, store_id: str, days: Sequence[date]) -> list[Item]:
        """The mix items of ``days``: part 1 by key, and the other parts when part 1 is full
        (a batch spreads its counters over more parts only once part 1 got the maximum)."""
        keys = [mix_key(store_id, d) for d in days]
        items: list[Item] = []
        for key, item in self.reader.get_many(METRICS, keys).items():
            if sum(1 for name in item if mix_parts(name)) < MAX_COUNTERS_PER_WRITE:
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
            stock = self.reader.query(INVENTORY, stock_levels.store_pk(store_id))
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
