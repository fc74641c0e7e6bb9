"""The parts of the page, computed from buckets already read: KPI tiles, minutes, sales mix,
funnel, foot traffic by hour, stock cover, alerts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Final

from storepulse import stock_levels
from storepulse.dashboard.kpis import (
    CENT,
    KPIS,
    TENTH,
    ZERO,
    Totals,
    abandonment,
    change,
    ratio,
    shown,
)
from storepulse.dashboard.reader import Item
from storepulse.dashboard.responses import (
    AlertRow,
    Funnel,
    FunnelStep,
    HourPoint,
    KpiReport,
    KpiTile,
    MinutePoint,
    MinuteSeries,
    MixEntry,
    SalesMix,
    StockRow,
)
from storepulse.dashboard.today import Scope, Today, parse_hour, parse_minute
from storepulse.layout import (
    zone,
)
from storepulse.settings import Catalog

COVER_DAYS: Final = 7
TOP_PRODUCTS: Final = 10
ALERT_LIMIT: Final = 20


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
                value=shown(d.unit, now),
                yesterday=shown(d.unit, before),
                last_week=shown(d.unit, week),
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
        now=today.now,
        yesterday_cutoff=today.yesterday_cutoff,
        last_week_cutoff=today.last_week_cutoff,
        tiles=tiles,
    )


def minute_series(today: Today) -> MinuteSeries:
    points = [
        MinutePoint(
            minute=parse_minute(str(m["sk"])),
            revenue=Decimal(m.get("revenue", 0)).quantize(CENT),
            orders=int(m.get("orders", 0)),
        )
        for m in today.minutes
    ]
    return MinuteSeries(start=today.start, end=today.as_of, points=points)


def mix_parts(attribute: str) -> tuple[str, str, str] | None:
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
            parsed = mix_parts(attribute)
            if parsed:
                dimension, name, counter = parsed
                entry = sums[dimension].setdefault(name, {"revenue": ZERO, "units": ZERO})
                entry[counter] += Decimal(value)
    return sums


def _entries(sums: dict[str, dict[str, Decimal]], label: Callable[[str], str]) -> list[MixEntry]:
    entries = [
        MixEntry(
            name=name,
            label=label(name),
            revenue=v["revenue"].quantize(CENT),
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
        of_previous = None if previous is None else ratio(count, previous)
        steps.append(FunnelStep(step=name, label=label, count=int(count), of_previous=of_previous))
        previous = count
    return Funnel(
        steps=steps,
        conversion_rate=KPIS["conversion_rate"].compute(totals),
        cart_abandonment_rate=abandonment(totals),
    )


def foot_traffic_by_hour(hours: Iterable[Item], timezone: str) -> list[HourPoint]:
    points = []
    for item in sorted(hours, key=lambda i: str(i["sk"])):
        start = parse_hour(str(item["sk"]))
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
    """``stock``: the store's inventory items (``stock_levels.store_levels`` reads them)."""
    units = {sku: v["units"] for sku, v in mix_totals(sold)["sku"].items()}
    rows = []
    for sku, level in sorted(stock_levels.store_levels(stock).items()):
        product = catalogue.products.get(sku)
        on_hand = level.on_hand
        point = product.reorder_point if product else 0
        average = (units.get(sku, ZERO) / COVER_DAYS).quantize(CENT)
        cover = ratio(Decimal(on_hand), units.get(sku, ZERO) / COVER_DAYS, TENTH)
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
            r.days_of_cover if r.days_of_cover is not None else ZERO,
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
