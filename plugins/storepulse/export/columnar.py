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
Data sets whose rows come from attribute *names* (the sales mix, the stock levels a level item
maps by SKU) have no columnar builder: their tables take the per-item path (the metrics table: a
few items per store and day; the inventory table: a few items per store).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from isal import igzip

from storepulse.export.datasets import MONEY, TIMESTAMP, Dataset, RowError
from storepulse.export.sources import CompletedExport, ExportError
from storepulse.export.writer import WriteError

log = logging.getLogger(__name__)

__all__ = [
    "BLOCK_BYTES",
    "FALLBACK_ERRORS",
    "SCANNER_MIN_ITEMS",
    "ColumnarRows",
    "Items",
    "applies",
    "batches_of_file",
    "columnar_rows",
    "export_batches",
    "item_type",
    "scans",
]

# JSON per batch: ~6k order items, so memory is flat whatever the table. 8 MiB measured up to
# ~10% less CPU in one process but more peak memory at 1M items (1.18-1.29x the 100k peak against
# 1.16x), within the benchmark's noise on a loaded machine: kept at 4 MiB (2026-12-07).
BLOCK_BYTES = 4 << 20
# The compiled scanner's warm-up in a fresh process (~3.2 s of CPU: numba imported, its JIT
# loaded from the cache) against what it saves per item over pyarrow's parser (2026-12-07,
# README "Benchmarks": 4-15 us, by the load and whether numba is imported): it repays itself
# from ~250k to ~900k items.
SCANNER_MIN_ITEMS = 500_000
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


Builder = Callable[["Items", date, Dataset], ColumnarRows]


# --- reading ----------------------------------------------------------------------------------


def item_type(attributes: dict[str, pa.DataType]) -> pa.Schema:
    """The parser's schema of an export line: ``{"Item": {<attribute>: <typed value>}}``."""
    return pa.schema([("Item", pa.struct(list(attributes.items())))])


def batches_of_file(
    stream: Any, schema: pa.Schema, *, scanned: bool = True
) -> Iterator[pa.StructArray]:
    """The ``Item`` structs of one gzipped data file (a binary stream), batch by batch.

    Inflated by ISA-L (``isal``, as ``gzip.GzipFile`` with the same errors): 0.10 s of CPU per
    200k orders against 0.29 s through Arrow's zlib stream (2026-12-07, load ~15). Each block
    of whole lines is read by the compiled scanner (``export.scanner``) when it follows the
    schema, else, or when it refuses the block, by pyarrow's JSON parser: the same arrays
    (``scanned`` False: pyarrow's parser only, as the benchmark's baseline)."""
    inflated = igzip.IGzipFile(fileobj=stream, mode="rb")
    if not scanned:  # numba not even imported (its ~3.2 s warm-up is what the threshold avoids)
        yield from _parsed(pa.PythonFile(inflated, mode="r"), schema)
        return
    from storepulse.export import scanner

    layout = scanner.layout_of(schema)
    if layout is None:
        yield from _parsed(pa.PythonFile(inflated, mode="r"), schema)
        return
    for number, block in enumerate(_blocks(inflated)):
        items = scanner.scan(block, layout)
        if isinstance(items, scanner.Refused):
            log.info(
                "block %d of an export file (line %d of the block): %s; parsed by pyarrow",
                number,
                items.line,
                items.reason,
            )
            yield from _parsed(pa.BufferReader(block), schema)
        else:
            yield items


def _blocks(inflated: Any) -> Iterator[np.ndarray]:
    """The inflated bytes in blocks of whole lines, about ``BLOCK_BYTES`` each (read-only)."""
    rest = b""
    while chunk := inflated.read(BLOCK_BYTES):
        data = rest + chunk if rest else chunk
        cut = data.rfind(b"\n") + 1
        if cut:
            yield np.frombuffer(data, dtype=np.uint8, count=cut)
        rest = data[cut:]
    if rest:
        yield np.frombuffer(rest, dtype=np.uint8)


def _parsed(source: Any, schema: pa.Schema) -> Iterator[pa.StructArray]:
    """pyarrow's JSON parser over ``source`` (a file of export lines), batch by batch."""
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


def scans(export: CompletedExport) -> bool:
    """Whether the export is read by the compiled scanner: when it holds enough items to repay
    the scanner's warm-up (``SCANNER_MIN_ITEMS``); the choice is logged with its reason."""
    count = export.item_count
    chosen = (count or 0) >= SCANNER_MIN_ITEMS  # unknown: as if small
    log.info(
        "export %s of %s items read by %s (the compiled scanner from %d items: its warm-up "
        "costs about what it saves on that many)",
        export.arn,
        "?" if count is None else f"{count:,}",
        "the compiled scanner" if chosen else "pyarrow's JSON parser",
        SCANNER_MIN_ITEMS,
    )
    return chosen


def export_batches(
    s3: Any, export: CompletedExport, schema: pa.Schema, *, scanned: bool | None = None
) -> Iterator[pa.StructArray]:
    """Every item of a completed full export, file by file, batch by batch; the item count is
    checked against DynamoDB's, as ``sources.exported_items`` does. ``scanned``: as in
    ``batches_of_file``; None: by the export's size (``scans``)."""
    scanned = scans(export) if scanned is None else scanned
    count = 0
    for key in export.data_keys:
        body = s3.get_object(Bucket=export.bucket, Key=key)["Body"]
        try:
            for items in batches_of_file(body, schema, scanned=scanned):
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


class Items:
    """The items of one batch, or a selection of them, each attribute unwrapped once: the data
    sets of a table read the same attributes of the same selections (the order facts of the day
    make both orders and order lines), and a selection filters only the attributes read, not
    every field of every item."""

    def __init__(self, items: pa.StructArray, parent: Items | None = None) -> None:
        self._items, self._parent = items, parent  # a selection: ``items`` is the mask
        self._attrs: dict[str, pa.Array] = {}
        self._selections: dict[tuple[Any, ...], Items] = {}
        self.length = len(items) if parent is None else items.true_count

    def __len__(self) -> int:
        return self.length

    def attr(self, name: str) -> pa.Array:
        """The typed value of attribute ``name`` (``{"S": ...}``), null where it is missing."""
        if name not in self._attrs:
            if self._parent is None:
                self._attrs[name] = pc.struct_field(self._items, name)
            else:
                self._attrs[name] = self._parent.attr(name).filter(self._items)
        return self._attrs[name]

    def s(self, name: str) -> pa.Array:
        return pc.struct_field(self.attr(name), "S")

    def n(self, name: str, type_: pa.DataType) -> pa.Array:
        return pc.cast(pc.struct_field(self.attr(name), "N"), type_)

    def select(self, key: tuple[Any, ...], mask: Callable[[], pa.Array]) -> Items:
        """The items where ``mask()`` is true (null: false), made once per ``key``; all of them
        when it is true everywhere (the usual batch of one day's facts: no filtering at all)."""
        if key not in self._selections:
            keep = pc.fill_null(mask(), False)
            all_kept = keep.true_count == len(keep)
            self._selections[key] = self if all_kept else Items(keep, parent=self)
        return self._selections[key]


def _n_or_zero(items: Items, name: str) -> pa.Array:
    """``item.get(name, 0)``: a missing attribute is 0, a NULL one stays null (refused later)."""
    value = items.n(name, pa.int64())
    return pc.if_else(pc.is_null(items.attr(name)), pa.scalar(0, pa.int64()), value)


def _instant(strings: pa.Array) -> pa.Array:
    """ISO 8601 with a zone, as UTC. Parsed with a fixed offset zone, then viewed as "UTC" (the
    same instants): naming "UTC" in the cast loads Arrow's time zone database, ~1 s of CPU."""
    return pc.cast(strings, pa.timestamp("us", tz="+00:00")).view(TIMESTAMP)


def _is_fact(items: Items, kind: str) -> pa.Array:
    is_kind = pc.equal(items.s("type"), kind)
    return pc.and_(is_kind, pc.starts_with(items.s("pk"), f"{kind.upper()}#"))


def _fact_of_day(items: Items, kind: str, day: date) -> Items:
    def mask() -> pa.Array:
        of_day = pc.equal(items.s("business_date"), day.isoformat())
        return pc.and_(_is_fact(items, kind), of_day)

    return items.select(("fact", kind, day), mask)


def _table(dataset: Dataset, columns: dict[str, pa.Array]) -> pa.Table:
    arrays = [pc.cast(columns[f.name], f.type) for f in dataset.schema]
    return pa.Table.from_arrays(arrays, schema=dataset.schema)


def _constant(value: date, length: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.date32()), length)


# --- builders ----------------------------------------------------------------------------------


def _orders(items: Items, day: date, dataset: Dataset) -> ColumnarRows:
    orders = _fact_of_day(items, "order", day)
    columns = {name: orders.s(name) for name in _ORDER_STRINGS}
    columns |= {
        "business_date": orders.s("business_date"),
        "occurred_at": _instant(orders.s("occurred_at")),
        "total": orders.n("total", MONEY),
        "units": orders.n("units", pa.int64()),
        "line_count": pc.list_value_length(pc.struct_field(orders.attr("lines"), "L")),
    }
    return ColumnarRows(_table(dataset, columns), len(orders))


_ORDER_STRINGS = ("order_id", "store_id", "channel", "currency", "customer_id", "employee_id")


def _line_numbers(lengths: np.ndarray) -> np.ndarray:
    """1..n within each list, for lists of ``lengths`` laid end to end."""
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(int(lengths.sum()), dtype=np.int64) - starts + 1


def _order_lines(items: Items, day: date, dataset: Dataset) -> ColumnarRows:
    orders = _fact_of_day(items, "order", day)
    lists = pc.struct_field(orders.attr("lines"), "L")
    lines = Items(pc.struct_field(pc.list_flatten(lists), "M"))
    parents = pc.list_parent_indices(lists)
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy()
    quantity = lines.n("quantity", pa.int64())
    unit_price = lines.n("unit_price", MONEY)
    amount = pc.multiply(unit_price, pc.cast(quantity, pa.decimal128(19, 0)))
    columns = {name: pc.take(orders.s(name), parents) for name in ("order_id", "store_id")}
    columns |= {
        "line_number": pa.array(_line_numbers(lengths)),
        "business_date": pc.take(orders.s("business_date"), parents),
        "sku": lines.s("sku"),
        "category": lines.s("category"),
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


def _refunds(items: Items, day: date, dataset: Dataset) -> ColumnarRows:
    refunds = _fact_of_day(items, "refund", day)
    lists = pc.struct_field(refunds.attr("lines"), "L")
    quantities = Items(pc.struct_field(pc.list_flatten(lists), "M")).n("quantity", pa.int64())
    if quantities.null_count:
        raise RowError("refund line without a quantity")
    strings = ("refund_id", "order_id", "store_id", "business_date", "currency", "reason")
    columns = {name: refunds.s(name) for name in strings}
    columns |= {
        "occurred_at": _instant(refunds.s("occurred_at")),
        "amount": refunds.n("amount", MONEY),
        "units": _list_sums(lists, quantities),
    }
    return ColumnarRows(_table(dataset, columns), len(refunds))


def _customers(items: Items, day: date, dataset: Dataset) -> ColumnarRows:
    def mask() -> pa.Array:
        return pc.and_(_is_fact(items, "customer"), pc.equal(items.s("sk"), "PROFILE"))

    customers = items.select(("profiles",), mask)
    strings = ("customer_id", "store_id", "age_band", "region", "segment")
    columns = {name: customers.s(name) for name in strings}
    columns |= {
        "updated_at": _instant(customers.s("updated_at")),
        "snapshot_date": _constant(day, len(customers)),
    }
    return ColumnarRows(_table(dataset, columns), len(customers))


_FACT = ("pk", "type", "business_date", "store_id", "occurred_at", "currency")  # + the selection
_ORDER = (*_FACT, *_ORDER_STRINGS, "total", "units", "lines")
# The attributes each builder reads: the parser is given only those of the table's data sets,
# as every attribute of the schema costs per item even where it is missing (~40 ms per 100k
# items each: a null in the item's struct and in the attribute's).
_READS: dict[str, tuple[str, ...]] = {
    "orders": _ORDER,
    "order_lines": _ORDER,
    "refunds": (*_FACT, "refund_id", "order_id", "reason", "amount", "lines"),
    "customers": (
        *("pk", "sk", "type", "customer_id", "store_id"),
        *("age_band", "region", "segment", "updated_at"),
    ),
}
_TYPES: dict[str, pa.DataType] = {"lines": _LINES} | dict.fromkeys(("total", "units", "amount"), _N)

_BUILDERS: dict[str, Builder] = {
    "orders": _orders,
    "order_lines": _order_lines,
    "refunds": _refunds,
    "customers": _customers,
}


def applies(export: CompletedExport, datasets: Sequence[Dataset]) -> bool:
    """Whether a table's pass can be vectorized: a full export, every data set buildable."""
    full = export.export_type != "INCREMENTAL_EXPORT"
    return full and all(d.name in _BUILDERS for d in datasets)


def parse_schema(datasets: Sequence[Dataset] | None = None) -> pa.Schema:
    """The parser's schema: every attribute the builders of ``datasets`` read (all builders'
    when None), in a fixed order."""
    names = _READS if datasets is None else [d.name for d in datasets]
    read = {attribute: None for name in names for attribute in _READS[name]}
    return item_type({attribute: _TYPES.get(attribute, _S) for attribute in read})


def columnar_rows(dataset: Dataset, items: pa.StructArray | Items, day: date) -> ColumnarRows:
    """``dataset``'s rows among ``items`` (the ``Item`` structs of one batch) for ``day``; pass
    the batch as one ``Items`` to every data set of its table to unwrap each attribute once."""
    batch = items if isinstance(items, Items) else Items(items)
    return _BUILDERS[dataset.name](batch, day, dataset)
