"""Vectorized conversion of a native export's files: DynamoDB JSON to the data sets' Arrow rows.

The per-item path (``dynamodb_json`` then ``datasets.*_row``) costs Python work per attribute;
here each gzipped data file is parsed by pyarrow's streaming JSON reader in record batches of
``BLOCK_BYTES``, with an explicit schema naming only the typed attributes the data sets read
(``{"S": ...}``, ``{"N": ...}``, the ``L`` of ``M`` order lines; anything else is skipped by the
parser), and Arrow compute unwraps them into each data set's schema. Numbers stay strings until
Arrow casts them to ``decimal128``/``int64``: never through a float, and a value that would need
rounding or does not fit raises ``ArrowInvalid`` as the per-item path raises.

The rows are the ones the per-item builders make, so the writer's files are byte for byte the
same. Anything the vectorized path cannot convert exactly as the per-item one (a wrong type, a
missing key, an unparsable value) raises one of ``FALLBACK_ERRORS``: the caller then stages the
table with the per-item path, which either converts it or reports the problem as it always did.
Data sets whose rows come from attribute *names* (the sales mix) have no columnar builder: their
tables take the per-item path (the metrics table: a few items per store and day).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from storepulse.export.datasets import MONEY, TIMESTAMP, Dataset, RowError
from storepulse.export.sources import CompletedExport, ExportError
from storepulse.export.writer import WriteError

__all__ = [
    "BLOCK_BYTES",
    "FALLBACK_ERRORS",
    "ColumnarRows",
    "applies",
    "batches_of_file",
    "columnar_rows",
    "export_batches",
    "item_type",
]

BLOCK_BYTES = 4 << 20  # JSON per batch: ~6k order items, so memory is flat whatever the table
FALLBACK_ERRORS: tuple[type[Exception], ...] = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    RowError,
    WriteError,
)

_S = pa.struct([("S", pa.string())])
_N = pa.struct([("N", pa.string())])
_LINE = pa.struct(
    [("M", pa.struct([("sku", _S), ("category", _S), ("quantity", _N), ("unit_price", _N)]))]
)
_LINES = pa.struct([("L", pa.list_(_LINE))])


@dataclass(frozen=True)
class ColumnarRows:
    """A data set's rows of one batch, and how many rows its items call for (``source_rows``)."""

    table: pa.Table
    source_rows: int


Builder = Callable[[pa.StructArray, date, Dataset], ColumnarRows]


# --- reading ----------------------------------------------------------------------------------


def item_type(attributes: dict[str, pa.DataType]) -> pa.Schema:
    """The parser's schema of an export line: ``{"Item": {<attribute>: <typed value>}}``."""
    return pa.schema([("Item", pa.struct(list(attributes.items())))])


def batches_of_file(stream: Any, schema: pa.Schema) -> Iterator[pa.StructArray]:
    """The ``Item`` structs of one gzipped data file (a binary stream), batch by batch."""
    source = pa.CompressedInputStream(pa.PythonFile(stream, mode="r"), "gzip")
    reader = pj.open_json(
        source,
        read_options=pj.ReadOptions(block_size=BLOCK_BYTES),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
    )
    for batch in reader:
        items = batch.column(0)
        if items.null_count:  # a line without "Item" is not a full export's
            raise ExportError("an export line without Item: not a full export")
        yield items


def export_batches(s3: Any, export: CompletedExport, schema: pa.Schema) -> Iterator[pa.StructArray]:
    """Every item of a completed full export, file by file, batch by batch; the item count is
    checked against DynamoDB's, as ``sources.exported_items`` does."""
    count = 0
    for key in export.data_keys:
        body = s3.get_object(Bucket=export.bucket, Key=key)["Body"]
        try:
            for items in batches_of_file(body, schema):
                count += len(items)
                yield items
        finally:
            body.close()
    if export.item_count is not None and count != export.item_count:
        raise ExportError(
            f"export {export.arn} describes {export.item_count} items but its "
            f"{len(export.data_keys)} data file(s) hold {count}"
        )


# --- unwrapping typed attributes ---------------------------------------------------------------


def _attr(items: pa.StructArray, name: str) -> pa.Array:
    return pc.struct_field(items, name)


def _s(items: pa.StructArray, name: str) -> pa.Array:
    return pc.struct_field(_attr(items, name), "S")


def _n(items: pa.StructArray, name: str, type_: pa.DataType) -> pa.Array:
    return pc.cast(pc.struct_field(_attr(items, name), "N"), type_)


def _n_or_zero(items: pa.StructArray, name: str) -> pa.Array:
    """``item.get(name, 0)``: a missing attribute is 0, a NULL one stays null (refused later)."""
    value = _n(items, name, pa.int64())
    return pc.if_else(pc.is_null(_attr(items, name)), pa.scalar(0, pa.int64()), value)


def _instant(strings: pa.Array) -> pa.Array:
    """ISO 8601 with a zone, as UTC. Parsed with a fixed offset zone, then viewed as "UTC" (the
    same instants): naming "UTC" in the cast loads Arrow's time zone database, ~1 s of CPU."""
    return pc.cast(strings, pa.timestamp("us", tz="+00:00")).view(TIMESTAMP)


def _select(items: pa.StructArray, mask: pa.Array) -> pa.StructArray:
    return items.filter(pc.fill_null(mask, False))


def _is_fact(items: pa.StructArray, kind: str) -> pa.Array:
    is_kind = pc.equal(_s(items, "type"), kind)
    return pc.and_(is_kind, pc.starts_with(_s(items, "pk"), f"{kind.upper()}#"))


def _fact_of_day(items: pa.StructArray, kind: str, day: date) -> pa.StructArray:
    of_day = pc.equal(_s(items, "business_date"), day.isoformat())
    return _select(items, pc.and_(_is_fact(items, kind), of_day))


def _table(dataset: Dataset, columns: dict[str, pa.Array]) -> pa.Table:
    arrays = [pc.cast(columns[f.name], f.type) for f in dataset.schema]
    return pa.Table.from_arrays(arrays, schema=dataset.schema)


def _constant(value: date, length: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.date32()), length)


# --- builders ----------------------------------------------------------------------------------


def _orders(items: pa.StructArray, day: date, dataset: Dataset) -> ColumnarRows:
    orders = _fact_of_day(items, "order", day)
    columns = {name: _s(orders, name) for name in _ORDER_STRINGS}
    columns |= {
        "business_date": _s(orders, "business_date"),
        "occurred_at": _instant(_s(orders, "occurred_at")),
        "total": _n(orders, "total", MONEY),
        "units": _n(orders, "units", pa.int64()),
        "line_count": pc.list_value_length(pc.struct_field(_attr(orders, "lines"), "L")),
    }
    return ColumnarRows(_table(dataset, columns), len(orders))


_ORDER_STRINGS = ("order_id", "store_id", "channel", "currency", "customer_id", "employee_id")


def _line_numbers(lengths: np.ndarray) -> np.ndarray:
    """1..n within each list, for lists of ``lengths`` laid end to end."""
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(int(lengths.sum()), dtype=np.int64) - starts + 1


def _order_lines(items: pa.StructArray, day: date, dataset: Dataset) -> ColumnarRows:
    orders = _fact_of_day(items, "order", day)
    lists = pc.struct_field(_attr(orders, "lines"), "L")
    lines = pc.struct_field(pc.list_flatten(lists), "M")
    parents = pc.list_parent_indices(lists)
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy()
    quantity = _n(lines, "quantity", pa.int64())
    unit_price = _n(lines, "unit_price", MONEY)
    amount = pc.multiply(unit_price, pc.cast(quantity, pa.decimal128(19, 0)))
    columns = {name: pc.take(_s(orders, name), parents) for name in ("order_id", "store_id")}
    columns |= {
        "line_number": pa.array(_line_numbers(lengths)),
        "business_date": pc.take(_s(orders, "business_date"), parents),
        "sku": _s(lines, "sku"),
        "category": _s(lines, "category"),
        "quantity": quantity,
        "unit_price": unit_price,
        "amount": amount,
    }
    return ColumnarRows(_table(dataset, columns), int(lengths.sum()))


def _list_sums(lists: pa.Array, values: pa.Array) -> pa.Array:
    """Per list, the sum of its ``values`` (int64, exact); null for a null or empty list."""
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy()
    sums = np.zeros(len(lists), dtype=np.int64)
    np.add.at(sums, pc.list_parent_indices(lists).to_numpy(), values.to_numpy())
    return pa.array(sums, mask=lengths == 0)


def _refunds(items: pa.StructArray, day: date, dataset: Dataset) -> ColumnarRows:
    refunds = _fact_of_day(items, "refund", day)
    lists = pc.struct_field(_attr(refunds, "lines"), "L")
    quantities = _n(pc.struct_field(pc.list_flatten(lists), "M"), "quantity", pa.int64())
    if quantities.null_count:
        raise RowError("refund line without a quantity")
    strings = ("refund_id", "order_id", "store_id", "business_date", "currency", "reason")
    columns = {name: _s(refunds, name) for name in strings}
    columns |= {
        "occurred_at": _instant(_s(refunds, "occurred_at")),
        "amount": _n(refunds, "amount", MONEY),
        "units": _list_sums(lists, quantities),
    }
    return ColumnarRows(_table(dataset, columns), len(refunds))


def _customers(items: pa.StructArray, day: date, dataset: Dataset) -> ColumnarRows:
    profile = pc.equal(_s(items, "sk"), "PROFILE")
    customers = _select(items, pc.and_(_is_fact(items, "customer"), profile))
    strings = ("customer_id", "store_id", "age_band", "region", "segment")
    columns = {name: _s(customers, name) for name in strings}
    columns |= {
        "updated_at": _instant(_s(customers, "updated_at")),
        "snapshot_date": _constant(day, len(customers)),
    }
    return ColumnarRows(_table(dataset, columns), len(customers))


def _inventory(items: pa.StructArray, day: date, dataset: Dataset) -> ColumnarRows:
    pk, sk = _s(items, "pk"), _s(items, "sk")
    store_level = pc.and_(pc.starts_with(pk, "S#"), pc.equal(pc.count_substring(pk, "#"), 1))
    rows = _select(items, pc.and_(store_level, pc.greater(pc.utf8_length(sk), 0)))
    columns = {
        "store_id": pc.utf8_slice_codeunits(_s(rows, "pk"), 2),
        "sku": _s(rows, "sk"),
        "on_hand": _n_or_zero(rows, "on_hand"),
        "counted_at": _instant(_s(rows, "counted_at")),
        "snapshot_date": _constant(day, len(rows)),
    }
    return ColumnarRows(_table(dataset, columns), len(rows))


_FACT_ATTRIBUTES = [
    "pk",
    "sk",
    "type",
    "business_date",
    "order_id",
    "store_id",
    "occurred_at",
    "channel",
    "currency",
    "customer_id",
    "employee_id",
    "refund_id",
    "reason",
    "age_band",
    "region",
    "segment",
    "updated_at",
]
_ATTRIBUTES: dict[str, pa.DataType] = {name: _S for name in _FACT_ATTRIBUTES}
_ATTRIBUTES |= {"total": _N, "units": _N, "amount": _N, "lines": _LINES}
_ATTRIBUTES |= {"on_hand": _N, "counted_at": _S}

_BUILDERS: dict[str, Builder] = {
    "orders": _orders,
    "order_lines": _order_lines,
    "refunds": _refunds,
    "customers": _customers,
    "inventory_snapshot": _inventory,
}


def applies(export: CompletedExport, datasets: Sequence[Dataset]) -> bool:
    """Whether a table's pass can be vectorized: a full export, every data set buildable."""
    full = export.export_type != "INCREMENTAL_EXPORT"
    return full and all(d.name in _BUILDERS for d in datasets)


def parse_schema() -> pa.Schema:
    """The parser's schema: every attribute some columnar builder reads."""
    return item_type(_ATTRIBUTES)


def columnar_rows(dataset: Dataset, items: pa.StructArray, day: date) -> ColumnarRows:
    """``dataset``'s rows among ``items`` (the ``Item`` structs of one batch) for ``day``."""
    return _BUILDERS[dataset.name](items, day, dataset)
