"""QuickSight: the declared data source, SPICE data sets and dashboard, and their refresh.

``infra/quicksight/datasets.json`` declares everything (see its ``$comment``); this module
validates it, deploys it and refreshes SPICE after each publish of the lake.

Deploy (``deploy``), every step *describe, then create or update, or leave alone*:

1. the Glue catalog Athena (hence the data source) reads, database ``storepulse_<env>_curated``:
   one table per data set, as ``storepulse.lake.tables`` defines it (partition projection on
   ``dt``: readable before the first publish, nothing to register per day). The nightly export
   ensures the same definition when it publishes, so whichever runs first creates it;
2. the ATHENA data source;
3. the row-level-security data set (if declared), then one SPICE data set per curated data set,
   with its refresh properties (incremental: the lookback window);
4. the dashboard, one sheet per declared view. Its version description carries the hash of its
   definition, so an unchanged dashboard gets no new version.

Refresh (``refresh``): one ingestion per data set, except when one is already INITIALIZED,
QUEUED or RUNNING (it will pick up the new files: a second one would only be queued behind it and
spend quota), or when the data set has had its quota of manual ingestions in the last 24 h
(QuickSight Enterprise: 32 per data set; past it CreateIngestion fails anyway, here the refusal
says why and when the next slot opens). Each started ingestion is waited for; a FAILED one is
reported with QuickSight's ErrorInfo (type and message).

Only boto3 clients are passed in, so the same code runs in Airflow tasks (provider hooks' clients),
CLIs and tests. Nothing heavy is imported: DAG files may import this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from storepulse.clock import Clock, system_clock
from storepulse.config import REPO_ROOT

log = logging.getLogger(__name__)

DECLARATIONS_FILE = REPO_ROOT / "infra" / "quicksight" / "datasets.json"

ACTIVE_STATUSES = frozenset({"INITIALIZED", "QUEUED", "RUNNING"})
TERMINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
REFRESH_TYPES = frozenset({"FULL_REFRESH", "INCREMENTAL_REFRESH"})
QUOTA_WINDOW = timedelta(hours=24)
DEFAULT_QUOTA = 32  # QuickSight Enterprise: manual ingestions per data set per 24 h

# Athena (Glue) column types the declarations may use, and what QuickSight calls them.
_DECIMAL = re.compile(r"^decimal\((\d{1,2}),(\d{1,2})\)$")
_SIMPLE_TYPES: dict[str, tuple[str, str | None]] = {
    "string": ("STRING", None),
    "tinyint": ("INTEGER", None),
    "smallint": ("INTEGER", None),
    "int": ("INTEGER", None),
    "bigint": ("INTEGER", None),
    "double": ("DECIMAL", "FLOAT"),
    "float": ("DECIMAL", "FLOAT"),
    "boolean": ("BOOLEAN", None),
    "date": ("DATETIME", None),
    "timestamp": ("DATETIME", None),
}
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_PLACEHOLDERS = frozenset({"env", "region", "account_id", "lake_bucket"})
_ID = re.compile(r"^[\w-]{1,128}$")  # what QuickSight accepts in data set, view and sheet IDs
_TABLE = re.compile(r"^[a-z][a-z0-9_]{0,127}$")  # Athena: lowercase table and column names
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_ ]{0,127}$")  # a field's name in QuickSight
_VISUALS = frozenset({"LINE", "BAR", "TABLE", "PIE"})
_NUMERIC_AGGREGATIONS = frozenset({"SUM", "AVERAGE", "MIN", "MAX", "COUNT", "DISTINCT_COUNT"})
_CATEGORICAL_AGGREGATIONS = frozenset({"COUNT", "DISTINCT_COUNT"})
_GRANULARITIES = frozenset({"YEAR", "QUARTER", "MONTH", "WEEK", "DAY", "HOUR"})
_LOOKBACK_UNITS = frozenset({"HOUR", "DAY", "WEEK"})

_OWNER_ACTIONS = {
    "data_source": [
        "quicksight:DescribeDataSource",
        "quicksight:DescribeDataSourcePermissions",
        "quicksight:PassDataSource",
        "quicksight:UpdateDataSource",
        "quicksight:DeleteDataSource",
        "quicksight:UpdateDataSourcePermissions",
    ],
    "data_set": [
        "quicksight:DescribeDataSet",
        "quicksight:DescribeDataSetPermissions",
        "quicksight:PassDataSet",
        "quicksight:DescribeIngestion",
        "quicksight:ListIngestions",
        "quicksight:UpdateDataSet",
        "quicksight:DeleteDataSet",
        "quicksight:CreateIngestion",
        "quicksight:CancelIngestion",
        "quicksight:UpdateDataSetPermissions",
    ],
    "dashboard": [
        "quicksight:DescribeDashboard",
        "quicksight:ListDashboardVersions",
        "quicksight:UpdateDashboardPermissions",
        "quicksight:QueryDashboard",
        "quicksight:UpdateDashboard",
        "quicksight:DeleteDashboard",
        "quicksight:DescribeDashboardPermissions",
        "quicksight:UpdateDashboardPublishedVersion",
    ],
}


class DeclarationError(ValueError):
    """The declarations file is invalid; the message lists every problem found."""


class DeployError(RuntimeError):
    """A QuickSight or Glue resource could not be deployed; the message names it."""


# --- declarations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Athena type: string, bigint, decimal(18,2), date, timestamp ...
    quicksight_name: str | None = None  # the field's name in QuickSight, when not ``name``

    @property
    def field_name(self) -> str:
        return self.quicksight_name or self.name

    @property
    def quicksight_type(self) -> tuple[str, str | None]:
        """(Type, SubType) of the QuickSight input column."""
        if _DECIMAL.match(self.type):
            return "DECIMAL", "FIXED"
        return _SIMPLE_TYPES[self.type]

    def input_column(self) -> dict[str, str]:
        type_, sub_type = self.quicksight_type
        column = {"Name": self.name, "Type": type_}
        return column | ({"SubType": sub_type} if sub_type else {})


@dataclass(frozen=True)
class Refresh:
    mode: str  # FULL | INCREMENTAL
    lookback_column: str | None = None
    lookback_size: int | None = None
    lookback_unit: str | None = None

    @property
    def ingestion_type(self) -> str:
        return "INCREMENTAL_REFRESH" if self.mode == "INCREMENTAL" else "FULL_REFRESH"

    def refresh_properties(self) -> dict[str, Any] | None:
        """``DataSetRefreshProperties`` of an incremental data set; None for a full one."""
        if self.mode != "INCREMENTAL":
            return None
        window = {
            "ColumnName": self.lookback_column,
            "Size": self.lookback_size,
            "SizeUnit": self.lookback_unit,
        }
        return {"RefreshConfiguration": {"IncrementalRefresh": {"LookbackWindow": window}}}


@dataclass(frozen=True)
class DataSet:
    name: str
    id: str
    table: str
    s3_prefix: str
    partition_key: str | None
    refresh: Refresh
    columns: tuple[Column, ...]
    description: str = ""

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def physical_table_id(self) -> str:
        return self.table.replace("_", "-")  # QuickSight: [0-9a-zA-Z-]


@dataclass(frozen=True)
class DataSource:
    id: str
    name: str
    work_group: str
    catalog: str
    database: str
    lake_bucket: str


@dataclass(frozen=True)
class RowLevelSecurity:
    enabled: bool
    permission_policy: str
    applies_to: tuple[str, ...]
    data_set: DataSet


@dataclass(frozen=True)
class Measure:
    column: str
    aggregation: str


@dataclass(frozen=True)
class Dimension:
    column: str
    granularity: str | None = None


@dataclass(frozen=True)
class View:
    id: str
    title: str
    visual: str
    data_set: str
    dimensions: tuple[Dimension, ...]
    measures: tuple[Measure, ...]
    sort_column: str | None = None
    sort_direction: str = "DESC"
    limit: int | None = None


@dataclass(frozen=True)
class Dashboard:
    id: str
    name: str
    views: tuple[View, ...]


@dataclass(frozen=True)
class Declarations:
    data_source: DataSource
    data_sets: dict[str, DataSet]  # the curated data sets, by name
    dashboard: Dashboard
    quota: int = DEFAULT_QUOTA
    principals: tuple[str, ...] = ()
    row_level_security: RowLevelSecurity | None = None

    def data_set(self, name: str) -> DataSet:
        """A curated data set by name (``orders``) or QuickSight ID (``storepulse-dev-orders``)."""
        found = self.data_sets.get(name) or next(
            (d for d in self.data_sets.values() if d.id == name), None
        )
        if found is None:
            known = ", ".join(self.data_sets)
            raise DeclarationError(f"no data set {name!r} is declared (known: {known})")
        return found

    def every_data_set(self) -> list[DataSet]:
        """The curated data sets and the row-level-security one."""
        rls = [self.row_level_security.data_set] if self.row_level_security else []
        return rls + list(self.data_sets.values())


def _column_problems(where: str, columns: Any) -> list[str]:
    if not isinstance(columns, list) or not columns:
        return [f"{where}: columns must be a non-empty list"]
    problems, seen = [], set()
    for column in columns:
        name, type_ = column.get("name"), column.get("type")
        if not isinstance(name, str) or not _TABLE.match(name):
            problems.append(f"{where}: column name {name!r} must be a lowercase Athena name")
        label = column.get("quicksight_name")
        if label is not None and not _LABEL.match(str(label)):
            problems.append(f"{where}: quicksight_name {label!r} is not a valid field name")
        if name in seen:
            problems.append(f"{where}: column {name!r} declared twice")
        seen.add(name)
        if type_ not in _SIMPLE_TYPES and not _DECIMAL.match(str(type_)):
            problems.append(f"{where}: column {name!r} has unknown type {type_!r}")
    return problems


def _refresh_problems(where: str, refresh: Any, columns: Mapping[str, str]) -> list[str]:
    if not isinstance(refresh, dict) or refresh.get("mode") not in ("FULL", "INCREMENTAL"):
        return [f"{where}: refresh.mode must be FULL or INCREMENTAL"]
    if refresh["mode"] == "FULL":
        return []
    problems = []
    lookback = refresh.get("lookback_column")
    if columns.get(lookback) not in ("date", "timestamp"):
        problems.append(f"{where}: lookback_column {lookback!r} must be a date/timestamp column")
    window = refresh.get("lookback_window") or {}
    size = window.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        problems.append(f"{where}: lookback_window.size must be a positive integer")
    if window.get("unit") not in _LOOKBACK_UNITS:
        problems.append(f"{where}: lookback_window.unit must be one of {sorted(_LOOKBACK_UNITS)}")
    return problems


def _data_set_problems(raw: Any, where: str) -> list[str]:
    if not isinstance(raw, dict):
        return [f"{where}: must be an object"]
    problems = []
    for key in ("name", "id", "table", "s3_prefix"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            problems.append(f"{where}: {key} is required")
    if problems:
        return problems
    where = f"data set {raw['name']!r}"
    if not _ID.match(raw["id"].replace("{env}", "env")):
        problems.append(f"{where}: id {raw['id']!r} may only hold letters, digits, - and _")
    if not _TABLE.match(raw["table"]):
        problems.append(f"{where}: table {raw['table']!r} must be a lowercase Athena name")
    prefix = raw["s3_prefix"]
    if prefix.startswith(("/", "s3://")) or not prefix.endswith("/"):
        problems.append(f"{where}: s3_prefix {prefix!r} must be a key prefix ending with '/'")
    problems += _column_problems(where, raw.get("columns"))
    columns = {c.get("name"): c.get("type") for c in raw.get("columns") or []}
    partition_key = raw.get("partition_key")
    if partition_key is not None and (
        not _TABLE.match(str(partition_key)) or partition_key in columns
    ):
        problems.append(f"{where}: partition_key {partition_key!r} must be a new column name")
    return problems + _refresh_problems(where, raw.get("refresh"), columns)


def _view_problems(view: Any, data_sets: Mapping[str, Any]) -> list[str]:
    where = f"view {view.get('id')!r}"
    problems = []
    if not _ID.match(str(view.get("id"))):
        problems.append(f"{where}: id may only hold letters, digits, - and _")
    if view.get("visual") not in _VISUALS:
        problems.append(f"{where}: visual must be one of {sorted(_VISUALS)}")
    data_set = data_sets.get(view.get("data_set"))
    if data_set is None:
        return [*problems, f"{where}: unknown data set {view.get('data_set')!r}"]
    types = {c["name"]: c["type"] for c in data_set.get("columns") or []}
    dimensions, measures = view.get("dimensions") or [], view.get("measures") or []
    for dimension in dimensions:
        column = dimension.get("column")
        if column not in types:
            problems.append(f"{where}: dimension {column!r} is not a column of {data_set['name']}")
        elif dimension.get("granularity") is not None and (
            types[column] not in ("date", "timestamp")
            or dimension["granularity"] not in _GRANULARITIES
        ):
            problems.append(f"{where}: granularity only applies to date/timestamp columns")
    if not measures:
        problems.append(f"{where}: at least one measure is required")
    for measure in measures:
        column, aggregation = measure.get("column"), measure.get("aggregation")
        if column not in types:
            problems.append(f"{where}: measure {column!r} is not a column of {data_set['name']}")
            continue
        allowed = _measure_aggregations(types[column])
        if aggregation not in allowed:
            problems.append(f"{where}: {column} ({types[column]}) takes {sorted(allowed)}")
    if view.get("visual") in ("LINE", "PIE") and len(dimensions) != 1:
        problems.append(f"{where}: a {view['visual']} visual needs exactly one dimension")
    if view.get("visual") == "BAR" and len(dimensions) > 1:
        problems.append(f"{where}: a BAR visual takes at most one dimension")
    sort = view.get("sort")
    fields = {d.get("column") for d in dimensions} | {m.get("column") for m in measures}
    if sort is not None and (
        sort.get("column") not in fields or sort.get("direction") not in ("ASC", "DESC")
    ):
        problems.append(f"{where}: sort needs a column of the view and a direction ASC|DESC")
    limit = view.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        problems.append(f"{where}: limit must be a positive integer")
    return problems


def _measure_aggregations(athena_type: str) -> frozenset[str]:
    numeric = _SIMPLE_TYPES.get(athena_type, ("DECIMAL", None))[0] in ("INTEGER", "DECIMAL")
    return _NUMERIC_AGGREGATIONS if numeric else _CATEGORICAL_AGGREGATIONS


def _field_name(column: Mapping[str, Any]) -> Any:
    return column.get("quicksight_name") or column.get("name")


def _rls_problems(rls: Any, data_sets: Mapping[str, Any]) -> list[str]:
    if rls is None:
        return []
    problems = _data_set_problems(rls.get("data_set"), "row_level_security.data_set")
    if rls.get("permission_policy") not in ("GRANT_ACCESS", "DENY_ACCESS"):
        problems.append("row_level_security: permission_policy must be GRANT_ACCESS|DENY_ACCESS")
    if not isinstance(rls.get("enabled"), bool):
        problems.append("row_level_security: enabled must be true or false")
    rule_columns = {_field_name(c) for c in (rls.get("data_set") or {}).get("columns") or []}
    if not rule_columns & {"UserName", "GroupName"}:
        problems.append("row_level_security: the rules need a UserName or GroupName column")
    fields = rule_columns - {"UserName", "GroupName"}
    for name in rls.get("applies_to") or []:
        target = data_sets.get(name)
        if target is None:
            problems.append(f"row_level_security: applies_to names unknown data set {name!r}")
            continue
        missing = fields - {_field_name(c) for c in target.get("columns") or []}
        if missing:
            problems.append(f"row_level_security: {name} lacks the rule columns {sorted(missing)}")
    return problems


def _placeholder_problems(raw: Any) -> list[str]:
    unknown = set(_PLACEHOLDER.findall(json.dumps(raw))) - _PLACEHOLDERS
    return [f"unknown placeholder {{{name}}}" for name in sorted(unknown)]


_DERIVED = ("table", "s3_prefix", "partition_key", "columns")


def with_lake_columns(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The document with each curated data set's table, folder, partition key and columns filled
    in from the lake (``storepulse.lake.tables``: the export's schemas are their one
    declaration), and the problems of a curated data set that declares them itself."""
    from storepulse.lake.tables import quicksight_declaration

    doc, problems = dict(raw), []
    raw_sets = raw.get("data_sets")
    if not isinstance(raw_sets, list):
        return doc, problems
    doc["data_sets"] = []
    for data_set in raw_sets:
        derived = (
            quicksight_declaration(data_set.get("name")) if isinstance(data_set, dict) else None
        )
        if derived is None:
            doc["data_sets"].append(data_set)
            continue
        if declared := [k for k in _DERIVED if k in data_set]:
            problems.append(
                f"data set {data_set['name']!r}: {', '.join(declared)} derive from the lake's "
                "schema (storepulse.lake.tables): remove them from the file"
            )
        doc["data_sets"].append(derived | data_set)
    return doc, problems


def validate(raw: Mapping[str, Any]) -> list[str]:
    """Every problem of a declarations document (empty: valid)."""
    raw, problems = with_lake_columns(raw)
    problems += _placeholder_problems(raw)
    if raw.get("version") != 1:
        problems.append("version must be 1")
    source = raw.get("data_source") or {}
    if source.get("type") != "ATHENA":
        problems.append("data_source.type must be ATHENA")
    for key in ("id", "name", "work_group", "catalog", "database", "lake_bucket"):
        if not source.get(key):
            problems.append(f"data_source.{key} is required")
    raw_sets = raw.get("data_sets")
    if not isinstance(raw_sets, list) or not raw_sets:
        return [*problems, "data_sets must be a non-empty list"]
    for index, data_set in enumerate(raw_sets):
        problems += _data_set_problems(data_set, f"data_sets[{index}]")
    data_sets = {d.get("name"): d for d in raw_sets if isinstance(d, dict)}
    rls = raw.get("row_level_security")
    every = [*raw_sets, *([rls["data_set"]] if rls and rls.get("data_set") else [])]
    for key in ("name", "id", "table"):
        values = [d.get(key) for d in every if isinstance(d, dict)]
        problems += [f"two data sets share the {key} {v!r}" for v in _duplicates(values)]
    problems += _rls_problems(rls, data_sets)
    views = (raw.get("dashboard") or {}).get("views") or []
    if not views:
        problems.append("dashboard.views must be a non-empty list")
    problems += [f"two views share the id {v!r}" for v in _duplicates(v.get("id") for v in views)]
    for view in views:
        problems += _view_problems(view, data_sets)
    quota = (raw.get("refresh_quota") or {}).get("manual_ingestions_per_data_set_per_24h", 1)
    if not isinstance(quota, int) or isinstance(quota, bool) or quota < 1:
        problems.append("refresh_quota.manual_ingestions_per_data_set_per_24h must be >= 1")
    return problems


def _duplicates(values: Iterable[Any]) -> list[Any]:
    seen, duplicates = set(), []
    for value in values:
        if value in seen and value not in duplicates:
            duplicates.append(value)
        seen.add(value)
    return duplicates


def _resolve(value: Any, values: Mapping[str, str]) -> Any:
    """Placeholders replaced in every string of a JSON value."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [_resolve(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, values) for k, v in value.items()}
    return value


def _data_set(raw: Mapping[str, Any]) -> DataSet:
    refresh, window = raw["refresh"], raw["refresh"].get("lookback_window") or {}
    return DataSet(
        name=raw["name"],
        id=raw["id"],
        table=raw["table"],
        s3_prefix=raw["s3_prefix"],
        partition_key=raw.get("partition_key"),
        refresh=Refresh(
            mode=refresh["mode"],
            lookback_column=refresh.get("lookback_column"),
            lookback_size=window.get("size"),
            lookback_unit=window.get("unit"),
        ),
        columns=tuple(
            Column(c["name"], c["type"], c.get("quicksight_name")) for c in raw["columns"]
        ),
        description=raw.get("description", ""),
    )


def _view(raw: Mapping[str, Any]) -> View:
    sort = raw.get("sort") or {}
    return View(
        id=raw["id"],
        title=raw["title"],
        visual=raw["visual"],
        data_set=raw["data_set"],
        dimensions=tuple(Dimension(d["column"], d.get("granularity")) for d in raw["dimensions"]),
        measures=tuple(Measure(m["column"], m["aggregation"]) for m in raw["measures"]),
        sort_column=sort.get("column"),
        sort_direction=sort.get("direction", "DESC"),
        limit=raw.get("limit"),
    )


def parse(raw: Mapping[str, Any], **values: str) -> Declarations:
    """Validated declarations with the placeholders (``env``, ``region``, ``account_id``,
    ``lake_bucket``) replaced by ``values``; raises ``DeclarationError`` listing every problem."""
    problems = validate(raw)
    if problems:
        raise DeclarationError("invalid QuickSight declarations:\n- " + "\n- ".join(problems))
    doc = _resolve(with_lake_columns(raw)[0], values)
    source, rls = doc["data_source"], doc.get("row_level_security")
    return Declarations(
        data_source=DataSource(
            id=source["id"],
            name=source["name"],
            work_group=source["work_group"],
            catalog=source["catalog"],
            database=source["database"],
            lake_bucket=source["lake_bucket"],
        ),
        data_sets={d["name"]: _data_set(d) for d in doc["data_sets"]},
        dashboard=Dashboard(
            id=doc["dashboard"]["id"],
            name=doc["dashboard"]["name"],
            views=tuple(_view(v) for v in doc["dashboard"]["views"]),
        ),
        quota=(doc.get("refresh_quota") or {}).get(
            "manual_ingestions_per_data_set_per_24h", DEFAULT_QUOTA
        ),
        principals=tuple((doc.get("permissions") or {}).get("principals") or ()),
        row_level_security=None
        if rls is None
        else RowLevelSecurity(
            enabled=rls["enabled"],
            permission_policy=rls["permission_policy"],
            applies_to=tuple(rls.get("applies_to") or ()),
            data_set=_data_set(rls["data_set"]),
        ),
    )


def load_declarations(
    path: Path = DECLARATIONS_FILE,
    *,
    env: str,
    region: str = "us-east-1",
    account_id: str = "000000000000",
    lake_bucket: str | None = None,
) -> Declarations:
    """The declarations file, validated and resolved for one environment and account.

    ``lake_bucket`` defaults to the real-time stack's naming, ``storepulse-<env>-lake-<account>``
    (pass the stack's ``LakeBucket`` output when it is known)."""
    raw = json.loads(path.read_text())
    bucket = lake_bucket or f"storepulse-{env}-lake-{account_id}"
    return parse(raw, env=env, region=region, account_id=account_id, lake_bucket=bucket)


# --- API requests built from the declarations --------------------------------------------------


def _permissions(principals: Sequence[str], kind: str) -> list[dict[str, Any]]:
    return [{"Principal": p, "Actions": _OWNER_ACTIONS[kind]} for p in principals]


def data_source_request(decl: Declarations) -> dict[str, Any]:
    """Arguments of Create/UpdateDataSource (without AwsAccountId)."""
    source = decl.data_source
    return {
        "DataSourceId": source.id,
        "Name": source.name,
        "DataSourceParameters": {"AthenaParameters": {"WorkGroup": source.work_group}},
    }


def _logical_table(data_set: DataSet, table_id: str) -> dict[str, Any]:
    """The data set's one logical table; Athena's lowercase names renamed where declared."""
    renames = [
        {"RenameColumnOperation": {"ColumnName": c.name, "NewColumnName": c.field_name}}
        for c in data_set.columns
        if c.field_name != c.name
    ]
    table: dict[str, Any] = {"Alias": data_set.name, "Source": {"PhysicalTableId": table_id}}
    return table | ({"DataTransforms": renames} if renames else {})


def data_set_request(
    decl: Declarations, data_set: DataSet, data_source_arn: str, rls_arn: str | None = None
) -> dict[str, Any]:
    """Arguments of Create/UpdateDataSet (without AwsAccountId): one Athena table, in SPICE."""
    table_id = data_set.physical_table_id
    request: dict[str, Any] = {
        "DataSetId": data_set.id,
        "Name": data_set.name,
        "ImportMode": "SPICE",
        "PhysicalTableMap": {
            table_id: {
                "RelationalTable": {
                    "DataSourceArn": data_source_arn,
                    "Catalog": decl.data_source.catalog,
                    "Schema": decl.data_source.database,
                    "Name": data_set.table,
                    "InputColumns": [c.input_column() for c in data_set.columns],
                }
            }
        },
        "LogicalTableMap": {table_id: _logical_table(data_set, table_id)},
    }
    rls = decl.row_level_security
    if rls and rls_arn and data_set.name in rls.applies_to:
        request["RowLevelPermissionDataSet"] = {
            "Arn": rls_arn,
            "PermissionPolicy": rls.permission_policy,
            "FormatVersion": "VERSION_1",
            "Status": "ENABLED" if rls.enabled else "DISABLED",
        }
    return request


def _dimension_field(view: View, dimension: Dimension, column: Column) -> dict[str, Any]:
    field_id = f"{view.id}.{dimension.column}"
    identifier = {"DataSetIdentifier": view.data_set, "ColumnName": column.field_name}
    type_ = column.quicksight_type[0]
    if type_ == "DATETIME":
        date_field = {"FieldId": field_id, "Column": identifier}
        granularity = {"DateGranularity": dimension.granularity} if dimension.granularity else {}
        return {"DateDimensionField": date_field | granularity}
    numeric = type_ in ("INTEGER", "DECIMAL")
    kind = "NumericalDimensionField" if numeric else "CategoricalDimensionField"
    return {kind: {"FieldId": field_id, "Column": identifier}}


def _measure_field(view: View, measure: Measure, column: Column) -> dict[str, Any]:
    field_id = f"{view.id}.{measure.column}"
    identifier = {"DataSetIdentifier": view.data_set, "ColumnName": column.field_name}
    if column.quicksight_type[0] in ("INTEGER", "DECIMAL"):
        aggregation = {"SimpleNumericalAggregation": measure.aggregation}
        return {
            "NumericalMeasureField": {
                "FieldId": field_id,
                "Column": identifier,
                "AggregationFunction": aggregation,
            }
        }
    return {
        "CategoricalMeasureField": {
            "FieldId": field_id,
            "Column": identifier,
            "AggregationFunction": measure.aggregation,
        }
    }


def _chart_configuration(view: View, dims: list[Any], values: list[Any]) -> dict[str, Any]:
    """The ChartConfiguration of a view's visual (field wells, sort, item limit)."""
    sort_field = {"FieldId": f"{view.id}.{view.sort_column}", "Direction": view.sort_direction}
    sort = [{"FieldSort": sort_field}] if view.sort_column else []
    if view.visual == "TABLE":
        config: dict[str, Any] = {
            "FieldWells": {"TableAggregatedFieldWells": {"GroupBy": dims, "Values": values}}
        }
        return config | ({"SortConfiguration": {"RowSort": sort}} if sort else {})
    wells = {"Category": dims, "Values": values} if dims else {"Values": values}
    if view.visual == "LINE":
        return {"FieldWells": {"LineChartAggregatedFieldWells": wells}, "Type": "LINE"}
    if view.visual == "PIE":
        return {"FieldWells": {"PieChartAggregatedFieldWells": wells}}
    config = {"FieldWells": {"BarChartAggregatedFieldWells": wells}, "Orientation": "VERTICAL"}
    sorting: dict[str, Any] = {"CategorySort": sort} if sort and dims else {}
    if view.limit and dims:
        sorting["CategoryItemsLimit"] = {"ItemsLimit": view.limit, "OtherCategories": "EXCLUDE"}
    if view.limit:  # a top-N list reads better horizontally, largest first
        config["Orientation"] = "HORIZONTAL"
    return config | ({"SortConfiguration": sorting} if sorting else {})


_VISUAL_KEYS = {
    "LINE": "LineChartVisual",
    "BAR": "BarChartVisual",
    "TABLE": "TableVisual",
    "PIE": "PieChartVisual",
}


def _visual(decl: Declarations, view: View) -> dict[str, Any]:
    data_set = decl.data_set(view.data_set)
    dims = [_dimension_field(view, d, data_set.column(d.column)) for d in view.dimensions]
    values = [_measure_field(view, m, data_set.column(m.column)) for m in view.measures]
    return {
        _VISUAL_KEYS[view.visual]: {
            "VisualId": view.id,
            "Title": {"Visibility": "VISIBLE", "FormatText": {"PlainText": view.title}},
            "ChartConfiguration": _chart_configuration(view, dims, values),
        }
    }


def dashboard_definition(decl: Declarations, data_set_arns: Mapping[str, str]) -> dict[str, Any]:
    """The dashboard's ``Definition``: one sheet per view, one visual per sheet."""
    used = sorted({view.data_set for view in decl.dashboard.views})
    return {
        "DataSetIdentifierDeclarations": [
            {"Identifier": name, "DataSetArn": data_set_arns[name]} for name in used
        ],
        "Sheets": [
            {"SheetId": view.id, "Name": view.title, "Visuals": [_visual(decl, view)]}
            for view in decl.dashboard.views
        ],
    }


def definition_hash(definition: Mapping[str, Any], name: str) -> str:
    """A stable fingerprint of what the dashboard shows (stored in its version description)."""
    text = json.dumps({"name": name, "definition": definition}, sort_keys=True)
    return "storepulse sha256:" + hashlib.sha256(text.encode()).hexdigest()


def glue_table_input(decl: Declarations, data_set: DataSet) -> dict[str, Any]:
    """The Glue ``TableInput`` Athena reads a data set's Parquet through: a curated data set's
    is the lake's (``storepulse.lake.tables``, partitions projected), the row-level-security
    rules' is built the same way from their declared columns."""
    from storepulse.export.datasets import DATASETS
    from storepulse.lake import tables

    bucket = decl.data_source.lake_bucket
    if data_set.name in DATASETS:
        return tables.glue_table_input(DATASETS[data_set.name], bucket)
    return tables.table_input(
        data_set.table,
        data_set.description,
        [{"Name": c.name, "Type": c.type} for c in data_set.columns],
        f"s3://{bucket}/{data_set.s3_prefix}",
        partition_key=data_set.partition_key,
    )


# --- deploy ------------------------------------------------------------------------------------


@dataclass
class DeployReport:
    """What a deploy did to each resource: created, updated or unchanged."""

    actions: dict[str, str] = field(default_factory=dict)  # "<kind> <id>" -> action
    ingestions: dict[str, str] = field(default_factory=dict)  # data set id -> ingestion id

    def record(self, kind: str, resource_id: str, action: str) -> None:
        self.actions[f"{kind} {resource_id}"] = action
        log.info("%s %s: %s", kind, resource_id, action)

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for action in self.actions.values():
            counts[action] = counts.get(action, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {"actions": dict(self.actions), "ingestions": dict(self.ingestions)}


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _describe(
    call: Callable[..., dict[str, Any]], key: str, **kwargs: Any
) -> dict[str, Any] | None:
    """``call(**kwargs)[key]``, or None when the resource does not exist."""
    try:
        return call(**kwargs)[key]
    except ClientError as exc:
        if _error_code(exc) in ("ResourceNotFoundException", "EntityNotFoundException"):
            return None
        raise


def _contains(actual: Any, desired: Any) -> bool:
    """True when ``actual`` holds everything ``desired`` says (AWS adds defaults of its own)."""
    if isinstance(desired, Mapping):
        return isinstance(actual, Mapping) and all(
            _contains(actual.get(k), v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(desired)
            and all(_contains(a, d) for a, d in zip(actual, desired, strict=True))
        )
    return actual == desired


def ensure_catalog(glue: Any, decl: Declarations, report: DeployReport) -> None:
    """The Glue database and one table per data set, created or brought back to their one
    definition (``glue_table_input``): the export ensures the same tables when it publishes."""
    from storepulse.lake.tables import ensure_database, ensure_table

    database = decl.data_source.database
    report.record("glue database", database, ensure_database(glue, database))
    for data_set in decl.every_data_set():
        action = ensure_table(glue, database, glue_table_input(decl, data_set))
        report.record("glue table", f"{database}.{data_set.table}", action)


def _deploy_data_source(
    client: Any, decl: Declarations, account_id: str, report: DeployReport
) -> str:
    wanted = data_source_request(decl)
    current = _describe(
        client.describe_data_source,
        "DataSource",
        AwsAccountId=account_id,
        DataSourceId=wanted["DataSourceId"],
    )
    if current is None:
        permissions = _permissions(decl.principals, "data_source")
        extra = {"Permissions": permissions} if permissions else {}
        response = client.create_data_source(
            AwsAccountId=account_id, Type="ATHENA", **wanted, **extra
        )
        report.record("data source", wanted["DataSourceId"], "created")
        return response["Arn"]
    if _contains(current, wanted):
        report.record("data source", wanted["DataSourceId"], "unchanged")
    else:
        client.update_data_source(AwsAccountId=account_id, **wanted)
        report.record("data source", wanted["DataSourceId"], "updated")
    return current["Arn"]


def _data_set_matches(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    same = all(
        _contains(current.get(key), wanted[key])
        for key in ("Name", "ImportMode", "PhysicalTableMap", "LogicalTableMap")
    )
    rls_wanted = wanted.get("RowLevelPermissionDataSet")
    rls_current = current.get("RowLevelPermissionDataSet")
    rls_same = (rls_wanted is None and rls_current is None) or (
        rls_wanted is not None and _contains(rls_current, rls_wanted)
    )
    return same and rls_same


def _deploy_data_set(
    client: Any,
    account_id: str,
    wanted: dict[str, Any],
    report: DeployReport,
    extra: Mapping[str, Any],
) -> str:
    """Create or update one data set; returns its ARN. Both start a SPICE ingestion on AWS."""
    data_set_id = wanted["DataSetId"]
    current = _describe(
        client.describe_data_set, "DataSet", AwsAccountId=account_id, DataSetId=data_set_id
    )
    if current is None:
        response = client.create_data_set(AwsAccountId=account_id, **wanted, **extra)
        report.record("data set", data_set_id, "created")
    elif _data_set_matches(current, wanted):
        report.record("data set", data_set_id, "unchanged")
        return current["Arn"]
    else:
        response = client.update_data_set(AwsAccountId=account_id, **wanted)
        report.record("data set", data_set_id, "updated")
    if response.get("IngestionId"):
        report.ingestions[data_set_id] = response["IngestionId"]
    return response["Arn"]


def _deploy_refresh_properties(
    client: Any, account_id: str, data_set: DataSet, report: DeployReport
) -> None:
    wanted = data_set.refresh.refresh_properties()
    current = _describe(
        client.describe_data_set_refresh_properties,
        "DataSetRefreshProperties",
        AwsAccountId=account_id,
        DataSetId=data_set.id,
    )
    kind = "refresh properties"
    if (wanted is None and current is None) or (wanted and _contains(current, wanted)):
        report.record(kind, data_set.id, "unchanged")
    elif wanted is None:
        client.delete_data_set_refresh_properties(AwsAccountId=account_id, DataSetId=data_set.id)
        report.record(kind, data_set.id, "deleted")
    else:
        client.put_data_set_refresh_properties(
            AwsAccountId=account_id, DataSetId=data_set.id, DataSetRefreshProperties=wanted
        )
        report.record(kind, data_set.id, "created" if current is None else "updated")


def _deploy_data_sets(
    client: Any, decl: Declarations, account_id: str, source_arn: str, report: DeployReport
) -> dict[str, str]:
    """Every data set, the RLS rules first (the others point at them); name -> ARN."""
    permissions = _permissions(decl.principals, "data_set")
    extra: dict[str, Any] = {"Permissions": permissions} if permissions else {}
    arns: dict[str, str] = {}
    rls_arn = None
    if decl.row_level_security:
        rls = decl.row_level_security.data_set
        wanted = data_set_request(decl, rls, source_arn)
        rls_arn = _deploy_data_set(
            client, account_id, wanted, report, extra | {"UseAs": "RLS_RULES"}
        )
        arns[rls.name] = rls_arn
    for data_set in decl.data_sets.values():
        wanted = data_set_request(decl, data_set, source_arn, rls_arn)
        arns[data_set.name] = _deploy_data_set(client, account_id, wanted, report, extra)
        _deploy_refresh_properties(client, account_id, data_set, report)
    return arns


def _published_version(arn: str) -> int:
    """The version number at the end of a dashboard version ARN (``.../version/3``)."""
    return int(arn.rsplit("/", 1)[1])


def _deploy_dashboard(
    client: Any, decl: Declarations, account_id: str, arns: Mapping[str, str], report: DeployReport
) -> None:
    board = decl.dashboard
    definition = dashboard_definition(decl, arns)
    fingerprint = definition_hash(definition, board.name)
    wanted = {
        "DashboardId": board.id,
        "Name": board.name,
        "Definition": definition,
        "VersionDescription": fingerprint,
    }
    current = _describe(
        client.describe_dashboard, "Dashboard", AwsAccountId=account_id, DashboardId=board.id
    )
    if current is None:
        permissions = _permissions(decl.principals, "dashboard")
        extra = {"Permissions": permissions} if permissions else {}
        client.create_dashboard(AwsAccountId=account_id, **wanted, **extra)
        report.record("dashboard", board.id, "created")
    elif (current.get("Version") or {}).get("Description") == fingerprint:
        report.record("dashboard", board.id, "unchanged")
    else:
        response = client.update_dashboard(AwsAccountId=account_id, **wanted)
        # An update makes a new version; viewers keep seeing the published one until this.
        client.update_dashboard_published_version(
            AwsAccountId=account_id,
            DashboardId=board.id,
            VersionNumber=_published_version(response["VersionArn"]),
        )
        report.record("dashboard", board.id, "updated")


def deploy(
    client: Any, decl: Declarations, *, account_id: str, glue: Any | None = None
) -> DeployReport:
    """Create or update everything declared; leave unchanged resources alone.

    ``glue``: a Glue client to create the catalog tables the data source reads (None: they are
    managed elsewhere). Creating or updating a SPICE data set starts an ingestion on AWS: their
    IDs are in the report (``ingestions``)."""
    report = DeployReport()
    if glue is not None:
        ensure_catalog(glue, decl, report)
    try:
        source_arn = _deploy_data_source(client, decl, account_id, report)
        arns = _deploy_data_sets(client, decl, account_id, source_arn, report)
        _deploy_dashboard(client, decl, account_id, arns, report)
    except ClientError as exc:
        done = ", ".join(f"{k}: {v}" for k, v in report.actions.items()) or "nothing"
        raise DeployError(f"QuickSight deploy failed: {exc} (done so far: {done})") from exc
    return report


# --- refresh -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What a refresh does for one data set: start an ingestion, skip, or refuse."""

    data_set: str
    data_set_id: str
    action: str  # start | skip | refuse
    ingestion_type: str
    ingestion_id: str | None = None  # the new ingestion (start) or the running one (skip)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IngestionResult:
    """The outcome for one data set, as recorded in XCom and logs."""

    data_set: str
    data_set_id: str
    ingestion_id: str | None
    status: str  # an IngestionStatus, or SKIPPED / REFUSED
    rows_ingested: int | None = None
    rows_dropped: int | None = None
    total_rows: int | None = None
    error_type: str | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("COMPLETED", "SKIPPED")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        rows = "" if self.rows_ingested is None else f", {self.rows_ingested} rows ingested"
        ingestion = f"ingestion {self.ingestion_id} " if self.ingestion_id else ""
        reason = f": {self.reason}" if self.reason else ""
        return f"{self.data_set} ({self.data_set_id}): {ingestion}{self.status}{rows}{reason}"


class RefreshError(RuntimeError):
    """At least one data set was not refreshed; ``results`` holds every outcome."""

    def __init__(self, results: Sequence[IngestionResult]) -> None:
        self.results = list(results)
        failed = [r.describe() for r in self.results if not r.ok]
        super().__init__("QuickSight refresh failed for " + "; ".join(failed))


def new_ingestion_id(data_set: str, now: datetime) -> str:
    """Unique, sortable and readable: ``orders-20261126T021500Z-1a2b3c4d``."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    return f"{data_set.replace('_', '-')}-{stamp}-{uuid.uuid4().hex[:8]}"


def list_ingestions(client: Any, account_id: str, data_set_id: str) -> list[dict[str, Any]]:
    """Every ingestion QuickSight still lists for the data set."""
    paginator = client.get_paginator("list_ingestions")
    pages = paginator.paginate(AwsAccountId=account_id, DataSetId=data_set_id)
    return [ingestion for page in pages for ingestion in page.get("Ingestions", [])]


def manual_ingestions_since(ingestions: Iterable[Mapping[str, Any]], since: datetime) -> list[Any]:
    """The refreshes that count against the manual quota: requested (not scheduled, not the
    data set's own creation or edit) at or after ``since``, oldest first."""
    counted = [
        i
        for i in ingestions
        if i.get("RequestSource", "MANUAL") == "MANUAL"
        and i.get("RequestType", "FULL_REFRESH") in REFRESH_TYPES
        and i["CreatedTime"] >= since
    ]
    return sorted(counted, key=lambda i: i["CreatedTime"])


def _quota_refusal(data_set: DataSet, counted: Sequence[Mapping[str, Any]], quota: int) -> str:
    next_slot = counted[0]["CreatedTime"] + QUOTA_WINDOW if counted else None
    when = f"; the next one is allowed from {next_slot:%Y-%m-%d %H:%M:%S %Z}" if next_slot else ""
    return (
        f"daily quota reached: {len(counted)} manual ingestions of {data_set.id} in the last 24 h "
        f"(quota {quota} per data set per 24 h, QuickSight Enterprise allows 32){when}"
    )


def plan_data_set(
    client: Any,
    decl: Declarations,
    name: str,
    *,
    account_id: str,
    quota: int | None = None,
    clock: Clock = system_clock,
) -> Plan:
    """Start, skip (an ingestion is already under way) or refuse (not deployed, quota)."""
    data_set = decl.data_set(name)
    now = clock()
    plan = Plan(data_set.name, data_set.id, "start", data_set.refresh.ingestion_type)
    try:
        ingestions = list_ingestions(client, account_id, data_set.id)
    except ClientError as exc:
        if _error_code(exc) != "ResourceNotFoundException":
            raise
        reason = f"data set {data_set.id} does not exist in QuickSight: run deploy_quicksight"
        return replace(plan, action="refuse", reason=reason)
    active = [i for i in ingestions if i.get("IngestionStatus") in ACTIVE_STATUSES]
    if active:
        running = active[0]
        reason = f"ingestion {running['IngestionId']} is already {running['IngestionStatus']}"
        return replace(plan, action="skip", ingestion_id=running["IngestionId"], reason=reason)
    limit = decl.quota if quota is None else quota
    counted = manual_ingestions_since(ingestions, now - QUOTA_WINDOW)
    if len(counted) >= limit:
        return replace(plan, action="refuse", reason=_quota_refusal(data_set, counted, limit))
    return replace(plan, ingestion_id=new_ingestion_id(data_set.name, now))


def plan_refresh(
    client: Any,
    decl: Declarations,
    names: Iterable[str],
    *,
    account_id: str,
    quota: int | None = None,
    clock: Clock = system_clock,
) -> list[Plan]:
    """One plan per data set (names or IDs; duplicates removed, order kept)."""
    unique = list(dict.fromkeys(decl.data_set(name).name for name in names))
    return [
        plan_data_set(client, decl, name, account_id=account_id, quota=quota, clock=clock)
        for name in unique
    ]


def start_ingestion(client: Any, plan: Plan, *, account_id: str) -> dict[str, Any]:
    """CreateIngestion for a ``start`` plan."""
    log.info(
        "starting %s ingestion %s of %s", plan.ingestion_type, plan.ingestion_id, plan.data_set_id
    )
    return client.create_ingestion(
        AwsAccountId=account_id,
        DataSetId=plan.data_set_id,
        IngestionId=plan.ingestion_id,
        IngestionType=plan.ingestion_type,
    )


def describe_ingestion(
    client: Any, *, account_id: str, data_set_id: str, ingestion_id: str
) -> dict[str, Any]:
    return client.describe_ingestion(
        AwsAccountId=account_id, DataSetId=data_set_id, IngestionId=ingestion_id
    )["Ingestion"]


def wait_for_ingestion(
    client: Any,
    *,
    account_id: str,
    data_set_id: str,
    ingestion_id: str,
    poll_seconds: float = 10.0,
    timeout_seconds: float = 3600.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """The ingestion once COMPLETED, FAILED or CANCELLED; TimeoutError past the timeout."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        ingestion = describe_ingestion(
            client, account_id=account_id, data_set_id=data_set_id, ingestion_id=ingestion_id
        )
        status = ingestion["IngestionStatus"]
        if status in TERMINAL_STATUSES:
            return ingestion
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"ingestion {ingestion_id} of {data_set_id} still {status} "
                f"after {timeout_seconds:.0f} s"
            )
        sleep(poll_seconds)


def ingestion_result(
    data_set: str, data_set_id: str, ingestion: Mapping[str, Any]
) -> IngestionResult:
    """The record of a finished (or current) ingestion; a failure's reason is its ErrorInfo."""
    rows = ingestion.get("RowInfo") or {}
    error = ingestion.get("ErrorInfo") or {}
    reason = f"{error.get('Type', 'UNKNOWN')}: {error.get('Message', '')}" if error else ""
    return IngestionResult(
        data_set=data_set,
        data_set_id=data_set_id,
        ingestion_id=ingestion.get("IngestionId"),
        status=ingestion["IngestionStatus"],
        rows_ingested=rows.get("RowsIngested"),
        rows_dropped=rows.get("RowsDropped"),
        total_rows=rows.get("TotalRowsInDataset"),
        error_type=error.get("Type"),
        reason=reason,
    )


def plan_result(plan: Plan) -> IngestionResult:
    """The record of a data set that got no new ingestion."""
    status = {"skip": "SKIPPED", "refuse": "REFUSED"}[plan.action]
    return IngestionResult(
        plan.data_set, plan.data_set_id, plan.ingestion_id, status, reason=plan.reason
    )


def collect_results(
    client: Any, plans: Iterable[Plan | Mapping[str, Any]], *, account_id: str
) -> list[IngestionResult]:
    """The current state of what ``plans`` did (started ingestions are described again)."""
    results = []
    for raw in plans:
        plan = raw if isinstance(raw, Plan) else Plan(**raw)
        if plan.action != "start":
            results.append(plan_result(plan))
            continue
        try:
            ingestion = describe_ingestion(
                client,
                account_id=account_id,
                data_set_id=plan.data_set_id,
                ingestion_id=str(plan.ingestion_id),
            )
        except ClientError as exc:
            if _error_code(exc) != "ResourceNotFoundException":
                raise
            reason = "the ingestion was never created (see the create_ingestion task)"
            results.append(
                IngestionResult(
                    plan.data_set, plan.data_set_id, plan.ingestion_id, "NOT_STARTED", reason=reason
                )
            )
            continue
        results.append(ingestion_result(plan.data_set, plan.data_set_id, ingestion))
    return results


def check_results(results: Sequence[IngestionResult]) -> list[IngestionResult]:
    """``results`` if every data set is refreshed (or already being refreshed); else raise."""
    for result in results:
        (log.info if result.ok else log.error)("%s", result.describe())
    if any(not r.ok for r in results):
        raise RefreshError(results)
    return list(results)


def _started(client: Any, plan: Plan, account_id: str) -> Plan:
    """Start a ``start`` plan; one QuickSight refuses (limit, conflict) becomes a refusal."""
    if plan.action != "start":
        return plan
    try:
        start_ingestion(client, plan, account_id=account_id)
    except ClientError as exc:
        return replace(plan, action="refuse", reason=f"CreateIngestion failed: {exc}")
    return plan


def refresh(
    client: Any,
    decl: Declarations,
    names: Iterable[str],
    *,
    account_id: str,
    quota: int | None = None,
    poll_seconds: float = 10.0,
    timeout_seconds: float = 3600.0,
) -> list[IngestionResult]:
    """Refresh the SPICE data sets ``names``: one ingestion each (see the module docstring),
    waited for. Returns one result per data set; raises ``RefreshError`` (with every result)
    when one failed, was cancelled or was refused."""
    plans = [
        _started(client, plan, account_id)
        for plan in plan_refresh(client, decl, names, account_id=account_id, quota=quota)
    ]
    results = []
    for plan in plans:
        if plan.action != "start":
            results.append(plan_result(plan))
            continue
        ingestion = wait_for_ingestion(
            client,
            account_id=account_id,
            data_set_id=plan.data_set_id,
            ingestion_id=str(plan.ingestion_id),
            poll_seconds=poll_seconds,
            timeout_seconds=timeout_seconds,
        )
        results.append(ingestion_result(plan.data_set, plan.data_set_id, ingestion))
    return check_results(results)


def account_id_of(sts: Any) -> str:
    """The account of the credentials in use (QuickSight needs it in every call)."""
    return str(sts.get_caller_identity()["Account"])


__all__ = [
    "ACTIVE_STATUSES",
    "DECLARATIONS_FILE",
    "DEFAULT_QUOTA",
    "DataSet",
    "DeclarationError",
    "Declarations",
    "DeployError",
    "DeployReport",
    "IngestionResult",
    "Plan",
    "RefreshError",
    "account_id_of",
    "check_results",
    "collect_results",
    "dashboard_definition",
    "data_set_request",
    "data_source_request",
    "deploy",
    "describe_ingestion",
    "ensure_catalog",
    "glue_table_input",
    "ingestion_result",
    "list_ingestions",
    "load_declarations",
    "manual_ingestions_since",
    "new_ingestion_id",
    "parse",
    "plan_data_set",
    "plan_refresh",
    "plan_result",
    "refresh",
    "start_ingestion",
    "validate",
    "wait_for_ingestion",
]
