"""The hourly compaction's audit without AWS: the nightly export's suites on a day under way,
the reconciliation judging closed hours only (the hour still open is not judged)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from storepulse.capture.audit import (
    CAPTURE_GRACE,
    CompactionAudit,
    HourMetrics,
    closed_hours_frame,
    settle_hours,
)
from storepulse.export.datasets import DATASETS, build_rows
from storepulse.export.quality import Reference
from storepulse.export.staging import StagedDataset
from storepulse.layout import Grain, bucket_keys, hour_buckets
from tests.unit.test_export_datasets import order_item

DAY = date(2026, 11, 26)
REFERENCE = Reference(frozenset({"s-001", "s-002"}), frozenset({"EUR"}), "Europe/Paris")
NOW = datetime(2026, 11, 26, 12, 3, tzinfo=UTC)  # 12Z is under way; 11Z closed 3 minutes ago


def _order(order_id: str, at: str, total: str, store: str = "s-001") -> dict[str, Any]:
    item = order_item(order_id, store_id=store, occurred_at=at, total=Decimal(total))
    return item | {"units": Decimal(1), "lines": [item["lines"][1] | {"unit_price": total}]}


ORDERS = [
    _order("o-1", "2026-11-26T09:10:00+00:00", "5.00"),
    _order("o-2", "2026-11-26T09:50:00+00:00", "2.50"),
    _order("o-3", "2026-11-26T12:00:30+00:00", "7.00"),  # the open hour
    _order("o-4", "2026-11-26T10:00:00+00:00", "1.00", store="s-002"),
]


def _hourly(buckets: dict[tuple[str, str], HourMetrics]) -> Any:
    def read(store: str, day: date) -> dict[str, HourMetrics]:
        assert day == DAY
        return {hour: m for (s, hour), m in buckets.items() if s == store}

    return read


AGREEING = {
    ("s-001", "2026-11-26T09Z"): HourMetrics(2, Decimal("7.50")),
    ("s-001", "2026-11-26T12Z"): HourMetrics(3, Decimal("30.00")),  # open: not judged
    ("s-002", "2026-11-26T10Z"): HourMetrics(1, Decimal("1.00")),
}


def _rows(name: str) -> list[dict[str, Any]]:
    return build_rows(DATASETS[name], ORDERS, DAY)


def test_only_closed_hours_are_judged_per_store_with_both_sides() -> None:
    buckets = AGREEING | {("s-002", "2026-11-26T11Z"): HourMetrics(1, Decimal("4.00"))}
    judged_until = NOW - CAPTURE_GRACE
    frame = closed_hours_frame(_rows("orders"), DAY, {"s-001"}, _hourly(buckets), judged_until)
    assert frame.to_pylist() == [
        {
            "store_id": "s-001",
            "hour": "2026-11-26T09Z",
            "order_count": 2,
            "metric_orders": 2,
            "order_revenue": Decimal("7.50"),
            "metric_revenue": Decimal("7.50"),
        },
        {
            "store_id": "s-002",
            "hour": "2026-11-26T10Z",
            "order_count": 1,
            "metric_orders": 1,
            "order_revenue": Decimal("1.00"),
            "metric_revenue": Decimal("1.00"),
        },
        {  # counted by the real-time path, no compacted order: 0 on the orders' side
            "store_id": "s-002",
            "hour": "2026-11-26T11Z",
            "order_count": 0,
            "metric_orders": 1,
            "order_revenue": Decimal("0.00"),
            "metric_revenue": Decimal("4.00"),
        },
    ]
    # Within the grace after 12:00, 11Z is not judged yet either.
    at_12_01 = datetime(2026, 11, 26, 12, 1, tzinfo=UTC) - CAPTURE_GRACE
    early = closed_hours_frame(_rows("orders"), DAY, set(), _hourly(buckets), at_12_01)
    assert "2026-11-26T11Z" not in early.column("hour").to_pylist()


def test_the_hour_buckets_the_audit_reads_are_the_stream_processors() -> None:
    moment = datetime(2026, 11, 26, 23, 30, tzinfo=UTC)  # 00:30 in Paris: the next local day
    key = bucket_keys("s-001", moment, "Europe/Paris")
    assert key[Grain.HOUR].pk == hour_buckets("s-001", DAY + timedelta(days=1))


class _Staging:
    """Staged partitions written where the compactor writes them, on a local filesystem."""

    def __init__(self, root: Path) -> None:
        self.fs, self.root = pafs.LocalFileSystem(), root

    def stage(self, name: str) -> StagedDataset:
        dataset = DATASETS[name]
        rows = sorted(_rows(name), key=lambda r: tuple(r[k] for k in dataset.key))
        table = pa.Table.from_pylist(rows, schema=dataset.schema).replace_schema_metadata(
            {"storepulse.schema_version": str(dataset.schema_version)}
        )
        path = self.root / name / "part-00000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        return StagedDataset(name, len(rows), path.stat().st_size, (str(path),), len(rows))


def _audit(
    tmp_path: Path, buckets: dict[tuple[str, str], HourMetrics], table: list[dict] = ORDERS
) -> Any:
    staging = _Staging(tmp_path / "staging")
    staged = {"orders": staging.stage("orders")}  # the other data sets: the export's tests
    audit = CompactionAudit(
        staging.fs,
        str(tmp_path / "lake"),
        REFERENCE,
        _hourly(buckets),
        lambda day: table,  # the facts table now
        run_id="compaction-1",
        clock=lambda: NOW,
        sleep=lambda _: None,
    )
    return audit(DAY, staged, _rows("orders"))


def test_a_day_under_way_passes_when_its_closed_hours_agree(tmp_path: Path) -> None:
    result = _audit(tmp_path, AGREEING)
    assert result.success, result.summary()
    document = json.loads(
        (tmp_path / "lake/_quality/reconciliation/dt=2026-11-26/result.json").read_text()
    )
    assert document["strategy"] == "compaction" and document["success"]
    assert document["judged_until"] == (NOW - CAPTURE_GRACE).isoformat()


def test_a_closed_hour_that_disagrees_fails_with_its_numbers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    buckets = AGREEING | {("s-001", "2026-11-26T09Z"): HourMetrics(3, Decimal("9.50"))}
    with caplog.at_level(logging.ERROR, logger="storepulse.capture.audit"):
        result = _audit(tmp_path, buckets)
    assert not result.success
    failed = [str(f) for f in result.failures]
    assert failed == [
        "reconciliation: the closed hour's orders equal the orders metric, per store: "
        "1 of 2 rows (store_id=s-001 hour=2026-11-26T09Z order_count=2 metric_orders=3)",
        "reconciliation: the closed hour's order revenue equals the revenue metric, per store: "
        "1 of 2 rows (store_id=s-001 hour=2026-11-26T09Z order_revenue=7.50 metric_revenue=9.50)",
    ]
    assert "audit of 2026-11-26 FAILED" in caplog.text
    assert "metric_revenue=9.50" in caplog.text and "2 store-hours, 3 orders" in caplog.text


def test_an_hour_that_moved_during_the_compaction_is_judged_on_the_tables() -> None:
    """A sale written to both tables, not captured yet when the compaction listed the changes:
    the facts table and the bucket agree, so the hour passes on them (and says so)."""
    late = _order("o-5", "2026-11-26T09:30:00+00:00", "4.00")
    buckets = AGREEING | {("s-001", "2026-11-26T09Z"): HourMetrics(3, Decimal("11.50"))}
    frame = closed_hours_frame(_rows("orders"), DAY, set(), _hourly(buckets), NOW - CAPTURE_GRACE)
    settled = settle_hours(frame, DAY, _hourly(buckets), lambda day: [*ORDERS, late])
    nine = settled.to_pylist()[0]
    assert (nine["hour"], nine["compared"]) == ("2026-11-26T09Z", "tables")
    assert (nine["order_count"], nine["order_revenue"]) == (3, Decimal("11.50"))
    assert set(settled.column("compared").to_pylist()) == {"tables", "snapshot"}
    held = settle_hours(frame, DAY, _hourly(buckets), lambda day: ORDERS, sleep=lambda _: None)
    assert held.to_pylist()[0]["compared"] == "snapshot"  # the tables disagree: judged as is
    assert held.to_pylist()[0]["metric_revenue"] == Decimal("11.50")
