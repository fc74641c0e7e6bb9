"""The yearly rollup of ``daily_store_metrics`` (``export.rollup``): content, idempotent rewrite."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from storepulse.export.datasets import DATASETS
from storepulse.export.rollup import covered_days, rollup_path, update_rollup
from storepulse.lake.paths import partition_prefix
from storepulse.layout import COUNT_COUNTERS
from tests.lake import write_rows

METRICS = DATASETS["daily_store_metrics"]
DAY = date(2026, 11, 27)


def row(store: str, day: date, revenue: str, orders: int) -> dict[str, Any]:
    return {
        "store_id": store,
        "business_date": day,
        "revenue": Decimal(revenue),
        "refund_amount": Decimal("0.00"),
        **dict.fromkeys(COUNT_COUNTERS, 0),
        "orders": orders,
        "conversion_rate": None,
        "average_order_value": None,
    }


def publish(root: Path, day: date, rows: list[dict[str, Any]]) -> None:
    """A published partition without a manifest: its part files are its content."""
    folder = partition_prefix(str(root), METRICS.name, day)
    write_rows(rows, folder, METRICS.schema, sort_by=METRICS.key)


def rollup_rows(root: Path, year: int) -> list[tuple[str, date, Decimal, int]]:
    table = pq.read_table(rollup_path(str(root), METRICS, year))
    return [
        (r["store_id"], r["business_date"], r["revenue"], r["orders"]) for r in table.to_pylist()
    ]


def test_a_year_of_days_in_one_object_with_the_days_it_covers(tmp_path: Path) -> None:
    fs = pafs.LocalFileSystem()
    publish(tmp_path, DAY, [row("s-002", DAY, "5.00", 1), row("s-001", DAY, "12.10", 2)])
    publish(tmp_path, DAY - timedelta(days=1), [row("s-001", DAY - timedelta(days=1), "1.00", 1)])
    publish(tmp_path, DAY + timedelta(days=1), [])  # exported, no rows: still covered
    for day in (DAY, DAY - timedelta(days=1), DAY + timedelta(days=1)):
        report = update_rollup(fs, str(tmp_path), METRICS, day)
    assert (report.year, report.days, report.rows, report.changed) == (2026, 3, 3, True)
    assert rollup_rows(tmp_path, 2026) == [  # by day, then store
        ("s-001", DAY - timedelta(days=1), Decimal("1.00"), 1),
        ("s-001", DAY, Decimal("12.10"), 2),
        ("s-002", DAY, Decimal("5.00"), 1),
    ]
    schema = pq.read_schema(rollup_path(str(tmp_path), METRICS, 2026))
    assert covered_days(schema) == {DAY - timedelta(days=1), DAY, DAY + timedelta(days=1)}
    assert schema.field("revenue").type == METRICS.schema.field("revenue").type  # exact money


def test_a_rerun_rewrites_its_day_and_an_unchanged_rerun_writes_nothing(tmp_path: Path) -> None:
    fs = pafs.LocalFileSystem()
    other = DAY - timedelta(days=3)
    publish(tmp_path, other, [row("s-001", other, "7.00", 1)])
    publish(tmp_path, DAY, [row("s-001", DAY, "12.10", 2)])
    update_rollup(fs, str(tmp_path), METRICS, other)
    update_rollup(fs, str(tmp_path), METRICS, DAY)
    path = Path(rollup_path(str(tmp_path), METRICS, 2026))
    first = path.read_bytes()

    assert not update_rollup(fs, str(tmp_path), METRICS, DAY).changed
    assert path.read_bytes() == first

    # late events: the day is exported again with more; its rows are replaced, not added
    publish(tmp_path, DAY, [row("s-001", DAY, "20.10", 3), row("s-003", DAY, "1.00", 1)])
    assert update_rollup(fs, str(tmp_path), METRICS, DAY).changed
    assert rollup_rows(tmp_path, 2026) == [
        ("s-001", other, Decimal("7.00"), 1),
        ("s-001", DAY, Decimal("20.10"), 3),
        ("s-003", DAY, Decimal("1.00"), 1),
    ]


def test_each_year_has_its_own_object(tmp_path: Path) -> None:
    fs = pafs.LocalFileSystem()
    new_year = date(2027, 1, 1)
    publish(tmp_path, new_year, [row("s-001", new_year, "3.00", 1)])
    report = update_rollup(fs, str(tmp_path), METRICS, new_year)
    assert report.path.endswith("_rollups/daily_store_metrics/v1/year=2027/part-00000.parquet")
    assert rollup_rows(tmp_path, 2027) == [("s-001", new_year, Decimal("3.00"), 1)]
    assert not Path(rollup_path(str(tmp_path), METRICS, 2026)).exists()
