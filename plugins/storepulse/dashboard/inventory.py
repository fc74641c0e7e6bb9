"""Inventory beyond low stock, from the lake: ``daily_product_sales`` (units sold per store, sku
and day) and the nightly ``inventory_snapshot`` (on hand per store and sku, each day).

Definitions over a period (the API documents them too), per product in a store, and summed per
category:

- **sold**: units sold in the period; **on hand**: the last snapshot of the period;
  **average on hand**: the mean of the period's snapshots.
- **turnover**: sold / average on hand (how many times the stock turned over); null without stock.
- **sell-through**: sold / (sold + on hand): the share of the units available in the period that
  sold (deliveries are not exported, so what was available is what sold plus what is left).
- **days of cover**: on hand / (sold / days); null when nothing sold. **Overstock**: cover above
  the ceiling (``OVERSTOCK_DAYS`` unless the request sets one), or stock that did not sell at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final

from pydantic import BaseModel, Field

from storepulse.dashboard.history import Lake, Window

PRODUCT_SALES: Final = "daily_product_sales"
SNAPSHOTS: Final = "inventory_snapshot"
OVERSTOCK_DAYS: Final = 60
_RATIO, _DAYS = Decimal("0.0001"), Decimal("0.1")

Row = Mapping[str, Any]


class StockTurn(BaseModel):
    key: str = Field(description="sku, or category")
    label: str
    store_id: str | None = Field(description="null for a category (every store in scope)")
    category: str
    sold: int
    on_hand: int | None = Field(description="last snapshot of the period; null: none")
    average_on_hand: Decimal | None
    turnover: Decimal | None
    sell_through: Decimal | None
    days_of_cover: Decimal | None
    overstock: bool


class InventoryReport(BaseModel):
    days: int
    store_id: str | None
    lake: str | None
    current_first: date
    current_last: date
    ceiling_days: int = Field(description="overstock: days of cover above this")
    snapshots: int = Field(description="days with an inventory snapshot in the period")
    products: list[StockTurn] = Field(description="overstocked first, then by cover")
    categories: list[StockTurn]


@dataclass
class _Stock:
    sold: int = 0
    levels: dict[date, int] | None = None

    def level(self, day: date, on_hand: int) -> None:
        self.levels = self.levels or {}
        self.levels[day] = self.levels.get(day, 0) + on_hand


def _day(row: Row, column: str) -> date:
    value = row.get(column) or row["business_date"]
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _ratio(numerator: Decimal | int, denominator: Decimal | int, step: Decimal) -> Decimal | None:
    if not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(step, rounding=ROUND_HALF_EVEN)


def _turn(
    key: str,
    label: str,
    store_id: str | None,
    category: str,
    stock: _Stock,
    days: int,
    ceiling: int,
) -> StockTurn:
    levels = stock.levels or {}
    on_hand = levels[max(levels)] if levels else None
    average = _ratio(sum(levels.values()), len(levels), _RATIO) if levels else None
    cover = None if on_hand is None else _ratio(on_hand * days, stock.sold, _DAYS)
    unsold = bool(on_hand) and not stock.sold
    return StockTurn(
        key=key,
        label=label,
        store_id=store_id,
        category=category,
        sold=stock.sold,
        on_hand=on_hand,
        average_on_hand=average,
        turnover=None if average is None else _ratio(stock.sold, average, _RATIO),
        sell_through=None if on_hand is None else _ratio(stock.sold, stock.sold + on_hand, _RATIO),
        days_of_cover=cover,
        overstock=unsold or (cover is not None and cover > ceiling),
    )


def turns(
    sales: Iterable[Row],
    snapshots: Iterable[Row],
    window: Window,
    products: Mapping[str, tuple[str, str]],
    ceiling: int = OVERSTOCK_DAYS,
) -> tuple[list[StockTurn], list[StockTurn], int]:
    """(per product and store, per category, snapshot days) of the period; ``products``: sku ->
    (name, category), unknown skus keep their sku as name and ``unknown`` as category."""
    stock: dict[tuple[str, str], _Stock] = defaultdict(_Stock)
    by_category: dict[str, _Stock] = defaultdict(_Stock)
    snapshot_days: set[date] = set()
    for row in sales:
        if window.is_current(_day(row, "business_date")):
            stock[(str(row["store_id"]), str(row["sku"]))].sold += int(row["units"])
    for row in snapshots:
        day = _day(row, "snapshot_date")
        if window.is_current(day):
            snapshot_days.add(day)
            stock[(str(row["store_id"]), str(row["sku"]))].level(day, int(row["on_hand"]))
    for (_, sku), seen in stock.items():
        group = by_category[products.get(sku, (sku, "unknown"))[1]]
        group.sold += seen.sold
        for day, on_hand in (seen.levels or {}).items():
            group.level(day, on_hand)
    rows = []
    for (store_id, sku), seen in stock.items():
        name, category = products.get(sku, (sku, "unknown"))
        rows.append(_turn(sku, name, store_id, category, seen, window.days, ceiling))
    groups = [_turn(c, c, None, c, s, window.days, ceiling) for c, s in by_category.items()]
    return _ranked(rows), _ranked(groups), len(snapshot_days)


def _ranked(rows: list[StockTurn]) -> list[StockTurn]:
    """Overstock first, the longest cover (none: never sells) first, then by name."""
    return sorted(
        rows,
        key=lambda r: (
            not r.overstock,
            -(r.days_of_cover if r.days_of_cover is not None else Decimal(10**9)),
            r.label,
            r.store_id or "",
        ),
    )


def _visible(rows: list[Row], store_ids: frozenset[str] | None) -> list[Row]:
    return [r for r in rows if store_ids is None or r.get("store_id") in store_ids]


def report(
    lake: Lake | None,
    window: Window,
    store_ids: frozenset[str] | None,
    store_id: str | None,
    products: Mapping[str, tuple[str, str]],
    ceiling: int = OVERSTOCK_DAYS,
) -> InventoryReport:
    sales: list[Row] = []
    snapshots: list[Row] = []
    if lake is not None:
        sales = lake.rows(PRODUCT_SALES, window.first, window.last)
        snapshots = lake.rows(SNAPSHOTS, window.first, window.last)
    products_rows, categories, snapshot_days = turns(
        _visible(sales, store_ids), _visible(snapshots, store_ids), window, products, ceiling
    )
    return InventoryReport(
        days=window.days,
        store_id=store_id,
        lake=lake.uri if lake else None,
        current_first=window.first,
        current_last=window.last,
        ceiling_days=ceiling,
        snapshots=snapshot_days,
        products=products_rows,
        categories=categories,
    )
