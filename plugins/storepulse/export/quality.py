"""The audit of a staged day: Great Expectations 1.x suites, as code, per curated data set.

Per data set (``DATASETS``), two suites:

``<dataset>.partition`` (one row describing the staged partition): **schema**, every column has
the exact Arrow type of the versioned schema (``decimal128(18, 2)``, ``timestamp[us, tz=UTC]``...;
pandas cannot spell decimal types for GE's type expectations, so the types are checked as
values of this row), columns in the schema's order, the files' ``storepulse.schema_version``;
and **every selected item became rows** (items the writer refused, see ``publish.stage_table``).

``<dataset>`` (the staged rows, read from the staged Parquet into pandas with Arrow dtypes, so
money stays ``Decimal``): **non-null** for every required column (keys included), a **unique key**
(``order_id`` for orders, ``(order_id, line_number)`` for lines...), **value ranges** (no negative
quantity, price, amount or counter; a sale line has quantity >= 1), **known values** (stores and
currencies from the settings table, sales channels from the event schema), every row in the
day's **partition**, and the **row count against the source**: what the items selected for the
day call for (one row per order, per order line...; counted while staging).

``reconciliation`` (per store): the day's order revenue, the sum of ``orders.total``, equals the
day's revenue metric the real-time path wrote (``daily_store_metrics.revenue``); a store missing
on one side counts as 0 there.

Inventory ``on_hand`` has no lower bound on purpose: a sale of a sku that was never counted takes
it below zero, which is information (a stock take is due), not corrupt data.

Everything runs on an ephemeral GE context (nothing on disk, nothing online). Results go to the
lake: ``_quality/<dataset>/dt=<day>/result.json`` and ``index.html`` (a compact table rendered
here: GE's Data Docs need a configured site), and a day overview in
``_quality/_summary/dt=<day>/``. great_expectations and pandas are imported when an audit runs.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, get_args

import pyarrow as pa
import pyarrow.parquet as pq

from storepulse import events as ev
from storepulse.clock import Clock, system_clock
from storepulse.export.datasets import DATASETS, Dataset
from storepulse.layout import COUNT_COUNTERS, SettingsKind, settings_key

if TYPE_CHECKING:
    from storepulse.export.staging import StagedDataset

__all__ = [
    "CHANNELS",
    "QUALITY",
    "AuditResult",
    "Failure",
    "Reference",
    "SuiteOutcome",
    "alert_message",
    "audit_day",
    "data_expectations",
    "load_reference",
    "partition_expectations",
    "read_staged",
    "reconciliation_expectations",
    "reconciliation_frame",
    "render_html",
    "summary_uri",
    "write_results",
]

log = logging.getLogger(__name__)

QUALITY = "_quality"
SUMMARY = "_summary"
RECONCILIATION = "reconciliation"
CHANNELS: tuple[str, ...] = get_args(ev.PosSaleV1.model_fields["channel"].annotation)
_EXAMPLES = 5  # unexpected values shown per failed expectation

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
    "inventory_snapshot": {},  # on_hand may be negative: see the module docstring
    "customers": {},
}


# --- reference values from the settings table --------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """What the business declared: its stores, currencies and time zone (settings table)."""

    stores: frozenset[str]
    currencies: frozenset[str]
    timezone: str = "UTC"

    def to_dict(self) -> dict[str, Any]:
        return {
            "stores": sorted(self.stores),
            "currencies": sorted(self.currencies),
            "timezone": self.timezone,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        return cls(frozenset(data["stores"]), frozenset(data["currencies"]), data["timezone"])


def load_reference(dynamodb: Any, settings_table: str) -> Reference:
    """Stores (with their currencies) and the business profile, read with a boto3 client.
    No profile: time zone UTC and the stores' currencies (logged)."""
    stores: dict[str, str] = {}
    pages = dynamodb.get_paginator("query").paginate(
        TableName=settings_table,
        KeyConditionExpression="pk = :kind",
        ExpressionAttributeValues={":kind": {"S": SettingsKind.STORE.value}},
        ConsistentRead=True,
    )
    for page in pages:
        for item in page.get("Items", []):
            stores[item["sk"]["S"]] = item.get("currency", {}).get("S", "")
    key = settings_key(SettingsKind.BUSINESS, "profile").as_item()
    profile = dynamodb.get_item(
        TableName=settings_table, Key={k: {"S": v} for k, v in key.items()}, ConsistentRead=True
    ).get("Item")
    currencies = {c for c in stores.values() if c}
    timezone = "UTC"
    if profile:
        currencies.add(profile["currency"]["S"])
        timezone = profile["timezone"]["S"]
    else:
        log.warning("no business profile in %s: business days in UTC", settings_table)
    return Reference(frozenset(stores), frozenset(currencies), timezone)


# --- the suites, as code -----------------------------------------------------------------------


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


# --- running the suites ------------------------------------------------------------------------


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
    """One ephemeral GE context; each suite validates one pandas dataframe."""

    def __init__(self) -> None:
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

        frame = table.to_pandas(types_mapper=pd.ArrowDtype)
        batch = self.source.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe(
            "staged"
        )
        suite = self.context.suites.add(
            self.gx.ExpectationSuite(name=name, expectations=expectations)
        )
        definition = self.context.validation_definitions.add(
            self.gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        result_format: dict[str, Any] = {
            "result_format": "SUMMARY",
            "partial_unexpected_count": _EXAMPLES,
        }
        if index and all(c in frame.columns for c in index):
            result_format["unexpected_index_column_names"] = index
        result = definition.run(batch_parameters={"dataframe": frame}, result_format=result_format)
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


def _examples(result: Mapping[str, Any]) -> str:
    """A few unexpected values: the rows' keys with the value where GE gives them."""
    indexed = result.get("partial_unexpected_index_list") or []
    examples = indexed if indexed and isinstance(indexed[0], Mapping) else None
    if examples is None:
        examples = result.get("partial_unexpected_list") or []
    return ", ".join(_example(e) for e in examples[:_EXAMPLES])


def _detail(result: Mapping[str, Any], errors: list[str]) -> str:
    if errors:
        return "error: " + "; ".join(errors)
    if "unexpected_count" in result:
        count, total = result["unexpected_count"], result.get("element_count")
        return f"{count} of {total} rows ({_examples(result)})"
    if "observed_value" in result:
        return f"observed {_plain(result['observed_value'])}"
    return "failed"


def _example(value: Any) -> str:
    if isinstance(value, Mapping):
        return " ".join(f"{k}={_plain(v)}" for k, v in value.items())
    if isinstance(value, tuple | list):
        return "/".join(_plain(v) for v in value)
    return _plain(value)


def _plain(value: Any) -> str:
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
    return json.loads(json.dumps(document, default=_plain))


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
) -> AuditResult:
    """Run every suite on the staged tables of ``day`` (``tables``: data set name -> rows as
    staged; ``staged``: the stage tasks' reports, for the source counts and rejected items).
    The reconciliation runs when both ``orders`` and ``daily_store_metrics`` are present."""
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
    if "orders" in tables and "daily_store_metrics" in tables:
        frame = reconciliation_frame(tables["orders"], tables["daily_store_metrics"])
        suites.append(
            runner.run(
                RECONCILIATION, RECONCILIATION, frame, reconciliation_expectations(), ["store_id"]
            )
        )
    return AuditResult(day, suites)


# --- results in the lake -----------------------------------------------------------------------


def _folder(root: str, group: str, day: date) -> str:
    return f"{root.rstrip('/')}/{QUALITY}/{group}/dt={day.isoformat()}"


def _group_document(
    result: AuditResult, group: str, suites: list[SuiteOutcome], context: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "group": group,
        "day": result.day.isoformat(),
        "success": all(s.success for s in suites),
        "evaluated": sum(s.evaluated for s in suites),
        "failed": [str(f) for s in suites for f in s.failures],
        **context,
        "suites": {s.suite: s.result for s in suites},
    }


def write_results(
    fs: Any,
    root: str,
    result: AuditResult,
    *,
    context: Mapping[str, Any] | None = None,
    staged: Mapping[str, StagedDataset] | None = None,
) -> list[str]:
    """Write ``result.json`` and ``index.html`` per data set (and for the reconciliation) to
    ``<root>/_quality/<group>/dt=<day>/``, and the day's overview to ``_quality/_summary/``.
    ``root`` is a path of the pyarrow filesystem ``fs`` (the bucket); ``context`` (run id,
    strategy...) is added to every document. Returns the paths written."""
    context = dict(context or {})
    written = []
    for group, suites in result.groups().items():
        extra = {"staged": staged[group].to_dict()} if staged and group in staged else {}
        document = _group_document(result, group, suites, context | extra)
        written += _write_pair(
            fs, _folder(root, group, result.day), document, render_html(document)
        )
    overview = {**result.to_dict(), **context, "groups": _overview_rows(result)}
    written += _write_pair(
        fs, _folder(root, SUMMARY, result.day), overview, render_summary_html(overview)
    )
    return written


def _overview_rows(result: AuditResult) -> list[dict[str, Any]]:
    return [
        {
            "group": group,
            "success": all(s.success for s in suites),
            "evaluated": sum(s.evaluated for s in suites),
            "failed": sum(len(s.failures) for s in suites),
            "link": f"../../{group}/dt={result.day.isoformat()}/index.html",
        }
        for group, suites in result.groups().items()
    ]


def _write_pair(fs: Any, folder: str, document: Mapping[str, Any], page: str) -> list[str]:
    if fs.type_name == "local":  # S3 has no folders (creating one would leave a marker)
        fs.create_dir(folder, recursive=True)
    paths = [f"{folder}/result.json", f"{folder}/index.html"]
    contents = [json.dumps(document, indent=2, default=_plain).encode(), page.encode()]
    for path, body in zip(paths, contents, strict=True):
        with fs.open_output_stream(path) as out:
            out.write(body)
    return paths


_STYLE = (
    "body{font:14px system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;width:100%}th,td{border:1px solid #ccc;padding:4px 8px;"
    "text-align:left;vertical-align:top}th{background:#f3f3f3}.ok{color:#1a7f37}"
    ".fail{color:#c62828;font-weight:bold}code{font-size:12px}"
)


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _status(success: bool) -> str:
    return "<span class='ok'>pass</span>" if success else "<span class='fail'>FAIL</span>"


def _result_cell(item: Mapping[str, Any]) -> str:
    result = item.get("result") or {}
    messages = (item.get("exception_info") or {}).get("messages") or []
    if messages:
        return html.escape("; ".join(messages))
    if "unexpected_count" in result:
        shown = _examples(result)
        text = f"{result['unexpected_count']} of {result.get('element_count')} unexpected"
        return html.escape(text + (f": {shown}" if shown else ""))
    if "observed_value" in result:
        return html.escape(f"observed {_plain(result['observed_value'])}")
    return ""


def render_html(document: Mapping[str, Any]) -> str:
    """One data set's suites as a table: expectation, status, what was observed."""
    rows = []
    for suite, result in document["suites"].items():
        for item in result.get("results", []):
            config = item["expectation_config"]
            rows.append(
                "<tr>"
                f"<td>{html.escape(suite)}</td>"
                f"<td>{html.escape(config.get('description') or config['type'])}<br>"
                f"<code>{html.escape(config['type'])}</code></td>"
                f"<td>{_status(item['success'])}</td><td>{_result_cell(item)}</td></tr>"
            )
    rows.sort(key=lambda row: "class='ok'" in row)  # failures first
    facts = "".join(
        f"<li>{html.escape(k)}: <code>{html.escape(json.dumps(v, default=str))}</code></li>"
        for k, v in document.items()
        if k not in {"suites", "failed", "group"}
    )
    body = (
        f"<p>{_status(document['success'])} &middot; {document['evaluated']} expectations, "
        f"{len(document['failed'])} failed</p><ul>{facts}</ul>"
        "<table><tr><th>suite</th><th>expectation</th><th>status</th><th>result</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    return _page(f"{document['group']} - {document['day']}", body)


def render_summary_html(overview: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td><a href='{html.escape(g['link'])}'>{html.escape(g['group'])}</a></td>"
        f"<td>{_status(g['success'])}</td><td>{g['evaluated']}</td><td>{g['failed']}</td></tr>"
        for g in overview["groups"]
    )
    failed = "".join(f"<li>{html.escape(f)}</li>" for f in overview["failed"])
    body = (
        f"<p>{_status(overview['success'])} &middot; {overview['evaluated']} expectations in "
        f"{overview['suites']} suites, {len(overview['failed'])} failed</p>"
        + (f"<ul>{failed}</ul>" if failed else "")
        + "<table><tr><th>data set</th><th>status</th><th>evaluated</th><th>failed</th></tr>"
        + rows
        + "</table>"
    )
    return _page(f"StorePulse audit - {overview['day']}", body)


# --- the alert ---------------------------------------------------------------------------------


def summary_uri(bucket: str, day: date) -> str:
    """Where the day's audit overview is (for people: the alert names it)."""
    return f"s3://{bucket}/{QUALITY}/{SUMMARY}/dt={day.isoformat()}/index.html"


def alert_message(
    result: AuditResult, *, run_id: str, report: str, clock: Clock = system_clock
) -> dict[str, Any]:
    """The SNS alert of a failed audit, in the shape of the real-time path's alerts: a JSON
    message, ``type`` and ``severity`` attributes. Returns ``subject``, ``message`` and
    ``attributes`` (plain strings, as ``SnsHook.publish_to_target`` takes them)."""
    title = f"Nightly export of {result.day.isoformat()} failed its audit"
    message = {
        "type": "data_quality",
        "severity": "critical",
        "title": title,
        "day": result.day.isoformat(),
        "run_id": run_id,
        "sent_at": clock().isoformat(),
        "details": {
            "evaluated": result.evaluated,
            "failed": [str(f) for f in result.failures],
            "report": report,
            "published": "nothing: the lake keeps its previous partitions",
        },
    }
    return {
        "subject": title[:100],
        "message": json.dumps(message),
        "attributes": {"type": "data_quality", "severity": "critical"},
    }
