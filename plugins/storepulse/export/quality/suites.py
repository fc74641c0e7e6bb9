"""The audit's suites, as code (Great Expectations 1.x expectations, imported when built), and
the frames they validate besides the staged rows: one row describing a staged partition, and
the per-store revenue reconciliation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any, get_args

import pyarrow as pa
import pyarrow.parquet as pq

from storepulse import events as ev
from storepulse.export.datasets import Dataset
from storepulse.export.quality.reference import Reference
from storepulse.layout import COUNT_COUNTERS

CHANNELS: tuple[str, ...] = get_args(ev.PosSaleV1.model_fields["channel"].annotation)

# Lower bounds per data set and column: (minimum, strictly greater). Money and counters never go
# negative; a sale line sells at least one unit; a refund returns a positive amount.
_ZERO = (0, False)
LOWER_BOUNDS: dict[str, dict[str, tuple[int, bool]]] = {
    "orders": {"total": _ZERO, "units": (1, False), "line_count": (1, False)},
    "order_lines": {
        "quantity": (1, False),
        "unit_price": _ZERO,
        "amount": _ZERO,
        "line_number": (1, False),
    },
    "refunds": {"amount": (0, True), "units": (1, False)},
    "daily_store_metrics": {
        "revenue": _ZERO,
        "refund_amount": _ZERO,
        "conversion_rate": _ZERO,
        "average_order_value": _ZERO,
        **dict.fromkeys(COUNT_COUNTERS, _ZERO),
    },
    "daily_category_sales": {"revenue": _ZERO, "units": _ZERO},
    "daily_product_sales": {"revenue": _ZERO, "units": _ZERO},
    "daily_social_metrics": dict.fromkeys(
        ("mentions", "followers_gained", "followers_lost", "engagements"), _ZERO
    ),
    "inventory_snapshot": {},  # on_hand may be negative: see the module docstring
    "customers": {},
}


def _gxe() -> Any:
    import great_expectations.expectations as gxe

    return gxe


def _type_name(type_: pa.DataType) -> str:
    return str(type_)


def partition_expectations(dataset: Dataset) -> list[Any]:
    """Expectations on the one-row description of a staged partition (``partition_frame``)."""
    gxe = _gxe()
    names = dataset.schema.names
    expectations = [
        gxe.ExpectTableColumnsToMatchOrderedList(
            column_list=[*names, "_schema_version", "_rejected_items"],
            description=f"columns are exactly {', '.join(names)}",
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="_schema_version",
            value_set=[str(dataset.schema_version)],
            description=f"schema version {dataset.schema_version}",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="_rejected_items",
            min_value=0,
            max_value=0,
            description="every selected item became rows",
        ),
    ]
    for f in dataset.schema:
        expectations.append(
            gxe.ExpectColumnValuesToBeInSet(
                column=f.name,
                value_set=[_type_name(f.type)],
                description=f"{f.name} is {_type_name(f.type)}",
            )
        )
    return expectations


def _known_values(dataset: Dataset, reference: Reference) -> list[Any]:
    gxe = _gxe()
    checks = {
        "store_id": (sorted(reference.stores), "a store of the settings table"),
        "currency": (sorted(reference.currencies), "a currency of the settings table"),
        "channel": (list(CHANNELS), f"a sales channel ({', '.join(CHANNELS)})"),
    }
    if dataset.name == "daily_social_metrics":  # its channels are social networks
        social = list(get_args(ev.SocialChannel))
        checks["channel"] = (social, f"a social channel ({', '.join(social)})")
    return [
        gxe.ExpectColumnValuesToBeInSet(
            column=column, value_set=values, description=f"{column} is {what}"
        )
        for column, (values, what) in checks.items()
        if column in dataset.schema.names
    ]


def _ranges(dataset: Dataset) -> list[Any]:
    gxe = _gxe()
    out = []
    for column, (minimum, strict) in LOWER_BOUNDS[dataset.name].items():
        sign = ">" if strict else ">="
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=column,
                min_value=minimum,
                strict_min=strict,
                description=f"{column} {sign} {minimum}",
            )
        )
    return out


def data_expectations(
    dataset: Dataset, day: date, reference: Reference, source_rows: int
) -> list[Any]:
    """The expectations on a data set's staged rows for ``day``."""
    gxe = _gxe()
    required = [f.name for f in dataset.schema if not f.nullable]
    expectations: list[Any] = [
        gxe.ExpectColumnValuesToNotBeNull(column=name, description=f"{name} is never null")
        for name in required
    ]
    key = list(dataset.key)
    if len(key) == 1:
        expectations.append(
            gxe.ExpectColumnValuesToBeUnique(column=key[0], description=f"{key[0]} is unique")
        )
    else:
        expectations.append(
            gxe.ExpectCompoundColumnsToBeUnique(
                column_list=key, description=f"({', '.join(key)}) is unique"
            )
        )
    expectations += _ranges(dataset) + _known_values(dataset, reference)
    expectations.append(
        gxe.ExpectColumnValuesToBeInSet(
            column=dataset.partition_column,
            value_set=[day],
            description=f"{dataset.partition_column} is {day.isoformat()}",
        )
    )
    expectations.append(
        gxe.ExpectTableRowCountToEqual(
            value=source_rows, description=f"{source_rows} rows, as the source items call for"
        )
    )
    return expectations


def reconciliation_expectations() -> list[Any]:
    gxe = _gxe()
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="store_id", description="store_id is never null"),
        gxe.ExpectColumnPairValuesToBeEqual(
            column_A="order_revenue",
            column_B="metric_revenue",
            description="the day's order revenue equals the revenue metric, per store",
        ),
    ]


def closed_hours_expectations() -> list[Any]:
    """The compaction's reconciliation (``storepulse.capture.audit.closed_hours_frame``): per
    store and closed hour, the compacted orders against the real-time hour bucket."""
    gxe = _gxe()
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="store_id", description="store_id is never null"),
        gxe.ExpectColumnPairValuesToBeEqual(
            column_A="order_count",
            column_B="metric_orders",
            description="the closed hour's orders equal the orders metric, per store",
        ),
        gxe.ExpectColumnPairValuesToBeEqual(
            column_A="order_revenue",
            column_B="metric_revenue",
            description="the closed hour's order revenue equals the revenue metric, per store",
        ),
    ]


# --- frames ------------------------------------------------------------------------------------


def read_staged(fs: Any, files: Sequence[str]) -> pa.Table:
    """The staged files of one partition as one table, with the schema they were written with
    (its metadata included)."""
    schema = pq.read_schema(files[0], filesystem=fs)
    tables = [
        pq.read_table(path, filesystem=fs, schema=schema, partitioning=None) for path in files
    ]
    return pa.concat_tables(tables).replace_schema_metadata(schema.metadata)


def partition_frame(table: pa.Table, rejected_items: int = 0) -> pa.Table:
    """One row describing a staged partition: each column's Arrow type, the schema version in
    the files' metadata, the number of items that could not become rows."""
    metadata = table.schema.metadata or {}
    version = metadata.get(b"storepulse.schema_version", b"").decode()
    columns = {f.name: [_type_name(f.type)] for f in table.schema}
    columns |= {"_schema_version": [version], "_rejected_items": [rejected_items]}
    return pa.table(columns)


def reconciliation_frame(orders: pa.Table, metrics: pa.Table) -> pa.Table:
    """Per store: the sum of the orders' totals and the revenue metric (0.00 where absent),
    exact decimals (summed by Arrow, never as floats)."""
    zero = Decimal("0.00")
    order_sums = _sums(orders, "total")
    metric_sums = _sums(metrics, "revenue")
    stores = sorted(set(order_sums) | set(metric_sums), key=lambda s: (s is None, s or ""))
    money = pa.decimal128(38, 2)
    return pa.table(
        {
            "store_id": pa.array(stores, pa.string()),
            "order_revenue": pa.array([order_sums.get(s, zero) for s in stores], money),
            "metric_revenue": pa.array([metric_sums.get(s, zero) for s in stores], money),
        }
    )


def _sums(table: pa.Table, column: str) -> dict[str | None, Decimal]:
    if (
        table.num_rows == 0
        or "store_id" not in table.column_names
        or column not in table.column_names
    ):
        return {}
    grouped = table.select(["store_id", column]).group_by("store_id").aggregate([(column, "sum")])
    totals = [Decimal("0.00") if t is None else t for t in grouped[f"{column}_sum"].to_pylist()]
    return dict(zip(grouped["store_id"].to_pylist(), totals, strict=True))
