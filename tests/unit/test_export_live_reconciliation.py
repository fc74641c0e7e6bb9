"""A day that moved during its export: the snapshot's mismatch is checked against the tables,
and only a mismatch the tables still hold fails the audit."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

import pyarrow as pa

from storepulse.export.quality.live import SNAPSHOT, TABLES, Revenue, settle
from storepulse.export.quality.suites import reconciliation_frame
from tests.unit.test_export_quality import audit, good_tables, metrics_item, staged_table

D = Decimal


def frame(*rows: tuple[str, str, str]) -> pa.Table:
    money = pa.decimal128(38, 2)
    return pa.table(
        {
            "store_id": [r[0] for r in rows],
            "order_revenue": pa.array([D(r[1]) for r in rows], money),
            "metric_revenue": pa.array([D(r[2]) for r in rows], money),
        }
    )


class Tables:
    """What the tables answer, one reading after the other (the last one repeats)."""

    def __init__(self, *readings: Mapping[str, tuple[str, str]]) -> None:
        self.readings = list(readings)
        self.asked: list[list[str]] = []

    def __call__(self, stores: Iterable[str]) -> dict[str, Revenue]:
        stores = sorted(stores)
        self.asked.append(stores)
        reading = self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]
        return {s: Revenue(D(reading[s][0]), D(reading[s][1])) for s in stores}


def test_agreeing_stores_are_compared_on_the_snapshot_without_reading_the_tables() -> None:
    tables = Tables({})
    settled = settle(frame(("s-001", "10.00", "10.00")), tables, sleep=lambda _: None)
    assert settled.column("compared").to_pylist() == [SNAPSHOT]
    assert tables.asked == []


def test_a_day_that_moved_is_reconciled_on_the_tables_once_they_agree() -> None:
    # an order arrived after the orders were staged, and its counters after the first re-read
    tables = Tables({"s-002": ("17.00", "12.00")}, {"s-002": ("17.00", "17.00")})
    staged = frame(("s-001", "10.00", "10.00"), ("s-002", "12.00", "17.00"))
    settled = settle(staged, tables, sleep=lambda _: None).to_pylist()
    assert settled[1] == {
        "store_id": "s-002",
        "order_revenue": D("17.00"),
        "metric_revenue": D("17.00"),
        "compared": TABLES,
    }
    assert settled[0]["compared"] == SNAPSHOT
    assert tables.asked == [["s-002"], ["s-002"]]


def test_a_mismatch_the_tables_still_hold_stays_a_mismatch() -> None:
    tables = Tables({"s-001": ("24.30", "20.00")})
    settled = settle(frame(("s-001", "24.30", "20.00")), tables, sleep=lambda _: None)
    assert settled.to_pylist()[0] == {
        "store_id": "s-001",
        "order_revenue": D("24.30"),
        "metric_revenue": D("20.00"),
        "compared": SNAPSHOT,
    }
    assert len(tables.asked) == 1  # no waiting for a day that does not move


def test_a_day_that_never_agrees_keeps_the_staged_mismatch_after_the_attempts() -> None:
    moving = Tables({"s-001": ("30.00", "20.00")}, {"s-001": ("31.00", "21.00")})
    pauses: list[float] = []
    settled = settle(frame(("s-001", "24.30", "20.00")), moving, attempts=3, sleep=pauses.append)
    assert settled.to_pylist()[0]["compared"] == SNAPSHOT
    assert settled.to_pylist()[0]["order_revenue"] == D("24.30")
    assert len(moving.asked) == 3 and len(pauses) == 2


def test_the_audit_passes_a_moved_day_and_still_fails_a_wrong_one() -> None:
    tables = good_tables()
    tables["daily_store_metrics"] = staged_table(
        "daily_store_metrics", [metrics_item("s-001", "20.00"), metrics_item("s-002")]
    )
    assert reconciliation_frame(tables["orders"], tables["daily_store_metrics"]).num_rows == 2
    assert not audit(tables).success  # no tables to ask: the snapshot decides

    moved = Tables({"s-001": ("30.00", "30.00")})
    assert audit(tables, live=moved).success
    wrong = Tables({"s-001": ("24.30", "20.00")})
    assert not audit(tables, live=wrong).success
