"""Customer behaviour over a period, from the lake: the ``orders`` data set (one row per order,
``customer_id`` when the customer is known) and the newest ``customers`` snapshot (their CRM
profiles).

Definitions (the API documents them too):

- **customers**: distinct ``customer_id`` among the period's orders; an order without one is
  anonymous and counts in ``orders`` only.
- **purchase frequency**: orders of known customers / customers.
- **repeat-customer rate**: the share of customers with two orders or more in the period.
- **returning** customers also ordered in the previous period (the same number of days just
  before); **new** ones did not. The lake is read by period, not over a customer's whole life.
- **demographics**: the known customers' orders and revenue per age band, region and segment of
  their latest CRM profile (the newest ``customers`` snapshot up to the period's end); a customer
  without a profile is ``unknown``.

**Live** (``LiveDashboard.customers``), the same computation on today's order facts (each store's
business day, from the facts table's ``gsi1`` index) and the current profiles: **returning**
customers also ordered in the ``LIVE_LOOKBACK_DAYS`` days before today (the previous period of the
history view is as long as the period; one day before today would miss a weekly shopper).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final

from pydantic import BaseModel, Field

from storepulse.dashboard.history import Lake, Window

ORDERS: Final = "orders"
CUSTOMERS: Final = "customers"
DIMENSIONS: Final = ("age_band", "region", "segment")
UNKNOWN: Final = "unknown"
SNAPSHOT_LOOKBACK_DAYS: Final = (
    7  # how far before the period's end a profile snapshot is looked for
)
LIVE_LOOKBACK_DAYS: Final = 7  # live: a customer who ordered in these days before today returns
ORDER_FIELDS: Final = ("store_id", "customer_id", "total")  # what behaviour() reads of an order
PROFILE_FIELDS: Final = ("customer_id", *DIMENSIONS)
_CENT, _RATIO = Decimal("0.01"), Decimal("0.000001")

Row = Mapping[str, Any]


class CustomerGroup(BaseModel):
    key: str
    customers: int
    orders: int
    revenue: Decimal


class CustomerBehaviour(BaseModel):
    orders: int = Field(description="every order of the period")
    known_orders: int = Field(description="orders with a customer_id")
    known_revenue: Decimal
    customers: int
    purchase_frequency: Decimal | None = Field(description="known orders / customers")
    repeat_customers: int = Field(description="customers with 2 orders or more")
    repeat_customer_rate: Decimal | None
    new_customers: int = Field(description="no order in the previous period")
    returning_customers: int = Field(description="ordered in the previous period too")
    demographics: dict[str, list[CustomerGroup]] = Field(
        description="per age_band, region and segment: customers, orders, revenue"
    )


@dataclass
class _Customer:
    orders: int = 0
    revenue: Decimal = Decimal(0)


def _ratio(numerator: int, denominator: int) -> Decimal | None:
    if not denominator:
        return None
    return (Decimal(numerator) / denominator).quantize(_RATIO, rounding=ROUND_HALF_EVEN)


def _by_customer(orders: Iterable[Row]) -> dict[str, _Customer]:
    found: dict[str, _Customer] = defaultdict(_Customer)
    for order in orders:
        if customer_id := order.get("customer_id"):
            found[customer_id].orders += 1
            found[customer_id].revenue += Decimal(order["total"])
    return found


def _groups(
    customers: Mapping[str, _Customer], profiles: Mapping[str, Row], dimension: str
) -> list[CustomerGroup]:
    totals: dict[str, _Customer] = defaultdict(_Customer)
    people: dict[str, int] = defaultdict(int)
    for customer_id, seen in customers.items():
        key = str((profiles.get(customer_id) or {}).get(dimension) or UNKNOWN)
        people[key] += 1
        totals[key].orders += seen.orders
        totals[key].revenue += seen.revenue
    groups = [
        CustomerGroup(
            key=k, customers=people[k], orders=t.orders, revenue=t.revenue.quantize(_CENT)
        )
        for k, t in totals.items()
    ]
    return sorted(groups, key=lambda g: (-g.revenue, g.key))


def behaviour(
    current: Iterable[Row], previous: Iterable[Row], profiles: Mapping[str, Row]
) -> CustomerBehaviour:
    """The period's customer behaviour from its order rows, the previous period's (for new vs
    returning) and the CRM profiles by customer id."""
    current = list(current)
    customers = _by_customer(current)
    before = _by_customer(previous)
    known_orders = sum(c.orders for c in customers.values())
    repeat = sum(1 for c in customers.values() if c.orders >= 2)
    returning = sum(1 for customer_id in customers if customer_id in before)
    return CustomerBehaviour(
        orders=len(current),
        known_orders=known_orders,
        known_revenue=sum((c.revenue for c in customers.values()), Decimal(0)).quantize(_CENT),
        customers=len(customers),
        purchase_frequency=_ratio(known_orders, len(customers)),
        repeat_customers=repeat,
        repeat_customer_rate=_ratio(repeat, len(customers)),
        new_customers=len(customers) - returning,
        returning_customers=returning,
        demographics={d: _groups(customers, profiles, d) for d in DIMENSIONS},
    )


def latest_profiles(rows: Iterable[Row]) -> tuple[dict[str, Row], date | None]:
    """The newest snapshot's profiles by customer id, and that snapshot's date."""
    rows = list(rows)
    if not rows:
        return {}, None
    newest = max(_snapshot_day(r) for r in rows)
    return {str(r["customer_id"]): r for r in rows if _snapshot_day(r) == newest}, newest


def _snapshot_day(row: Row) -> date:
    value = row.get("snapshot_date") or row["business_date"]
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def snapshot_range(last: date) -> tuple[date, date]:
    return last - timedelta(days=SNAPSHOT_LOOKBACK_DAYS - 1), last


# --- from the lake -----------------------------------------------------------------------------


class CustomerReport(BaseModel):
    days: int
    store_id: str | None
    lake: str | None
    current_first: date
    current_last: date
    profiles_as_of: date | None = Field(description="the customers snapshot used; null: none")
    current: CustomerBehaviour
    previous: CustomerBehaviour


def report(
    lake: Lake | None, window: Window, store_ids: frozenset[str] | None, store_id: str | None
) -> CustomerReport:
    """This period's and the previous period's customer behaviour (the previous one's
    returning customers are judged against nothing before it: it is the comparison)."""
    orders: list[Row] = []
    profiles: dict[str, Row] = {}
    as_of = None
    if lake is not None:
        orders = lake.rows(ORDERS, window.previous_first, window.last)
        profiles, as_of = latest_profiles(lake.latest(CUSTOMERS, *snapshot_range(window.last)).rows)
    orders = [o for o in orders if store_ids is None or o.get("store_id") in store_ids]
    current = [o for o in orders if window.is_current(_order_day(o))]
    previous = [o for o in orders if not window.is_current(_order_day(o))]
    return CustomerReport(
        days=window.days,
        store_id=store_id,
        lake=lake.uri if lake else None,
        current_first=window.first,
        current_last=window.last,
        profiles_as_of=as_of,
        current=behaviour(current, previous, profiles),
        previous=behaviour(previous, [], profiles),
    )


def _order_day(row: Row) -> date:
    value = row["business_date"]
    return value if isinstance(value, date) else date.fromisoformat(str(value))


# --- live, from the facts table ----------------------------------------------------------------


class LiveCustomers(BaseModel):
    store_id: str | None = Field(description="null: every store of the business")
    store_ids: list[str] = Field(description="the stores counted")
    day: date = Field(description="today: the scope's business day")
    as_of: datetime
    returning_days: int = Field(description="returning: also ordered in these days before today")
    today: CustomerBehaviour


def customer_ids(orders: Iterable[Row]) -> list[str]:
    """The distinct known customers of ``orders``, whose profiles are wanted."""
    return sorted({str(o["customer_id"]) for o in orders if o.get("customer_id")})


def profiles_by_id(items: Iterable[Row]) -> dict[str, Row]:
    return {str(p["customer_id"]): p for p in items if p.get("customer_id")}
