"""The dashboard's live numbers on an in-memory reader: today so far, the same-time comparisons,
the ratios, the business day following the data, the sales mix, stock cover and alerts. (The
same code against the real handler and DynamoDB: tests/integration/test_dashboard_api.py.)"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from storepulse.dashboard.kpis import KPIS, Totals, change
from storepulse.dashboard.live import LiveDashboard
from storepulse.dashboard.panels import minute_series
from storepulse.dashboard.today import LOOKAHEAD_DAYS, Scope
from storepulse.layout import Grain, Key, Table, bucket_keys, mix_attribute, mix_key, utc_minute
from storepulse.settings import KPI_CATALOGUE, Catalog, ProductSettings, StoreSettings

PARIS = "Europe/Paris"
NOW = datetime(2026, 11, 26, 9, 30, 20, tzinfo=UTC)  # 10:30 in Paris


class FakeReader:
    """``LiveReader`` over items kept as the tables keep them (table -> pk -> sk -> item)."""

    def __init__(self) -> None:
        self.tables: dict[Table, dict[str, dict[str, dict[str, Any]]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        self.calls: list[tuple[str, Table, int]] = []

    def put(self, table: Table, pk: str, sk: str, **attributes: Any) -> None:
        self.tables[table][pk][sk] = {"pk": pk, "sk": sk, **attributes}

    def record(self, store_id: str, moment: datetime, timezone: str = PARIS, **counters: Any):
        """Counters of one event, added to the store's buckets (as the stream does: the
        business's are their sums on read)."""
        for key in bucket_keys(store_id, moment, timezone).values():
            self._add(key, counters)

    def sell(self, store_id: str, day: date, part: int = 1, **attributes: Any) -> None:
        self._add(mix_key(store_id, day, part), attributes)

    def _add(self, key: Key, values: dict[str, Any]) -> None:
        item = self.tables[Table.METRICS][key.pk].setdefault(key.sk, key.as_item())
        for name, value in values.items():
            item[name] = item.get(name, 0) + Decimal(value)

    @staticmethod
    def _project(item: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
        if not names:
            return dict(item)
        return {k: v for k, v in item.items() if k in ("pk", "sk", *names)}

    def get_many(self, table: Table, keys: Sequence[Key], names: Sequence[str] = ()) -> dict:
        self.calls.append(("get_many", table, len(keys)))
        partitions = self.tables[table]
        return {
            k: self._project(partitions[k.pk][k.sk], names)
            for k in keys
            if k.sk in partitions.get(k.pk, {})
        }

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
        index: str | None = None,
    ) -> list[Any]:
        self.calls.append(("query", table, 0))
        partitions = self.tables[(table, index) if index else table]  # type: ignore[index]
        items = [
            self._project(item, names)
            for sk, item in sorted(partitions.get(pk, {}).items(), reverse=newest_first)
            if (low is None or sk >= low) and (high is None or sk <= high)
        ]
        return items[:limit]

    def minutes_of(self, pk: str) -> list[dict[str, Any]]:
        return [i for _, i in sorted(self.tables[Table.METRICS][pk].items())]


def _catalogue(**stores: str) -> Catalog:
    stores = stores or {"s-001": PARIS}
    return Catalog(
        business_name="Shop",
        business_timezone=PARIS,
        currency="EUR",
        stores={
            s: StoreSettings(store_id=s, name=f"Store {s}", timezone=tz, currency="EUR")
            for s, tz in stores.items()
        },
        products={
            "coffee": ProductSettings(
                sku="coffee",
                name="Coffee 1 kg",
                category="grocery",
                unit_price=Decimal("9.90"),
                reorder_point=5,
            ),
            "mug": ProductSettings(
                sku="mug", name="Mug", category="kitchen", unit_price=Decimal("4.00")
            ),
        },
    )


def _tiles(report: Any) -> dict[str, Any]:
    return {t.kpi: t for t in report.tiles}


@pytest.fixture
def reader() -> FakeReader:
    return FakeReader()


def _dashboard(reader: FakeReader, now: datetime = NOW) -> LiveDashboard:
    return LiveDashboard(reader, clock=lambda: now, parallel=False)


def test_today_so_far_against_the_same_time_yesterday_and_last_week(reader: FakeReader) -> None:
    reader.record("s-001", NOW - timedelta(hours=2), revenue="10.00", orders=1)
    reader.record("s-001", NOW - timedelta(minutes=1), revenue="5.00", orders=1)
    yesterday, week = NOW - timedelta(days=1), NOW - timedelta(days=7)
    reader.record("s-001", yesterday - timedelta(minutes=45), revenue="4.00", orders=1)
    reader.record("s-001", yesterday + timedelta(minutes=15), revenue="100.00", orders=3)  # later
    reader.record("s-001", week.replace(second=59), revenue="8.00", orders=2)  # the same minute

    report = _dashboard(reader).kpis(_catalogue(), Scope.of(_catalogue(), None), ["revenue"])

    tile = _tiles(report)["revenue"]
    assert (tile.value, tile.yesterday, tile.last_week) == (
        Decimal("15.00"),
        Decimal("4.00"),
        Decimal("8.00"),
    )
    assert tile.change_vs_yesterday == Decimal("2.7500")
    assert tile.change_vs_last_week == Decimal("0.8750")
    assert report.as_of == NOW
    assert report.yesterday_cutoff == NOW - timedelta(days=1)
    assert report.business_date == date(2026, 11, 26)


def test_ratios_and_their_missing_denominators(reader: FakeReader) -> None:
    reader.record("s-001", NOW - timedelta(minutes=5), revenue="30.00", orders=4, units=7)
    reader.record("s-001", NOW - timedelta(minutes=4), sessions=8, purchases=2, checkouts=5)
    kpis = list(KPI_CATALOGUE)

    tiles = _tiles(_dashboard(reader).kpis(_catalogue(), Scope.of(_catalogue(), "s-001"), kpis))

    assert tiles["average_order_value"].value == Decimal("7.50")
    assert tiles["conversion_rate"].value == Decimal("0.250000")
    assert tiles["cart_abandonment_rate"].value == Decimal("0.600000")
    assert tiles["visitors"].value == 8 and tiles["units"].value == 7
    assert tiles["refunds"].value == 0 and tiles["refund_amount"].value == Decimal("0.00")
    assert tiles["average_order_value"].yesterday is None  # no orders yesterday
    assert tiles["revenue"].change_vs_yesterday is None  # against zero


def test_cart_abandonment_is_floored_at_zero() -> None:
    totals = Totals.of([{"checkouts": Decimal(1), "purchases": Decimal(2)}])
    assert KPIS["cart_abandonment_rate"].compute(totals) == 0


def test_every_catalogued_kpi_is_defined() -> None:
    assert list(KPIS) == list(KPI_CATALOGUE)
    assert change(Decimal(3), Decimal(0)) is None
    assert change(Decimal(1), Decimal(4)) == Decimal("-0.7500")


def test_as_of_follows_data_that_is_ahead_of_the_clock(reader: FakeReader) -> None:
    ahead = NOW + timedelta(hours=2, minutes=3)
    reader.record("s-001", ahead, revenue="1.00", orders=1)
    reader.record("s-001", ahead - timedelta(days=1, minutes=1), revenue="2.00", orders=1)

    report = _dashboard(reader).kpis(_catalogue(), Scope.of(_catalogue(), None), ["revenue"])

    assert report.as_of == ahead.replace(second=59)
    assert report.now == NOW  # the real time: the page's "as of" is not the data's clock
    assert report.yesterday_cutoff == report.as_of - timedelta(days=1)
    assert _tiles(report)["revenue"].yesterday == Decimal("2.00")


def test_a_later_local_day_with_data_becomes_today(reader: FakeReader) -> None:
    tomorrow = NOW + timedelta(days=1)
    reader.record("s-001", tomorrow, revenue="3.00", orders=1)
    reader.record("s-001", NOW, revenue="7.00", orders=1)

    report = _dashboard(reader).kpis(_catalogue(), Scope.of(_catalogue(), None), ["revenue"])

    assert report.business_date == date(2026, 11, 27)
    tile = _tiles(report)["revenue"]
    assert (tile.value, tile.yesterday) == (Decimal("3.00"), Decimal("7.00"))


def test_yesterday_is_the_same_local_time_across_a_dst_change(reader: FakeReader) -> None:
    # 2026-11-01: New York leaves summer time; noon is 17:00Z that day, 16:00Z the day before.
    now = datetime(2026, 11, 1, 17, 0, tzinfo=UTC)
    where = Scope("s-ny", "America/New_York", ("s-ny",))
    today = _dashboard(reader, now).today(where)
    assert today.yesterday_cutoff == datetime(2026, 10, 31, 16, 0, tzinfo=UTC)
    assert today.last_week_cutoff == datetime(2026, 10, 25, 16, 0, tzinfo=UTC)


def test_hours_plus_the_cutoff_hours_minutes_equal_the_minutes_up_to_the_cutoff(
    reader: FakeReader,
) -> None:
    rng = random.Random(3)
    day_start = datetime(2026, 11, 25, 18, 30, tzinfo=UTC)  # midnight in Kolkata (+05:30)
    for _ in range(400):
        moment = day_start + timedelta(minutes=rng.randrange(24 * 60))
        reader.record("s-in", moment, "Asia/Kolkata", revenue=f"{rng.randrange(1, 999)}.25")
    for cutoff in (day_start + timedelta(minutes=m) for m in (0, 29, 30, 61, 719, 1439)):
        expected = sum(
            (
                i["revenue"]
                for i in reader.minutes_of("S#s-in#MIN#2026-11-26")
                if i["sk"] <= utc_minute(cutoff)
            ),
            Decimal(0),
        )
        where = Scope("s-in", "Asia/Kolkata", ("s-in",))
        totals = _dashboard(reader).totals_until(where, date(2026, 11, 26), cutoff)
        assert totals["revenue"] == expected


def test_snapshot_parts(reader: FakeReader) -> None:
    reader.record("s-001", NOW - timedelta(minutes=3), revenue="12.00", orders=2, foot_traffic=4)
    reader.record("s-001", NOW - timedelta(hours=1), foot_traffic=6, sessions=10)
    reader.record("s-001", NOW - timedelta(minutes=2), add_to_carts=4, checkouts=2, purchases=1)
    today = date(2026, 11, 26)
    reader.sell("s-001", today, **{mix_attribute("cat", "grocery", "revenue"): "9.90"})
    # A batch with more counters than one write takes filled part 1 and spilled into part 2.
    wide = {mix_attribute("sku", f"p{i:03}", "units"): 1 for i in range(300)}
    reader.sell("s-001", today, **wide)
    reader.sell("s-001", today, 2, **{mix_attribute("cat", "grocery", "revenue"): "0.10"})
    reader.sell("s-001", today, **{mix_attribute("cat", "a#b", "revenue"): "20.00"})
    reader.sell("s-001", today, **{mix_attribute("sku", "coffee", "units"): 3})
    reader.sell("s-001", today, **{mix_attribute("sku", "coffee", "revenue"): "29.70"})
    for at, kind, store in [("09:00", "low_stock", "s-001"), ("08:00", "traffic_spike", "s-002")]:
        sent_at = f"2026-11-26T{at}:00.000000Z"
        reader.put(
            Table.FACTS,
            "ALERTS#2026-11-26",
            f"{sent_at}#{kind}#{store}#x",
            sent_at=f"2026-11-26T{at}:00+00:00",
            type=kind,
            severity="info",
            store_id=store,
            title=f"{kind} at {store}",
        )

    snapshot = _dashboard(reader).snapshot(
        _catalogue(), Scope.of(_catalogue(), None), ["revenue", "orders"]
    )

    assert [(p.revenue, p.orders) for p in snapshot.minutes.points] == [
        (Decimal("0.00"), 0),  # foot traffic only
        (Decimal("12.00"), 2),
        (Decimal("0.00"), 0),
    ]
    assert snapshot.minutes.start == datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
    assert [(c.name, c.revenue) for c in snapshot.mix.categories] == [
        ("a#b", Decimal("20.00")),
        ("grocery", Decimal("10.00")),
    ]
    assert [(p.label, p.units) for p in snapshot.mix.top_products][:2] == [
        ("Coffee 1 kg", 3),
        ("p000", 1),
    ]
    assert [(h.label, h.foot_traffic) for h in snapshot.foot_traffic] == [
        ("09:00", 6),
        ("10:00", 4),
    ]
    steps = {s.step: s for s in snapshot.funnel.steps}
    assert steps["checkouts"].of_previous == Decimal("0.500000")
    assert snapshot.funnel.conversion_rate == Decimal("0.100000")
    assert [a.store_id for a in snapshot.alerts] == ["s-001", "s-002"]

    store_only = _dashboard(reader).snapshot(_catalogue(), Scope.of(_catalogue(), "s-001"), [])
    assert [a.store_id for a in store_only.alerts] == ["s-001"]


def test_a_days_mix_is_one_lookup_unless_part_one_is_full(reader: FakeReader) -> None:
    reader.sell("s-001", date(2026, 11, 26), **{mix_attribute("cat", "grocery", "revenue"): "1.00"})
    reader.sell("s-001", date(2026, 11, 26), 2, **{mix_attribute("cat", "kitchen", "revenue"): "9"})

    mix = _dashboard(reader).snapshot(_catalogue(), Scope.of(_catalogue(), None), []).mix

    assert [c.name for c in mix.categories] == ["grocery"]  # no batch ever spilled: one item
    assert ("query", Table.METRICS, 0) not in reader.calls


def test_the_business_is_the_sum_of_its_stores_each_in_its_time_zone(reader: FakeReader) -> None:
    # The stream writes the stores' buckets only: the business's day (Paris) adds up the
    # stores' UTC minutes and hours, each filed under its store's own local date (Kolkata).
    catalogue = _catalogue(**{"s-001": PARIS, "s-in": "Asia/Kolkata"})
    reader.record("s-001", NOW - timedelta(minutes=1), revenue="5.00", orders=1)
    reader.record("s-in", NOW - timedelta(minutes=1), "Asia/Kolkata", revenue="7.00", orders=2)
    reader.record("s-in", NOW - timedelta(hours=3), "Asia/Kolkata", revenue="1.00", orders=1)
    yesterday = NOW - timedelta(days=1)
    reader.record("s-001", yesterday - timedelta(minutes=5), revenue="2.00", orders=1)
    reader.record("s-in", yesterday - timedelta(minutes=5), "Asia/Kolkata", revenue="3.00")
    reader.sell("s-001", date(2026, 11, 26), **{mix_attribute("cat", "grocery", "units"): 2})
    reader.sell("s-in", date(2026, 11, 26), **{mix_attribute("cat", "grocery", "units"): 3})

    snapshot = _dashboard(reader).snapshot(catalogue, Scope.of(catalogue, None), ["revenue"])

    tile = _tiles(snapshot.kpis)["revenue"]
    assert (tile.value, tile.yesterday) == (Decimal("13.00"), Decimal("5.00"))
    assert sum(p.orders for p in snapshot.minutes.points) == 4
    assert [(c.name, c.units) for c in snapshot.mix.categories] == [("grocery", 5)]
    assert not any(pk.startswith("ALL") for pk in reader.tables[Table.METRICS])


def test_stock_cover_from_the_last_seven_days_with_low_items_first(reader: FakeReader) -> None:
    today = date(2026, 11, 26)
    for back in range(1, 8):  # 2 coffees a day for a week; today's sales do not count
        reader.sell("s-001", today - timedelta(days=back), **{"sku#coffee#units": 2})
    reader.sell("s-001", today, **{"sku#coffee#units": 50})
    reader.sell("s-001", today - timedelta(days=8), **{"sku#mug#units": 70})  # too old
    reader.sell("s-001", today - timedelta(days=2), **{"sku#mug#units": 7})
    for sku, on_hand in (("coffee", 10), ("mug", 3), ("tea", 0)):
        reader.put(Table.INVENTORY, "S#s-001", sku, on_hand=Decimal(on_hand))

    rows = _dashboard(reader).snapshot(_catalogue(), Scope.of(_catalogue(), "s-001"), []).stock

    assert [(r.sku, r.low, r.days_of_cover) for r in rows] == [
        ("tea", True, None),  # unknown product: reorder point 0, never sold
        ("mug", False, Decimal("3.0")),
        ("coffee", False, Decimal("5.0")),
    ]
    assert rows[2].average_daily_units == Decimal("2.00")
    reader.put(Table.INVENTORY, "S#s-001", "coffee", on_hand=Decimal(5))  # the reorder point
    rows = _dashboard(reader).snapshot(_catalogue(), Scope.of(_catalogue(), "s-001"), []).stock
    assert [(r.sku, r.low) for r in rows][:2] == [("coffee", True), ("tea", True)]


def test_minute_buckets_are_filed_as_the_handler_files_them() -> None:
    keys = bucket_keys("s-001", NOW, PARIS)
    assert keys[Grain.MINUTE].sk == utc_minute(NOW)
    assert keys[Grain.MINUTE].pk == "S#s-001#MIN#2026-11-26"


def _minute_reads(reader: FakeReader) -> list[int]:
    """Sizes of the lookups of minute buckets (60 keys per hour read)."""
    return [n for call, table, n in reader.calls if call == "get_many" and n % 60 == 0 and n]


def test_a_refresh_reads_again_only_the_minutes_of_hours_that_changed(reader: FakeReader) -> None:
    for hours_back in (5, 3, 1):
        reader.record("s-001", NOW - timedelta(hours=hours_back), revenue="1.00", orders=1)
    dashboard = _dashboard(reader)
    where = Scope.of(_catalogue(), "s-001")
    dashboard.kpis(_catalogue(), where, ["revenue"])
    assert sum(_minute_reads(reader)) == 3 * 60

    reader.calls.clear()
    reader.record("s-001", NOW - timedelta(minutes=1), revenue="2.00", orders=1)
    report = dashboard.kpis(_catalogue(), where, ["revenue"])

    assert _minute_reads(reader) == [60]  # the current hour only
    assert _tiles(report)["revenue"].value == Decimal("5.00")
    assert sum(p.revenue for p in minute_series(dashboard.today(where)).points) == 5


def test_minutes_read_while_their_hour_was_being_written_are_read_again(
    reader: FakeReader,
) -> None:
    reader.record("s-001", NOW - timedelta(hours=2), revenue="1.00", orders=1)
    hour = bucket_keys("s-001", NOW - timedelta(hours=2), PARIS)[Grain.HOUR]
    reader.tables[Table.METRICS][hour.pk][hour.sk]["revenue"] += 4  # its minute not written yet
    dashboard = _dashboard(reader)
    where = Scope.of(_catalogue(), "s-001")
    dashboard.today(where)

    reader.calls.clear()
    reader.record("s-001", NOW - timedelta(hours=2), revenue="4.00")  # the writer catches up
    reader.tables[Table.METRICS][hour.pk][hour.sk]["revenue"] -= 4
    today = dashboard.today(where)

    assert _minute_reads(reader) == [60]
    assert sum(p.revenue for p in minute_series(today).points) == 5


def test_past_buckets_are_kept_for_a_while(reader: FakeReader) -> None:
    reader.record("s-001", NOW - timedelta(days=1, minutes=5), revenue="3.00", orders=1)
    dashboard = _dashboard(reader)
    where = Scope.of(_catalogue(), "s-001")
    first = dashboard.kpis(_catalogue(), where, ["revenue"])
    reader.calls.clear()

    again = dashboard.kpis(_catalogue(), where, ["revenue"])

    assert again == first
    assert all(n <= LOOKAHEAD_DAYS for call, table, n in reader.calls if call == "get_many")


def test_new_minutes_of_a_known_hour_are_read_from_its_newest_minute_on(
    reader: FakeReader,
) -> None:
    hour_start = NOW.replace(minute=0, second=0)
    reader.record("s-001", hour_start + timedelta(minutes=10), revenue="1.00", orders=1)
    dashboard, where = _dashboard(reader), Scope.of(_catalogue(), "s-001")
    dashboard.today(where)

    reader.calls.clear()
    reader.record("s-001", hour_start + timedelta(minutes=20), revenue="2.00", orders=1)
    today = dashboard.today(where)
    assert [n for call, _, n in reader.calls if call == "get_many"][2:] == [50]  # :10 to :59
    assert [p.revenue for p in minute_series(today).points] == [1, 2]

    reader.calls.clear()
    reader.record("s-001", hour_start + timedelta(minutes=5), revenue="4.00")  # a late event
    today = dashboard.today(where)
    assert [n for call, _, n in reader.calls if call == "get_many"][2:] == [40, 60]
    assert [p.revenue for p in minute_series(today).points] == [4, 1, 2]
