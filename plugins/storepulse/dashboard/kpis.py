"""The KPIs: their definitions over a period's summed counters, and how they are shown."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final, Literal

from storepulse.dashboard.reader import Item
from storepulse.layout import (
    COUNTERS,
)
from storepulse.settings import KPI_CATALOGUE

Unit = Literal["money", "count", "ratio"]

DEFAULT_KPIS: Final = (
    "revenue",
    "orders",
    "average_order_value",
    "visitors",
    "conversion_rate",
    "foot_traffic",
)
CENT, RATIO, CHANGE, TENTH = (Decimal(s) for s in ("0.01", "0.000001", "0.0001", "0.1"))
ZERO = Decimal(0)


@dataclass(frozen=True)
class Totals:
    """Every counter of a period, summed (Decimal, as DynamoDB keeps them)."""

    values: dict[str, Decimal]

    @classmethod
    def of(cls, items: Iterable[Item]) -> Totals:
        sums = dict.fromkeys(COUNTERS, ZERO)
        for item in items:
            for name in COUNTERS:
                if name in item:
                    sums[name] += Decimal(item[name])
        return cls(sums)

    def __getitem__(self, name: str) -> Decimal:
        return self.values[name]


def ratio(numerator: Decimal, denominator: Decimal, step: Decimal = RATIO) -> Decimal | None:
    if not denominator:
        return None
    return (numerator / denominator).quantize(step, rounding=ROUND_HALF_EVEN)


def abandonment(t: Totals) -> Decimal | None:
    completed = ratio(t["purchases"], t["checkouts"])
    return None if completed is None else max(ZERO, 1 - completed)


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
            lambda t: ratio(t["revenue"], t["orders"], CENT),
        ),
        KpiDefinition("units", "Units sold", "count", "items sold", _counter("units")),
        KpiDefinition("visitors", "Visitors", "count", "web sessions", _counter("sessions")),
        KpiDefinition(
            "conversion_rate",
            "Conversion",
            "ratio",
            "web purchases / sessions",
            lambda t: ratio(t["purchases"], t["sessions"]),
        ),
        KpiDefinition(
            "cart_abandonment_rate",
            "Cart abandonment",
            "ratio",
            "1 - purchases / checkouts started",
            abandonment,
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


def shown(unit: Unit, value: Decimal | None) -> Decimal | int | None:
    """Counts as integers, money to the cent, ratios as computed."""
    if value is None:
        return None
    if unit == "count":
        return int(value)
    return value.quantize(CENT) if unit == "money" else value


def change(current: Decimal | None, previous: Decimal | None) -> Decimal | None:
    """Relative change (0.125 = +12.5 %); null against nothing or zero."""
    if current is None or previous is None or not previous:
        return None
    return ((current - previous) / previous).quantize(CHANGE, rounding=ROUND_HALF_EVEN)
