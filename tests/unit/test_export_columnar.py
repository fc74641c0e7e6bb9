"""The vectorized export conversion (``export.columnar``) against the per-item path, and the
automatic choice of the export strategy (``sources.choose_strategy``)."""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest

from storepulse import stock_levels
from storepulse.export import columnar
from storepulse.export.datasets import DATASETS, datasets_of
from storepulse.export.dynamodb_json import iter_export_items, serialize_item
from storepulse.export.sources import (
    CompletedExport,
    ExportError,
    TransferModel,
    choose_strategy,
)
from storepulse.export.staging import stage_export, stage_table
from storepulse.layout import Table
from storepulse.stock_levels import Level
from tests.jit import compile_scanner

DAY = date(2026, 11, 27)


@pytest.fixture(autouse=True, scope="module")
def _scanner_compiled() -> None:
    compile_scanner()


@pytest.fixture(autouse=True)
def scanner_at_every_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled scanner reads these small exports too (production: large ones only)."""
    monkeypatch.setattr(columnar, "SCANNER_MIN_ITEMS", 0)


def order(number: int, **changes: Any) -> dict[str, Any]:
    order_id = f"o-{number:04d}"
    item = {
        "pk": f"ORDER#{order_id}",
        "sk": "ORDER",
        "type": "order",
        "order_id": order_id,
        "store_id": f"s-00{number % 3 + 1}",
        "business_date": DAY.isoformat(),
        "occurred_at": f"2026-11-27T{8 + number % 10:02d}:15:00.250000+01:00",
        "channel": "online",
        "currency": "EUR",
        "customer_id": f"c-{number}",
        "employee_id": "emp-1",
        "total": Decimal("123456789012345.67"),  # past a float's 15-16 digits: exact or nothing
        "units": 9_007_199_254_740_993,  # 2**53 + 1: no float survives it
        "lines": [
            {"sku": "sku-1", "category": "grocery", "quantity": 2, "unit_price": Decimal("8.1")},
            {"sku": "sku-2", "category": "kitchen", "quantity": 1, "unit_price": Decimal("0.05")},
        ],
        "tags": {"a", "b"},  # SS, NS, BOOL, M: attributes no data set reads are skipped
        "scores": {Decimal(1), Decimal("2.5")},
        "gift": True,
        "meta": {"src": "pos", "n": 3},
    }
    return item | changes


def refund(number: int, lines: list[dict[str, Any]] | None) -> dict[str, Any]:
    item = {
        "pk": f"REFUND#r-{number}",
        "sk": "REFUND",
        "type": "refund",
        "refund_id": f"r-{number}",
        "order_id": "o-0001",
        "store_id": "s-001",
        "business_date": DAY.isoformat(),
        "occurred_at": "2026-11-27T12:00:00Z",
        "currency": "EUR",
        "amount": Decimal("3"),
        "reason": None,  # NULL
    }
    return item | ({"lines": lines} if lines is not None else {})


def facts() -> list[dict[str, Any]]:
    items = [order(n) for n in range(1, 40)]
    items += [
        order(90, customer_id=None, lines=[]),  # NULL optional, empty list
        order(91, business_date="2026-11-26"),  # another day
        order(92, type="refund"),  # not a fact of its kind
        refund(1, [{"sku": "sku-1", "quantity": 2}, {"sku": "sku-2", "quantity": 5}]),
        refund(2, None),
        refund(3, []),
        {"pk": "CUSTOMER#c-1", "sk": "PROFILE", "type": "customer", "customer_id": "c-1"}
        | {"updated_at": "2026-11-20T10:00:00+00:00", "region": "north"},
        {"pk": "CUSTOMER#c-1", "sk": "EVENT#1", "type": "customer", "customer_id": "c-1"},
    ]
    return items


def inventory() -> list[dict[str, Any]]:
    counted = datetime(2026, 11, 27, 6, tzinfo=UTC)
    return [
        *stock_levels.store_items("s-001", {"sku-1": Level(4, counted), "sku-2": Level(0)}),
        *stock_levels.store_items("s-002", {"sku-1": Level(-2)}),
        {"pk": "S#s-002#X", "sk": "#LV#0", "lv": {"sku-1": 1}},  # not a store's item
        {"pk": "S#s-002", "sk": "sku-9", "on_hand": 1},  # before 2026-12: the deploy moves it
    ]


def export_file(items: list[dict[str, Any]], compact: bool = False) -> bytes:
    """An export data file; ``compact``: as DynamoDB writes it (no spaces, UTF-8 unescaped)."""
    dumps: dict[str, Any] = {"separators": (",", ":"), "ensure_ascii": False} if compact else {}
    lines = (json.dumps({"Item": serialize_item(i)}, **dumps) + "\n" for i in items)
    return gzip.compress("".join(lines).encode())


class FakeS3:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        return {"Body": io.BytesIO(self.files[Key])}


def completed(files: dict[str, bytes], count: int | None) -> CompletedExport:
    return CompletedExport("arn", "bucket", "p", "FULL_EXPORT", count, tuple(files), False)


def split(items: list[dict[str, Any]], parts: int, compact: bool = False) -> dict[str, bytes]:
    return {f"data/{n}.json.gz": export_file(items[n::parts], compact) for n in range(parts)}


def per_item_rows(name: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    dataset = DATASETS[name]
    decoded = list(iter_export_items(io.BytesIO(export_file(items))))
    rows = [r for i in decoded if dataset.selects(i, DAY) for r in dataset.rows(i, DAY)]
    return sorted(rows, key=lambda r: tuple(r[k] for k in dataset.key))


def vectorized_rows(name: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    dataset, schema = DATASETS[name], columnar.parse_schema()
    files = {"f": export_file(items)}
    rows = []
    for batch in columnar.export_batches(FakeS3(files), completed(files, None), schema):
        rows += columnar.columnar_rows(dataset, batch, DAY).table.to_pylist()
    return sorted(rows, key=lambda r: tuple(r[k] for k in dataset.key))


@pytest.mark.parametrize(
    ("name", "items"),
    [
        ("orders", facts()),
        ("order_lines", facts()),
        ("refunds", facts()),
        ("customers", facts()),
    ],
)
def test_vectorized_rows_equal_the_per_item_rows(name: str, items: list[dict[str, Any]]) -> None:
    assert vectorized_rows(name, items) == per_item_rows(name, items)


def test_stock_levels_take_the_per_item_path() -> None:
    """A level item maps SKUs (attribute names) to levels: no columnar builder reads that."""
    export = completed(split(inventory(), 1), None)
    assert not columnar.applies(export, datasets_of(Table.INVENTORY))
    assert [
        (r["store_id"], r["sku"], r["on_hand"])
        for r in per_item_rows("inventory_snapshot", inventory())
    ] == [("s-001", "sku-1", 4), ("s-001", "sku-2", 0), ("s-002", "sku-1", -2)]


def test_money_and_counts_stay_exact() -> None:
    (first, *_) = vectorized_rows("orders", facts())
    assert first["total"] == Decimal("123456789012345.67")
    assert first["units"] == 9_007_199_254_740_993
    lines = vectorized_rows("order_lines", [order(1)])
    assert [(r["unit_price"], r["amount"]) for r in lines] == [
        (Decimal("8.10"), Decimal("16.20")),
        (Decimal("0.05"), Decimal("0.05")),
    ]
    units = {r["refund_id"]: r["units"] for r in vectorized_rows("refunds", facts())}
    assert units == {"r-1": 7, "r-2": None, "r-3": None}


def stage_both(
    tmp_path: Path, table: Table, items: list[dict[str, Any]], parts: int = 3, compact: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    fs, files = pafs.LocalFileSystem(), split(items, parts, compact)
    s3, export = FakeS3(files), completed(files, len(items))
    datasets = datasets_of(table)
    old = stage_table(
        lambda: (i for k in files for i in iter_export_items(io.BytesIO(files[k]))),
        datasets,
        DAY,
        str(tmp_path / "old"),
        fs,
    )
    new = stage_export(s3, export, datasets, DAY, str(tmp_path / "new"), fs)
    return old, new


def contents(paths: tuple[str, ...]) -> list[bytes]:
    return [Path(p).read_bytes() for p in paths]


@pytest.mark.parametrize(
    ("table", "compact"), [(Table.FACTS, False), (Table.FACTS, True), (Table.INVENTORY, False)]
)
def test_the_vectorized_export_stages_the_same_parquet_bytes(
    tmp_path: Path, table: Table, compact: bool
) -> None:
    items = facts() if table is Table.FACTS else inventory()
    if compact:  # raw UTF-8 in kept values, as DynamoDB's export writes them
        items = [*items, order(80, customer_id="c-ñandú-東京", channel="café")]
    old, new = stage_both(tmp_path, table, items, compact=compact)
    assert set(old) == set(new)
    for name in old:
        assert contents(old[name].files) == contents(new[name].files), name
        assert (new[name].rows, new[name].source_rows) == (old[name].rows, old[name].source_rows)
        assert new[name].items_read == old[name].items_read == len(items)
        assert new[name].strict


def test_many_batches_and_spilled_runs_give_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Blocks the scanner refuses (an escaped quote in a kept value) are parsed by pyarrow
    among blocks it reads: the same files."""
    monkeypatch.setattr(columnar, "BLOCK_BYTES", 4096)  # a few items per batch
    items = [order(n) for n in range(1, 600)]
    items[300]["customer_id"] = 'c-"301"'
    caplog.set_level(logging.INFO, logger=columnar.__name__)
    fs, files = pafs.LocalFileSystem(), split(items, 2)
    from storepulse.export.writer import WriterOptions

    small = WriterOptions(batch_rows=64, run_rows=128, merge_window_rows=16)
    datasets = datasets_of(Table.FACTS)
    old = stage_table(lambda: items, datasets, DAY, str(tmp_path / "old"), fs, options=small)
    new = stage_export(
        FakeS3(files), completed(files, len(items)), datasets, DAY, str(tmp_path / "new"), fs
    )
    for name in old:
        assert contents(old[name].files) == contents(new[name].files), name
    refused = [r.getMessage() for r in caplog.records if "parsed by pyarrow" in r.getMessage()]
    assert len(refused) == 1 and "a backslash escape" in refused[0]


def test_what_the_vectorized_path_refuses_is_staged_by_the_per_item_path(tmp_path: Path) -> None:
    """Three decimal places of money: Arrow refuses the rescale, the per-item path refuses the
    row, and the table is staged as-is for the audit exactly as before."""
    items = [*facts(), order(70, total=Decimal("1.005"))]
    old, new = stage_both(tmp_path, Table.FACTS, items)
    assert not new["orders"].strict and new["orders"].rejected_count == 1
    for name in old:
        assert contents(old[name].files) == contents(new[name].files), name
        assert new[name].rejected == old[name].rejected


def test_a_missed_data_file_is_an_error(tmp_path: Path) -> None:
    files = split(facts(), 2)
    export = completed(files, len(facts()) + 1)
    with pytest.raises(ExportError, match="data file"):
        stage_export(
            FakeS3(files),
            export,
            datasets_of(Table.FACTS),
            DAY,
            str(tmp_path),
            pafs.LocalFileSystem(),
        )


@pytest.mark.parametrize("damage", [lambda data: data[:-20], lambda data: b"not gzip" + data])
def test_a_damaged_data_file_fails_as_on_the_per_item_path(damage: Any) -> None:
    """Truncated or not gzip: the same error as ``gzip`` raises, never part of the items."""
    data = damage(export_file(facts()))
    with pytest.raises((EOFError, OSError)) as per_item:
        list(iter_export_items(io.BytesIO(data)))
    with pytest.raises(per_item.type, match=re.escape(str(per_item.value))):
        list(columnar.batches_of_file(io.BytesIO(data), columnar.parse_schema()))


def test_the_metrics_table_and_incremental_exports_keep_the_per_item_path() -> None:
    full = completed({}, 0)
    assert columnar.applies(full, datasets_of(Table.FACTS))
    assert not columnar.applies(full, datasets_of(Table.METRICS))  # the mix: attribute names
    incremental = CompletedExport("arn", "b", "p", "INCREMENTAL_EXPORT", None, (), False)
    assert not columnar.applies(incremental, datasets_of(Table.FACTS))


# --- the strategy ------------------------------------------------------------------------------


def test_small_tables_are_scanned_large_ones_exported() -> None:
    small = choose_strategy({"ItemCount": 5_000, "TableSizeBytes": 3_500_000}, pitr_enabled=True)
    assert small.strategy == "scan" and "the scan ends first" in small.reason
    huge = {"ItemCount": 10**8, "TableSizeBytes": 70 * 10**9}
    large = choose_strategy(huge, pitr_enabled=True)
    assert large.strategy == "pitr" and "read units" in large.reason
    off = choose_strategy(huge, pitr_enabled=False)
    assert off.strategy == "scan" and "recovery off" in off.reason


def test_the_cost_model_is_exact_money_and_read_units_per_4kb() -> None:
    model = TransferModel()
    assert model.scan_read_units(1, 1) == 1
    assert model.scan_read_units(10, 8192) == 2
    assert model.scan_usd(8_000_000) == Decimal("1.0000")
    assert model.export_usd(10**9) == Decimal("0.1000")
    # no size reported yet (DescribeTable updates it every ~6 h): estimated from the count
    assert model.table_bytes(1000, 0) == 1000 * model.average_item_bytes
    faster_export = TransferModel(export_fixed_seconds=0)
    assert choose_strategy({"ItemCount": 10}, pitr_enabled=True, model=faster_export).strategy == (
        "pitr"
    )
