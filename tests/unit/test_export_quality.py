"""The audit's Great Expectations suites without AWS: staged rows built from items as the
export builds them, each kind of bad data named by the expectation it breaks, results written
to a local folder, the alert's shape."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from storepulse.export.datasets import DATASETS, build_rows
from storepulse.export.quality import (
    CHANNELS,
    LOWER_BOUNDS,
    AuditFailedError,
    AuditResult,
    Reference,
    alert_message,
    audit_day,
    audit_staged,
    data_expectations,
    partition_expectations,
    reconciliation_frame,
    write_results,
)
from storepulse.export.quality.live import LiveRevenue
from storepulse.export.staging import StagedDataset
from storepulse.settings import BusinessProfile, ProductSettings, StoreSettings, load_catalog
from tests.unit.test_export_datasets import order_item

DAY = date(2026, 11, 26)
REFERENCE = Reference(frozenset({"s-001", "s-002"}), frozenset({"EUR"}), "Europe/Paris")


def metrics_item(store: str = "s-001", revenue: str = "24.30", orders: int = 1) -> dict:
    return {
        "pk": f"S#{store}#DAY#2026",
        "sk": DAY.isoformat(),
        "revenue": Decimal(revenue),
        "orders": Decimal(orders),
        "units": Decimal(3),
    }


def staged_table(name: str, items: Iterable[dict]) -> pa.Table:
    """What the stage task writes for these items: the data set's rows, sorted by key."""
    dataset = DATASETS[name]
    rows = sorted(build_rows(dataset, items, DAY), key=lambda r: tuple(r[k] for k in dataset.key))
    return pa.Table.from_pylist(rows, schema=dataset.schema)


def report(name: str, table: pa.Table, source_rows: int | None = None, **extra: Any) -> Any:
    rows = table.num_rows if source_rows is None else source_rows
    return StagedDataset(name, table.num_rows, 0, ("x/part-00000.parquet",), rows, **extra)


def audit(
    tables: dict[str, pa.Table], live: LiveRevenue | None = None, **reports: StagedDataset
) -> AuditResult:
    staged = {name: reports.get(name) or report(name, table) for name, table in tables.items()}
    return audit_day(tables, DAY, REFERENCE, staged, live)


def good_tables() -> dict[str, pa.Table]:
    orders = [order_item("o-1"), order_item("o-2", store_id="s-002")]
    return {
        "orders": staged_table("orders", orders),
        "order_lines": staged_table("order_lines", orders),
        "daily_store_metrics": staged_table(
            "daily_store_metrics", [metrics_item("s-001"), metrics_item("s-002")]
        ),
    }


def failures(result: AuditResult) -> list[str]:
    return [str(f) for f in result.failures]


@pytest.fixture(scope="module")
def clean_audit() -> AuditResult:
    return audit(good_tables())


def test_a_clean_day_passes_every_suite(clean_audit: AuditResult) -> None:
    assert clean_audit.success, clean_audit.summary()
    assert [s.suite for s in clean_audit.suites] == [
        "orders.partition",
        "orders",
        "order_lines.partition",
        "order_lines",
        "daily_store_metrics.partition",
        "daily_store_metrics",
        "reconciliation",
    ]
    assert clean_audit.evaluated == sum(s.evaluated for s in clean_audit.suites) > 80
    assert clean_audit.summary().startswith("audit of 2026-11-26 passed: 7 suites")
    assert clean_audit.to_dict()["failed"] == []


def test_every_data_set_has_suites_that_describe_themselves() -> None:
    assert set(LOWER_BOUNDS) == set(DATASETS)
    for name, dataset in DATASETS.items():
        expectations = partition_expectations(dataset) + data_expectations(
            dataset, DAY, REFERENCE, 1
        )
        assert all(e.description for e in expectations), name
        columns = {e.column for e in expectations if getattr(e, "column", None)}
        assert columns - {"_schema_version", "_rejected_items"} <= set(dataset.schema.names), name
        assert set(LOWER_BOUNDS[name]) <= set(dataset.schema.names), name
    assert CHANNELS == ("in_store", "online")


def _with_column(table: pa.Table, name: str, values: list[Any]) -> pa.Table:
    index = table.schema.get_field_index(name)
    field = table.schema.field(index)
    return table.set_column(index, field, pa.array(values, field.type))


BAD_ORDERS = {
    "negative total": (
        lambda t: _with_column(t, "total", [Decimal("-1.00"), Decimal("24.30")]),
        "orders: total >= 0: 1 of 2 rows (order_id=o-1 total=-1.00)",
    ),
    "duplicated order id": (
        lambda t: _with_column(t, "order_id", ["o-1", "o-1"]),
        "orders: order_id is unique: 2 of 2 rows",
    ),
    "unknown store": (
        lambda t: _with_column(t, "store_id", ["s-001", "s-999"]),
        "orders: store_id is a store of the settings table: 1 of 2 rows",
    ),
    "unknown currency": (
        lambda t: _with_column(t, "currency", ["EUR", "USD"]),
        "orders: currency is a currency of the settings table: 1 of 2 rows",
    ),
    "unknown channel": (
        lambda t: _with_column(t, "channel", ["in_store", "phone"]),
        "orders: channel is a sales channel (in_store, online): 1 of 2 rows",
    ),
    "another day's row": (
        lambda t: _with_column(t, "business_date", [DAY, date(2026, 11, 25)]),
        "orders: business_date is 2026-11-26: 1 of 2 rows",
    ),
    "a money column typed as a float": (
        lambda t: t.set_column(
            t.schema.get_field_index("total"), "total", pa.array([24.3, 24.3], pa.float64())
        ),
        "orders.partition: total is decimal128(18, 2): 1 of 1 rows (double)",
    ),
    "a column missing": (
        lambda t: t.drop_columns(["employee_id"]),
        "orders.partition: columns are exactly order_id, store_id",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ORDERS))
def test_bad_orders_are_named_by_the_expectation_they_break(case: str) -> None:
    corrupt, expected = BAD_ORDERS[case]
    tables = good_tables()
    tables["orders"] = corrupt(tables["orders"])
    result = audit({"orders": tables["orders"]})
    assert not result.success
    assert any(f.startswith(expected) for f in failures(result)), failures(result)


def test_null_keys_and_negative_quantities_in_lines() -> None:
    lines = good_tables()["order_lines"]
    relaxed = pa.schema(
        [f.with_nullable(True) for f in lines.schema], metadata=lines.schema.metadata
    )
    rows = lines.to_pylist()
    rows[0]["order_id"], rows[1]["quantity"] = None, -2
    bad = pa.Table.from_pylist(rows, schema=relaxed)
    found = failures(audit({"order_lines": bad}))
    assert "order_lines: order_id is never null: 1 of 4 rows (order_id=null line_number=1)" in found
    assert any(
        f.startswith("order_lines: quantity >= 1: 1 of 4 rows (order_id=o-1 line_number=2")
        for f in found
    ), found


def test_row_count_against_the_source_and_rejected_items() -> None:
    orders = good_tables()["orders"]
    staged = report("orders", orders, source_rows=3, rejected_count=1, strict=False)
    found = failures(audit({"orders": orders}, orders=staged))
    assert "orders: 3 rows, as the source items call for: observed 2" in found
    assert "orders.partition: every selected item became rows: 1 of 1 rows (1)" in found


def test_schema_version_of_the_files_is_checked() -> None:
    orders = good_tables()["orders"]
    older = orders.replace_schema_metadata({"storepulse.schema_version": "0"})
    assert failures(audit({"orders": older})) == [
        "orders.partition: schema version 1: 1 of 1 rows (0)"
    ]


def test_the_days_order_revenue_must_equal_the_revenue_metric() -> None:
    tables = good_tables()
    tables["daily_store_metrics"] = staged_table(
        "daily_store_metrics", [metrics_item("s-001", "20.00"), metrics_item("s-003", "5.00")]
    )
    found = [f for f in failures(audit(tables)) if f.startswith("reconciliation")]
    assert found == [
        "reconciliation: the day's order revenue equals the revenue metric, per store: "
        "3 of 3 rows (store_id=s-001 order_revenue=24.30 metric_revenue=20.00, "
        "store_id=s-002 order_revenue=24.30 metric_revenue=0.00, "
        "store_id=s-003 order_revenue=0.00 metric_revenue=5.00)"
    ]


def test_reconciliation_sums_exactly() -> None:
    orders = staged_table(
        "orders",
        [order_item(f"o-{n}", total=Decimal("0.10"), lines=[]) for n in range(3)],
    )
    metrics = staged_table("daily_store_metrics", [metrics_item("s-001", "0.30")])
    frame = reconciliation_frame(orders, metrics).to_pylist()
    assert frame == [
        {"store_id": "s-001", "order_revenue": Decimal("0.30"), "metric_revenue": Decimal("0.30")}
    ]
    empty = reconciliation_frame(orders.slice(0, 0), metrics.slice(0, 0))
    assert empty.num_rows == 0


def test_results_are_written_as_json_and_browsable_html(tmp_path: Path) -> None:
    tables = good_tables()
    tables["orders"] = _with_column(tables["orders"], "total", [Decimal("-1.00"), Decimal("1.00")])
    result = audit(tables)
    staged = {name: report(name, table) for name, table in tables.items()}
    fs = pafs.LocalFileSystem()
    written = write_results(fs, str(tmp_path), result, context={"run_id": "r-1"}, staged=staged)
    folders = sorted({str(Path(p).parent.relative_to(tmp_path)) for p in written})
    assert folders == [
        "_quality/_summary/dt=2026-11-26",
        "_quality/daily_store_metrics/dt=2026-11-26",
        "_quality/order_lines/dt=2026-11-26",
        "_quality/orders/dt=2026-11-26",
        "_quality/reconciliation/dt=2026-11-26",
    ]
    orders = json.loads((tmp_path / "_quality/orders/dt=2026-11-26/result.json").read_text())
    assert (orders["success"], orders["run_id"], orders["staged"]["rows"]) == (False, "r-1", 2)
    assert orders["failed"] == [str(f) for f in result.failures if f.suite == "orders"]
    assert set(orders["suites"]) == {"orders", "orders.partition"}
    page = (tmp_path / "_quality/orders/dt=2026-11-26/index.html").read_text()
    assert page.index("FAIL") < page.index("order_id is unique")  # failures first
    summary = (tmp_path / "_quality/_summary/dt=2026-11-26/index.html").read_text()
    assert "href='../../orders/dt=2026-11-26/index.html'" in summary
    overview = json.loads((tmp_path / "_quality/_summary/dt=2026-11-26/result.json").read_text())
    assert overview["success"] is False and overview["evaluated"] == result.evaluated


def _staged_files(folder: Path, tables: dict[str, pa.Table]) -> dict[str, StagedDataset]:
    """The tables written as the stage task leaves them: one Parquet file per data set."""
    staged = {}
    for name, table in tables.items():
        path = folder / f"{name}.parquet"
        pq.write_table(table, path)
        staged[name] = StagedDataset(name, table.num_rows, 0, (str(path),), table.num_rows)
    return staged


def test_the_audit_task_alerts_and_fails_on_a_bad_day_only(tmp_path: Path) -> None:
    fs, sent = pafs.LocalFileSystem(), []
    context = {"run_id": "r-1", "strategy": "scan"}
    good = _staged_files(tmp_path, good_tables())

    result = audit_staged(
        fs, str(tmp_path), "lake", DAY, REFERENCE, good, context=context, send_alert=sent.append
    )
    assert result.success and sent == []
    assert (tmp_path / "_quality/orders/dt=2026-11-26/result.json").exists()

    tables = good_tables()
    tables["orders"] = _with_column(tables["orders"], "store_id", ["s-001", "s-999"])
    (tmp_path / "bad").mkdir()
    bad = _staged_files(tmp_path / "bad", tables)
    with pytest.raises(AuditFailedError, match="store_id is a store of the settings table"):
        audit_staged(
            fs, str(tmp_path), "lake", DAY, REFERENCE, bad, context=context, send_alert=sent.append
        )
    [alert] = sent
    message = json.loads(alert["message"])
    assert (message["run_id"], message["details"]["report"]) == (
        "r-1",
        "s3://lake/_quality/_summary/dt=2026-11-26/index.html",
    )
    assert any("s-999" in f for f in message["details"]["failed"])
    overview = json.loads((tmp_path / "_quality/_summary/dt=2026-11-26/result.json").read_text())
    assert (overview["success"], overview["strategy"]) == (False, "scan")


def test_the_alert_names_the_failed_expectations() -> None:
    tables = good_tables()
    tables["orders"] = _with_column(tables["orders"], "order_id", ["o-1", "o-1"])
    result = audit({"orders": tables["orders"]})
    alert = alert_message(result, run_id="scheduled__x", report="s3://lake/_quality/x")
    assert alert["attributes"] == {"type": "data_quality", "severity": "critical"}
    assert alert["subject"] == "Nightly export of 2026-11-26 failed its audit"
    message = json.loads(alert["message"])
    assert (message["type"], message["severity"], message["run_id"]) == (
        "data_quality",
        "critical",
        "scheduled__x",
    )
    assert message["details"]["failed"] == [str(f) for f in result.failures]
    assert any("order_id is unique" in f for f in message["details"]["failed"])


class FakeTable:
    """The reads ``load_catalog`` makes, on a list of settings items."""

    name = "settings"

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def query(self, **kwargs: Any) -> dict[str, Any]:
        kind = kwargs["KeyConditionExpression"].get_expression()["values"][1]
        return {"Items": [i for i in self.items if i["pk"] == kind]}

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        found = [i for i in self.items if i.items() >= kwargs["Key"].items()]
        return {"Item": found[0]} if found else {}


def test_reference_values_come_from_the_settings_table() -> None:
    stores = [
        StoreSettings(store_id=s, name=s, timezone="Europe/Berlin", currency="EUR")
        for s in ("s-001", "s-002")
    ]
    profile = BusinessProfile(name="Shop", timezone="Europe/Paris", currency="EUR")
    product = ProductSettings(sku="tea", name="Tea", category="grocery", unit_price="4.50")
    items = [s.to_item() for s in (*stores, profile, product)]
    reference = Reference.of(load_catalog(FakeTable(items), rules=False))
    assert reference == REFERENCE
    assert Reference.from_dict(json.loads(json.dumps(reference.to_dict()))) == reference
    bare = Reference.of(load_catalog(FakeTable(items[:1]), rules=False))
    assert (bare.timezone, bare.currencies) == ("UTC", frozenset({"EUR"}))
