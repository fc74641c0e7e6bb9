"""The curated data sets of the lake: one explicit, versioned Arrow schema each, and the pure
functions that turn DynamoDB items (already decoded: numbers are ``Decimal``) into their rows.

Why explicit schemas: a column's type must not depend on the day's data (an all-null column
would otherwise become ``null``-typed, a money column ``double``), and readers (DuckDB, Athena,
QuickSight) must see the same table every day. Money is ``decimal128(18, 2)``, instants are
``timestamp("us", tz="UTC")``, business days are ``date32``; keys are non-null. A change of
columns is a new ``schema_version``: its files go to their own ``v<N>`` folder (``dataset_path``),
so a folder never mixes two shapes.

Which rows belong to a business day: facts and metrics carry the store's *local* business date
of the event (``business_date`` attribute, or the metrics item's sort key), so an event that
arrives late is filed under its own day and a rerun of that day picks it up. Snapshots
(inventory, customers) are the table's state when exported, stamped with ``snapshot_date``.

Each dataset has a unique ``key``; the writer sorts rows by it, which makes a partition's files
independent of the order DynamoDB returned the items in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, Inexact, InvalidOperation, localcontext
from typing import Any

import pyarrow as pa

from storepulse import stock_levels
from storepulse.lake.paths import partition_prefix
from storepulse.layout import (
    COUNT_COUNTERS,
    MONEY_COUNTERS,
    SOCIAL_COUNTERS,
    Grain,
    Table,
    orders_of_day,
)

__all__ = [
    "DATASETS",
    "MONEY",
    "TIMESTAMP",
    "Dataset",
    "RowError",
    "build_rows",
    "customer_row",
    "daily_store_metrics_row",
    "dataset_path",
    "datasets_of",
    "inventory_rows",
    "mix_rows",
    "order_line_rows",
    "order_row",
    "refund_row",
    "social_counter",
    "social_rows",
    "sum_rows",
]

Item = Mapping[str, Any]
Row = dict[str, Any]

MONEY = pa.decimal128(18, 2)
RATE = pa.decimal128(12, 6)  # a ratio such as conversion, 6 places
TIMESTAMP = pa.timestamp("us", tz="UTC")
_CENT = Decimal("0.01")
_RATE_STEP = Decimal("0.000001")


class RowError(ValueError):
    """An item that cannot become a row of its dataset; the message names the item."""


# --- values ------------------------------------------------------------------------------------


def _key_of(item: Item) -> str:
    return f"{item.get('pk')}/{item.get('sk')}"


def _money(value: Any) -> Decimal:
    """Exactly 2 places; refuses anything that would need rounding (money is never rounded)."""
    if isinstance(value, float | bool) or value is None:
        raise ValueError(f"money must be a Decimal, got {value!r}")
    with localcontext() as ctx:
        ctx.traps[Inexact] = True
        try:
            return Decimal(value).quantize(_CENT)
        except (Inexact, InvalidOperation):
            raise ValueError(f"money with more than 2 decimal places: {value}") from None


def _count(value: Any) -> int:
    if isinstance(value, bool | float) or value is None:
        raise ValueError(f"count must be an integer, got {value!r}")
    number = Decimal(value)
    if number != number.to_integral_value():
        raise ValueError(f"count must be an integer, got {value}")
    return int(number)


def _instant(value: Any) -> datetime:
    """An ISO 8601 timestamp with a zone, as UTC (the facts store ``isoformat()``)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return moment.astimezone(UTC)


def _optional(convert: Callable[[Any], Any], value: Any) -> Any:
    return None if value is None else convert(value)


def _ratio(numerator: int | Decimal, denominator: int, step: Decimal) -> Decimal | None:
    if not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(step, rounding=ROUND_HALF_EVEN)


def _guarded(builder: Callable[..., Any]) -> Callable[..., Any]:
    """Report a bad item by its key instead of failing somewhere inside pyarrow."""

    def build(item: Item, *args: Any) -> Any:
        try:
            return builder(item, *args)
        except (KeyError, ValueError, TypeError) as exc:
            if isinstance(exc, RowError):
                raise
            detail = f"missing attribute {exc}" if isinstance(exc, KeyError) else str(exc)
            raise RowError(f"{builder.__name__}: item {_key_of(item)}: {detail}") from None

    build.__name__ = builder.__name__
    build.__doc__ = builder.__doc__
    return build


# --- facts: orders, lines, refunds -------------------------------------------------------------


def _is_fact(item: Item, kind: str) -> bool:
    return item.get("type") == kind and str(item.get("pk", "")).startswith(f"{kind.upper()}#")


def _fact_of_day(kind: str) -> Callable[[Item, date], bool]:
    def selects(item: Item, day: date) -> bool:
        return _is_fact(item, kind) and item.get("business_date") == day.isoformat()

    return selects


@_guarded
def order_row(item: Item) -> Row:
    """One row per order fact (``ORDER#<id>``/``ORDER``)."""
    return {
        "order_id": item["order_id"],
        "store_id": item["store_id"],
        "business_date": date.fromisoformat(item["business_date"]),
        "occurred_at": _instant(item["occurred_at"]),
        "channel": item["channel"],
        "currency": item["currency"],
        "customer_id": item.get("customer_id"),
        "employee_id": item.get("employee_id"),
        "total": _money(item["total"]),
        "units": _count(item["units"]),
        "line_count": len(item["lines"]),
    }


@_guarded
def order_line_rows(item: Item) -> list[Row]:
    """One row per line of an order, numbered from 1 in the order's own line order."""
    business_date = date.fromisoformat(item["business_date"])
    rows = []
    for number, line in enumerate(item["lines"], start=1):
        quantity, unit_price = _count(line["quantity"]), _money(line["unit_price"])
        rows.append(
            {
                "order_id": item["order_id"],
                "line_number": number,
                "store_id": item["store_id"],
                "business_date": business_date,
                "sku": line["sku"],
                "category": line["category"],
                "quantity": quantity,
                "unit_price": unit_price,
                "amount": _money(unit_price * quantity),
            }
        )
    return rows


@_guarded
def refund_row(item: Item) -> Row:
    """One row per refund fact; ``units`` is null when the refund names no lines."""
    lines = item.get("lines") or []
    return {
        "refund_id": item["refund_id"],
        "order_id": item["order_id"],
        "store_id": item["store_id"],
        "business_date": date.fromisoformat(item["business_date"]),
        "occurred_at": _instant(item["occurred_at"]),
        "currency": item["currency"],
        "amount": _money(item["amount"]),
        "reason": item.get("reason"),
        "units": sum(_count(line["quantity"]) for line in lines) if lines else None,
    }


# --- metrics: daily store counters and the sales mix -------------------------------------------


def _store_bucket(item: Item, kind: str) -> str | None:
    """The store of a ``S#<store>#<kind>#<year>`` metrics item; None for other items and for
    the ``ALL`` (whole business) scope."""
    parts = str(item.get("pk", "")).split("#")
    if len(parts) == 4 and parts[0] == "S" and parts[2] == kind:
        return parts[1]
    return None


def _day_bucket_of_day(item: Item, day: date) -> bool:
    return _store_bucket(item, Grain.DAY.value) is not None and item.get("sk") == day.isoformat()


def _mix_of_day(item: Item, day: date) -> bool:
    """A mix item of ``day``: sort key ``<date>`` or ``<date>#<part>``."""
    sk = str(item.get("sk", ""))
    return _store_bucket(item, "MIX") is not None and sk.split("#")[0] == day.isoformat()


@_guarded
def daily_store_metrics_row(item: Item) -> Row:
    """A store's DAY bucket; a counter the day never touched is 0."""
    counts = {name: _count(item.get(name, 0)) for name in COUNT_COUNTERS}
    money = {name: _money(item.get(name, 0)) for name in MONEY_COUNTERS}
    return {
        "store_id": _store_bucket(item, Grain.DAY.value),
        "business_date": date.fromisoformat(item["sk"]),
        **money,
        **counts,
        "conversion_rate": _ratio(counts["purchases"], counts["sessions"], _RATE_STEP),
        "average_order_value": _ratio(money["revenue"], counts["orders"], _CENT),
    }


def _mix_counter(attribute: str, dimension: str) -> tuple[str, str] | None:
    """(name, counter) of ``<dimension>#<name>#revenue|units``; names may contain ``#``."""
    prefix = f"{dimension}#"
    if not attribute.startswith(prefix):
        return None
    name, _, counter = attribute[len(prefix) :].rpartition("#")
    return (name, counter) if name and counter in ("revenue", "units") else None


@_guarded
def mix_rows(item: Item, dimension: str, column: str) -> list[Row]:
    """Partial rows of one mix item (one per category or sku); ``sum_rows`` adds the parts."""
    store_id = _store_bucket(item, "MIX")
    business_date = date.fromisoformat(str(item["sk"]).split("#")[0])
    rows: dict[str, Row] = {}
    for attribute, value in item.items():
        parsed = _mix_counter(attribute, dimension)
        if parsed is None:
            continue
        name, counter = parsed
        row = rows.setdefault(
            name,
            {
                "store_id": store_id,
                "business_date": business_date,
                column: name,
                "revenue": Decimal("0.00"),
                "units": 0,
            },
        )
        row[counter] += _money(value) if counter == "revenue" else _count(value)
    return [rows[name] for name in sorted(rows)]


def social_counter(attribute: object) -> tuple[str, str] | None:
    """(channel, counter) of a ``social#<channel>#<counter>`` attribute, else None."""
    dimension, _, rest = str(attribute).partition("#")
    channel, _, counter = rest.rpartition("#")
    return (
        (channel, counter)
        if dimension == "social" and channel and counter in SOCIAL_COUNTERS
        else None
    )


@_guarded
def social_rows(item: Item) -> list[Row]:
    """One row per social channel a store's DAY bucket has counters of (``social#<channel>#*``);
    a counter the day never touched is 0."""
    counters: dict[str, Row] = {}
    for attribute, value in item.items():
        if parsed := social_counter(attribute):
            channel, counter = parsed
            counters.setdefault(channel, dict.fromkeys(SOCIAL_COUNTERS, 0))[counter] = _count(value)
    return [
        {
            "store_id": _store_bucket(item, Grain.DAY.value),
            "business_date": date.fromisoformat(item["sk"]),
            "channel": channel,
            **counters[channel],
        }
        for channel in sorted(counters)
    ]


def sum_rows(rows: Iterable[Row], key: tuple[str, ...], measures: tuple[str, ...]) -> list[Row]:
    """Rows with the same key added up (a day's mix spread over several items)."""
    summed: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        k = tuple(row[c] for c in key)
        if k in summed:
            for measure in measures:
                summed[k][measure] += row[measure]
        else:
            summed[k] = dict(row)
    return [summed[k] for k in sorted(summed)]


# --- snapshots: inventory, customers ------------------------------------------------------------


def _inventory_item(item: Item, _day: date) -> bool:
    # Level items only: a store's levels of a release before 2026-12 are moved into them by
    # the deploy (``stock_levels.migrate``).
    return stock_levels.is_levels_item(item)


@_guarded
def inventory_rows(item: Item, snapshot_date: date) -> list[Row]:
    """The on-hand levels a level item holds (one row per sku in one store) when exported."""
    store_id = stock_levels.store_of(item)
    return [
        {
            "store_id": store_id,
            "sku": sku,
            "on_hand": level.on_hand,
            "counted_at": level.counted_at,
            "snapshot_date": snapshot_date,
        }
        for sku, level in sorted(stock_levels.levels_in(item).items())
    ]


def _customer_item(item: Item, _day: date) -> bool:
    return _is_fact(item, "customer") and item.get("sk") == "PROFILE"


@_guarded
def customer_row(item: Item, snapshot_date: date) -> Row:
    """A customer's latest profile (newest event time wins in the table)."""
    return {
        "customer_id": item["customer_id"],
        "store_id": item.get("store_id"),
        "age_band": item.get("age_band"),
        "region": item.get("region"),
        "segment": item.get("segment"),
        "updated_at": _instant(item["updated_at"]),
        "snapshot_date": snapshot_date,
    }


# --- the registry ------------------------------------------------------------------------------


def _schema(name: str, version: int, *fields: pa.Field) -> pa.Schema:
    return pa.schema(
        fields,
        metadata={"storepulse.dataset": name, "storepulse.schema_version": str(version)},
    )


_STRING = pa.string()


def _req(name: str, type_: pa.DataType = _STRING) -> pa.Field:
    return pa.field(name, type_, nullable=False)


def _opt(name: str, type_: pa.DataType = _STRING) -> pa.Field:
    return pa.field(name, type_, nullable=True)


_BUSINESS_DATE = _req("business_date", pa.date32())
_SNAPSHOT_DATE = _req("snapshot_date", pa.date32())


@dataclass(frozen=True)
class Dataset:
    """A curated data set: its schema, where its rows come from, how they are built.

    ``selects(item, day)`` picks the items of one business day (or, for a snapshot, every item
    of its kind); ``rows(item, day)`` builds that item's rows. ``summed``: rows with equal keys
    are added up (parts of one day's mix). ``gsi1_partition(day)``: the ``gsi1pk`` value whose
    items are all this dataset needs for ``day``, when a ``QuerySource`` can replace a scan."""

    name: str
    schema_version: int
    schema: pa.Schema
    table: Table
    feeds_from: str  # the items, in words (for docs and audit messages)
    key: tuple[str, ...]
    selects: Callable[[Item, date], bool] = field(repr=False)
    rows: Callable[[Item, date], list[Row]] = field(repr=False)
    summed: tuple[str, ...] = ()  # measures added up per key
    snapshot: bool = False
    gsi1_partition: Callable[[date], str] | None = field(default=None, repr=False)

    @property
    def partition_column(self) -> str:
        return "snapshot_date" if self.snapshot else "business_date"


def dataset_path(root: str, dataset: Dataset, day: date) -> str:
    """Folder of one day's files: ``<root>/<name>/dt=<day>`` (``lake.paths.partition_prefix``).
    The schema version travels in each file's metadata and the Glue table."""
    return partition_prefix(root, dataset.name, day)


def build_rows(dataset: Dataset, items: Iterable[Item], day: date) -> Iterator[Row]:
    """The rows of ``day`` from a stream of items of ``dataset.table`` (any order, any other
    items mixed in). Unsummed datasets stream; summed ones hold one row per key of the day."""
    rows = (row for item in items if dataset.selects(item, day) for row in dataset.rows(item, day))
    if dataset.summed:
        yield from sum_rows(rows, dataset.key, dataset.summed)
    else:
        yield from rows


def _per_item(builder: Callable[[Item], Row]) -> Callable[[Item, date], list[Row]]:
    return lambda item, _day: [builder(item)]


_METRIC_FIELDS = (
    [_req(name, MONEY) for name in ("revenue", "refund_amount")]
    + [_req(name, pa.int64()) for name in COUNT_COUNTERS]
    + [_opt("conversion_rate", RATE), _opt("average_order_value", MONEY)]
)


def _mix_dataset(name: str, dimension: str, column: str) -> Dataset:
    return Dataset(
        name=name,
        schema_version=1,
        schema=_schema(
            name,
            1,
            _req("store_id"),
            _BUSINESS_DATE,
            _req(column),
            _req("revenue", MONEY),
            _req("units", pa.int64()),
        ),
        table=Table.METRICS,
        feeds_from=f"S#<store>#MIX#<year> items, attributes {dimension}#<{column}>#revenue|units",
        key=("store_id", "business_date", column),
        selects=_mix_of_day,
        rows=lambda item, _day: mix_rows(item, dimension, column),
        summed=("revenue", "units"),
    )


_DATASET_LIST = (
    Dataset(
        name="orders",
        schema_version=1,
        schema=_schema(
            "orders",
            1,
            _req("order_id"),
            _req("store_id"),
            _BUSINESS_DATE,
            _req("occurred_at", TIMESTAMP),
            _req("channel"),
            _req("currency"),
            _opt("customer_id"),
            _opt("employee_id"),
            _req("total", MONEY),
            _req("units", pa.int64()),
            _req("line_count", pa.int32()),
        ),
        table=Table.FACTS,
        feeds_from="ORDER#<id>/ORDER facts (type order)",
        key=("order_id",),
        selects=_fact_of_day("order"),
        rows=_per_item(order_row),
        gsi1_partition=orders_of_day,
    ),
    Dataset(
        name="order_lines",
        schema_version=1,
        schema=_schema(
            "order_lines",
            1,
            _req("order_id"),
            _req("line_number", pa.int32()),
            _req("store_id"),
            _BUSINESS_DATE,
            _req("sku"),
            _req("category"),
            _req("quantity", pa.int64()),
            _req("unit_price", MONEY),
            _req("amount", MONEY),
        ),
        table=Table.FACTS,
        feeds_from="the lines list of ORDER#<id>/ORDER facts",
        key=("order_id", "line_number"),
        selects=_fact_of_day("order"),
        rows=lambda item, _day: order_line_rows(item),
        gsi1_partition=orders_of_day,
    ),
    Dataset(
        name="refunds",
        schema_version=1,
        schema=_schema(
            "refunds",
            1,
            _req("refund_id"),
            _req("order_id"),
            _req("store_id"),
            _BUSINESS_DATE,
            _req("occurred_at", TIMESTAMP),
            _req("currency"),
            _req("amount", MONEY),
            _opt("reason"),
            _opt("units", pa.int64()),
        ),
        table=Table.FACTS,
        feeds_from="REFUND#<id>/REFUND facts (type refund)",
        key=("refund_id",),
        selects=_fact_of_day("refund"),
        rows=_per_item(refund_row),
        gsi1_partition=orders_of_day,
    ),
    Dataset(
        name="daily_store_metrics",
        schema_version=1,
        schema=_schema("daily_store_metrics", 1, _req("store_id"), _BUSINESS_DATE, *_METRIC_FIELDS),
        table=Table.METRICS,
        feeds_from="S#<store>#DAY#<year> items, sk <date>",
        key=("store_id", "business_date"),
        selects=_day_bucket_of_day,
        rows=_per_item(daily_store_metrics_row),
    ),
    _mix_dataset("daily_category_sales", "cat", "category"),
    _mix_dataset("daily_product_sales", "sku", "sku"),
    Dataset(
        name="daily_social_metrics",
        schema_version=1,
        schema=_schema(
            "daily_social_metrics",
            1,
            _req("store_id"),
            _BUSINESS_DATE,
            _req("channel"),
            *(_req(name, pa.int64()) for name in SOCIAL_COUNTERS),
        ),
        table=Table.METRICS,
        feeds_from="S#<store>#DAY#<year> items, attributes social#<channel>#<counter>",
        key=("store_id", "business_date", "channel"),
        selects=_day_bucket_of_day,
        rows=lambda item, _day: social_rows(item),
    ),
    Dataset(
        name="inventory_snapshot",
        schema_version=1,
        schema=_schema(
            "inventory_snapshot",
            1,
            _req("store_id"),
            _req("sku"),
            _req("on_hand", pa.int64()),
            _opt("counted_at", TIMESTAMP),
            _SNAPSHOT_DATE,
        ),
        table=Table.INVENTORY,
        feeds_from="every S#<store>/#LV#<n> level item of the inventory table, one row per sku",
        key=("store_id", "sku"),
        selects=_inventory_item,
        rows=inventory_rows,
        snapshot=True,
    ),
    Dataset(
        name="customers",
        schema_version=1,
        schema=_schema(
            "customers",
            1,
            _req("customer_id"),
            _opt("store_id"),
            _opt("age_band"),
            _opt("region"),
            _opt("segment"),
            _req("updated_at", TIMESTAMP),
            _SNAPSHOT_DATE,
        ),
        table=Table.FACTS,
        feeds_from="CUSTOMER#<id>/PROFILE facts (type customer)",
        key=("customer_id",),
        selects=_customer_item,
        rows=lambda item, day: [customer_row(item, day)],
        snapshot=True,
    ),
)

DATASETS: dict[str, Dataset] = {dataset.name: dataset for dataset in _DATASET_LIST}
"""Every curated data set by name."""


def datasets_of(table: Table) -> list[Dataset]:
    """The datasets fed by one table: one pass over its items can build them all."""
    return [dataset for dataset in DATASETS.values() if dataset.table is table]
