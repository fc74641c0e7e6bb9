"""Running the suites on an ephemeral Great Expectations context, and their outcome named for
people (``orders: total >= 0: 1 of 3 rows (-5.00)``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from storepulse.export.datasets import DATASETS
from storepulse.export.quality.live import LiveRevenue, settle
from storepulse.export.quality.reference import Reference
from storepulse.export.quality.suites import (
    closed_hours_expectations,
    data_expectations,
    partition_expectations,
    partition_frame,
    reconciliation_expectations,
    reconciliation_frame,
)

if TYPE_CHECKING:
    from storepulse.export.staging import StagedDataset

RECONCILIATION = "reconciliation"
EXAMPLES = 5  # unexpected values shown per failed expectation


@dataclass(frozen=True)
class Failure:
    """A failed expectation, named for people: ``orders: total >= 0: 1 of 3 rows (-5.00)``."""

    suite: str
    expectation: str  # GE's expectation type
    description: str
    detail: str

    def __str__(self) -> str:
        return f"{self.suite}: {self.description}: {self.detail}"


@dataclass
class SuiteOutcome:
    suite: str
    group: str  # the data set whose _quality folder holds it (or "reconciliation")
    success: bool
    evaluated: int
    failures: list[Failure]
    result: dict[str, Any] = field(repr=False)  # GE's validation result, JSON-ready


@dataclass
class AuditResult:
    """The day's audit: pass only if every expectation of every suite passed."""

    day: date
    suites: list[SuiteOutcome]

    @property
    def success(self) -> bool:
        return all(s.success for s in self.suites)

    @property
    def evaluated(self) -> int:
        return sum(s.evaluated for s in self.suites)

    @property
    def failures(self) -> list[Failure]:
        return [f for s in self.suites for f in s.failures]

    def groups(self) -> dict[str, list[SuiteOutcome]]:
        out: dict[str, list[SuiteOutcome]] = {}
        for suite in self.suites:
            out.setdefault(suite.group, []).append(suite)
        return out

    def summary(self) -> str:
        state = "passed" if self.success else "FAILED"
        head = (
            f"audit of {self.day.isoformat()} {state}: {len(self.suites)} suites, "
            f"{self.evaluated} expectations evaluated, {len(self.failures)} failed"
        )
        return "\n".join([head, *(f"- {f}" for f in self.failures)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "success": self.success,
            "suites": len(self.suites),
            "evaluated": self.evaluated,
            "failed": [str(f) for f in self.failures],
        }


class _Runner:
    """One ephemeral GE context; each suite validates one pandas dataframe.

    A suite runs on GE's validator directly, not as a stored ValidationDefinition: its run()
    also serialises the suite, the definition and the whole result into the context's stores,
    which nothing reads here (a fifth of an audit's CPU). The result is the same, its ``meta``
    without the run's identifiers (the audit's own results carry the Airflow run)."""

    def __init__(self) -> None:
        # GX logs ~200 INFO lines of its own bookkeeping on import ("Skipping registering
        # function ...", "not a known field"): in a task log they bury the audit's own numbers.
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.source = self.context.data_sources.add_pandas("staged_lake")

    def run(
        self, name: str, group: str, table: pa.Table, expectations: list[Any], index: list[str]
    ) -> SuiteOutcome:
        import pandas as pd
        from great_expectations.validator.v1_validator import Validator

        frame = table.to_pandas(types_mapper=pd.ArrowDtype)
        batch = self.source.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe(
            "staged"
        )
        suite = self.gx.ExpectationSuite(name=name, expectations=expectations)
        result_format: dict[str, Any] = {
            "result_format": "SUMMARY",
            "partial_unexpected_count": EXAMPLES,
        }
        if index and all(c in frame.columns for c in index):
            result_format["unexpected_index_column_names"] = index
        validator = Validator(
            batch_definition=batch,
            batch_parameters={"dataframe": frame},
            result_format=result_format,
        )
        result = validator.validate_expectation_suite(suite)
        document = _json_ready(result, index)
        items = document.get("results", [])
        return SuiteOutcome(
            suite=name,
            group=group,
            success=bool(result.success),
            evaluated=len(items),
            failures=[_failure(name, item) for item in items if not item["success"]],
            result=document,
        )


def _exception_messages(info: Mapping[str, Any] | None) -> list[str]:
    """GE puts an exception either at the top of ``exception_info`` or under each metric."""
    if not info:
        return []
    if "exception_message" in info:
        return [str(info["exception_message"])] if info.get("raised_exception") else []
    return sorted({str(v.get("exception_message")) for v in info.values() if isinstance(v, dict)})


def examples(result: Mapping[str, Any]) -> str:
    """A few unexpected values: the rows' keys with the value where GE gives them."""
    indexed = result.get("partial_unexpected_index_list") or []
    rows = indexed if indexed and isinstance(indexed[0], Mapping) else None
    if rows is None:
        rows = result.get("partial_unexpected_list") or []
    return ", ".join(_example(e) for e in rows[:EXAMPLES])


def _detail(result: Mapping[str, Any], errors: list[str]) -> str:
    if errors:
        return "error: " + "; ".join(errors)
    if "unexpected_count" in result:
        count, total = result["unexpected_count"], result.get("element_count")
        return f"{count} of {total} rows ({examples(result)})"
    if "observed_value" in result:
        return f"observed {plain(result['observed_value'])}"
    return "failed"


def _example(value: Any) -> str:
    if isinstance(value, Mapping):
        return " ".join(f"{k}={plain(v)}" for k, v in value.items())
    if isinstance(value, tuple | list):
        return "/".join(plain(v) for v in value)
    return plain(value)


def plain(value: Any) -> str:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if _is_missing(value):
        return "null"
    return str(value)


def _is_missing(value: Any) -> bool:
    """None, NaN, and pandas' NA and NaT (compared without importing pandas)."""
    if value is None:
        return True
    if isinstance(value, float):
        return value != value
    return type(value).__name__ in {"NAType", "NaTType"}


def _failure(suite: str, item: Mapping[str, Any]) -> Failure:
    """A failed expectation from its JSON-ready result (see ``_json_ready``)."""
    config = item["expectation_config"]
    return Failure(
        suite=suite,
        expectation=config["type"],
        description=config.get("description") or config["type"],
        detail=_detail(item.get("result") or {}, item["exception_info"]["messages"]),
    )


def _json_ready(result: Any, index: Sequence[str]) -> dict[str, Any]:
    """GE's validation result as JSON: its own serialisation for the envelope (statistics,
    suite, run), each expectation's result taken raw so money stays exact (GE would turn
    ``Decimal`` into ``float``), tracebacks dropped (their messages kept), and each unexpected
    row's key columns first (GE puts the checked column first)."""
    document = result.to_json_dict()
    document["results"] = [_item_json(item, index) for item in result.results]
    return json.loads(json.dumps(document, default=plain))


def _item_json(item: Any, index: Sequence[str]) -> dict[str, Any]:
    outcome = dict(item.result or {})
    rows = outcome.get("partial_unexpected_index_list") or []
    if rows and isinstance(rows[0], Mapping):
        outcome["partial_unexpected_index_list"] = [
            {k: row[k] for k in index if k in row} | dict(row) for row in rows
        ]
    messages = _exception_messages(item.exception_info)
    return {
        "success": bool(item.success),
        "expectation_config": item.expectation_config.to_json_dict(),
        "result": outcome,
        "exception_info": {"raised_exception": bool(messages), "messages": messages},
    }


def audit_day(
    tables: Mapping[str, pa.Table],
    day: date,
    reference: Reference,
    staged: Mapping[str, StagedDataset],
    live: LiveRevenue | None = None,
    *,
    closed_hours: pa.Table | None = None,
) -> AuditResult:
    """Run every suite on the staged tables of ``day`` (``tables``: data set name -> rows as
    staged; ``staged``: the stage tasks' reports, for the source counts and rejected items).
    The reconciliation runs when both ``orders`` and ``daily_store_metrics`` are present; with
    ``live`` (the tables now), a store whose day moved during the export is reconciled on the
    tables (``storepulse.export.quality.live``)."""
    runner = _Runner()
    suites = []
    for name, table in tables.items():
        dataset = DATASETS[name]
        report = staged[name]
        suites.append(
            runner.run(
                f"{name}.partition",
                name,
                partition_frame(table, report.rejected_count),
                partition_expectations(dataset),
                [],
            )
        )
        suites.append(
            runner.run(
                name,
                name,
                table,
                data_expectations(dataset, day, reference, report.source_rows),
                list(dataset.key),
            )
        )
    if closed_hours is not None:
        suites.append(
            runner.run(
                RECONCILIATION,
                RECONCILIATION,
                closed_hours,
                closed_hours_expectations(),
                ["store_id", "hour"],
            )
        )
    elif "orders" in tables and "daily_store_metrics" in tables:
        frame = reconciliation_frame(tables["orders"], tables["daily_store_metrics"])
        if live is not None:
            frame = settle(frame, live)
        suites.append(
            runner.run(
                RECONCILIATION, RECONCILIATION, frame, reconciliation_expectations(), ["store_id"]
            )
        )
    return AuditResult(day, suites)
