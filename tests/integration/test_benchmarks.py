"""The benchmarks of ``make bench``, in their small mode (``--small``): the same code paths as the
full runs with small numbers, so a library change that breaks a benchmark breaks this test
instead of the next ``make bench``. Each one starts its own embedded AWS, as it does alone.

Only the shape of the results is checked (every promised row and ratio is there, numeric and
positive), never a timing against a target: timings on a shared machine are noisy."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from benchmarks import (
    dashboard_latency,
    end_to_end_latency,
    export,
    idle_cost,
    incremental_export,
    persistence,
    stream_handler,
    write_cost,
)


def assert_positive(numbers: Mapping[str, Any], keys: Iterable[str] | None = None) -> None:
    for key in numbers if keys is None else keys:
        value = numbers[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert math.isfinite(value) and value > 0, (key, value)


def assert_latencies(summary: Mapping[str, Any]) -> None:
    assert_positive(summary, ["n", "p50_ms", "p95_ms"])
    assert summary["p95_ms"] >= summary["p50_ms"]


def test_stream_handler(capsys: pytest.CaptureFixture[str]) -> None:
    result = stream_handler.main(["--small"])

    deployed = result["deployed"]["window"]
    runs = {(r["handler"], r["window"]): r for r in result["runs"]}
    assert set(runs) == {
        (stream_handler.BASELINE, deployed),
        (stream_handler.OURS, 0.0),
        (stream_handler.OURS, deployed),
    }
    for run in runs.values():
        assert run["events"] == 20 and run["rate"] == 10
        assert_latencies(run)
        assert_positive(run, ["billed_wcu_per_1k", "items_per_1k", "invocations_per_1k"])
        assert_positive(run, ["events_per_s"])
        # Billed by size: never fewer units than items written.
        assert run["billed_wcu_per_1k"] >= run["items_per_1k"]
    assert_positive(result["ratios"][10.0], ["fewer_wcu", "throughput"])
    assert [t["target"] for t in result["targets"] if t["met"] is None] == [
        ">= 10x fewer billed WCU at 100 events/s",
        ">= 10x throughput at 100 events/s",
    ]
    assert "billed WCU/1k" in capsys.readouterr().out


def test_write_cost(capsys: pytest.CaptureFixture[str]) -> None:
    (row,) = write_cost.main(["--small"])

    assert (row["rate"], row["batch"]) == (10.0, 2)
    for handler in ("baseline", "ours"):
        assert_positive(row[handler], ["wcu_per_1k", "items_per_1k"])
        assert row[handler]["wcu_per_1k"] >= row[handler]["items_per_1k"]
        assert sum(row[handler]["by_kind"].values()) == pytest.approx(row[handler]["wcu_per_1k"])
    assert "ours WCU/1k" in capsys.readouterr().out


def test_end_to_end_latency(capsys: pytest.CaptureFixture[str]) -> None:
    result = end_to_end_latency.main(["--small"])

    assert_latencies(result["path"])
    assert result["path"]["n"] <= 10  # events seen in the day total, of the 10 put
    assert_latencies(result["floor"])
    assert result["floor"]["n"] == 20
    assert_positive(result, ["p50_over_floor"])
    assert "PutRecords -> day total visible" in capsys.readouterr().out


def test_idle_cost(capsys: pytest.CaptureFixture[str]) -> None:
    result = idle_cost.main(["--small"])

    runs = result["runs"]
    assert set(runs) == {idle_cost.FLOOR, idle_cost.POLLED, idle_cost.PUSHED}
    assert_positive(runs[idle_cost.POLLED])
    assert_positive(result, ["less_cpu", "tables_less_cpu"])
    assert set(result["table_runs"]) == {
        idle_cost.FLOOR,
        idle_cost.TABLES_POLLED,
        idle_cost.TABLES_WAITED,
    }
    assert_positive(result["table_runs"][idle_cost.TABLES_POLLED])
    out = capsys.readouterr().out
    assert "pushed against polled" in out and "waited on against read every 0.25 s" in out


def test_dashboard_latency(capsys: pytest.CaptureFixture[str]) -> None:
    result = dashboard_latency.main(["--small"])

    assert list(result["operations"]) == [
        "cold history, 30 days: day files only (before)",
        "cold history, 30 days: rollups",
        "baseline: DynamoDB GetItem",
        "GET /api/live/kpis (all stores)",
        "GET /api/live/kpis?store=s-001",
        "GET /api/live (whole page)",
        "GET /api/live/staffing?store=s-001",
        "baseline: S3 ListObjectsV2 (30 partitions)",
        "GET /api/history/trend?days=30",
    ]
    for summary in result["operations"].values():
        assert_latencies(summary)
    assert_positive(result, ["events", "first_history_ms"])
    assert_positive(result["fresh_process"], ["first_ms", "start_ms"])
    assert isinstance(result["missed"], list)
    out = capsys.readouterr().out
    assert "target p95" in out and "fresh process: first 30-day history request" in out


def test_incremental_export(capsys: pytest.CaptureFixture[str]) -> None:
    result = incremental_export.main(["--small"])

    for strategy in ("full", "incremental"):
        assert_positive(result[strategy], ["seconds", "bytes", "items"])
    assert_positive(result["ratios"], ["faster", "fewer_bytes", "fewer_items"])
    assert result["same_bytes"] is True  # the day's partitions, whichever strategy
    assert "full (baseline)" in capsys.readouterr().out


def test_export(capsys: pytest.CaptureFixture[str]) -> None:
    # --sizes also runs the memory-per-size report (pitr alone on the table filled further)
    result = export.main(["--small", "--sizes", "300,600"])

    assert result is not None
    assert list(result["strategies"]) == ["pitr", "scan", "operator"]
    for name, numbers in result["strategies"].items():
        assert_positive(numbers, ["seconds", "peak_rss", "bytes", "files"])
        assert numbers["growth"] >= 0, name
    for name in ("pitr", "scan"):
        assert_positive(result["strategies"][name], ["rows", "items"])
    assert_positive(result["pitr_vs_operator"], ["faster", "smaller"])
    assert result["scan_same_as_pitr"] is True  # the same Parquet, by construction
    assert_positive(result["scaling"], ["peak_rss", "items"])
    assert result["scaling"]["growth"] >= 0
    conversion = result["conversion"]
    assert conversion["same_parquet"] is True  # vectorized staging: the per-item path's bytes
    for path in ("old", "new", "old-staging", "new-staging"):
        assert_positive(conversion["paths"][path], ["rows", "cpu", "peak_rss"])
    assert_positive(conversion, ["bytes_read", "json_bytes", "speedup"])
    assert conversion["scaling"]["peak_rss_ratio"] > 0
    assert result["cost_model"]["100000000"] == "pitr"  # a huge table: the native export
    assert result["cost_model"]["300"] == "scan"
    assert isinstance(result["missed"], list)
    out = capsys.readouterr().out
    assert "DynamoDBToS3Operator" in out and "targets:" in out and "model of real AWS" in out


def test_persistence(capsys: pytest.CaptureFixture[str]) -> None:
    result = persistence.main(["--small"])

    sample, grown = result["sizes"]  # the processed sample, then twice it (a copy added)
    assert (sample["events"], grown["events"]) == (300, 600)
    for size in (sample, grown):
        assert_positive(size, ["snapshot_mib", "held_s", "snapshot_s", "restore_s"])
        assert_positive(size, ["restart_s", "restart_mib", "restart_peak_mib", "builder_peak_mib"])
        assert_positive(size["poll_ms"], ["moto", "local"])
    assert grown["snapshot_mib"] > sample["snapshot_mib"]
    assert "requests held" in capsys.readouterr().out


@pytest.mark.slow  # two simulations of two weeks and two days: minutes, not seconds
def test_trend_alerts() -> None:
    from benchmarks import trend_alerts

    result = trend_alerts.main(["--small"])
    assert result["anomalies"] == 3
    assert 0 <= result["recall"] <= 1 and 0 <= result["precision"] <= 1
    assert result["store_hours_judged"] > 0
    assert_positive(result["cost"]["cached"], ["ms_per_batch", "p50_ms"])
    assert_positive(result["cost"]["uncached"], ["ms_per_batch", "p50_ms", "reads_per_batch"])
