"""The QuickSight declarations (``infra/quicksight/datasets.json``): their model, validation
and loading. A curated data set's table, folder, partition key and columns are not declared in
the file: they derive from the lake (``storepulse.lake.tables``) when it is loaded."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storepulse.config import REPO_ROOT

log = logging.getLogger(__name__)

DECLARATIONS_FILE = REPO_ROOT / "infra" / "quicksight" / "datasets.json"

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
ROLES = ("owner", "manager", "viewer")  # storepulse.settings.ACCESS_ROLES
_GROUP = re.compile(r"^[\w+=,.@-]{1,128}$")  # QuickSight GroupName
_NAMESPACE = re.compile(r"^[a-zA-Z0-9._-]{1,64}$")
# The rules' principal columns, by FormatVersion: VERSION_2 names users and groups by ARN.
_PRINCIPAL_COLUMNS = {"VERSION_1": {"UserName", "GroupName"}, "VERSION_2": {"UserARN", "GroupARN"}}


class DeclarationError(ValueError):
    """The declarations file is invalid; the message lists every problem found."""


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
    lake_bucket: str | None  # None: loaded without one (refresh plans and checks need none)

    @property
    def bucket(self) -> str:
        """The lake bucket the data sets read; fails closed when loaded without one."""
        if not self.lake_bucket:
            raise DeclarationError(
                "the declarations were loaded without a lake bucket: pass lake_bucket= "
                "(storepulse.lake.bucket.lake_bucket finds it)"
            )
        return self.lake_bucket


@dataclass(frozen=True)
class RowLevelSecurity:
    enabled: bool
    permission_policy: str
    applies_to: tuple[str, ...]
    data_set: DataSet

    @property
    def format_version(self) -> str:
        """VERSION_2 when the rules name principals by ARN (UserARN, GroupARN)."""
        fields = {c.field_name for c in self.data_set.columns}
        return "VERSION_2" if fields & _PRINCIPAL_COLUMNS["VERSION_2"] else "VERSION_1"

    @property
    def field_columns(self) -> tuple[Column, ...]:
        """The columns a rule restricts (store_id), beside the principal ones."""
        principals = set().union(*_PRINCIPAL_COLUMNS.values())
        return tuple(c for c in self.data_set.columns if c.field_name not in principals)


@dataclass(frozen=True)
class AccessControl:
    """QuickSight's principals: one group per role (``groups``: role -> group name)."""

    namespace: str
    groups: dict[str, str]

    def group_arn(self, role: str, *, region: str, account_id: str) -> str:
        return quicksight_arn("group", self.namespace, self.groups[role], region, account_id)

    def user_arn(self, user_name: str, *, region: str, account_id: str) -> str:
        return quicksight_arn("user", self.namespace, user_name, region, account_id)


def quicksight_arn(kind: str, namespace: str, name: str, region: str, account_id: str) -> str:
    """A user's or group's ARN (``arn:aws:quicksight:<region>:<account>:user/default/bob``)."""
    return f"arn:aws:quicksight:{region}:{account_id}:{kind}/{namespace}/{name}"


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
    access: AccessControl | None = None

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
    versions = [v for v, names in _PRINCIPAL_COLUMNS.items() if rule_columns & names]
    if len(versions) != 1:
        problems.append(
            "row_level_security: the rules need UserName/GroupName columns (VERSION_1) or "
            "UserARN/GroupARN columns (VERSION_2), not both"
        )
    fields = rule_columns - set().union(*_PRINCIPAL_COLUMNS.values())
    for name in rls.get("applies_to") or []:
        target = data_sets.get(name)
        if target is None:
            problems.append(f"row_level_security: applies_to names unknown data set {name!r}")
            continue
        missing = fields - {_field_name(c) for c in target.get("columns") or []}
        if missing:
            problems.append(f"row_level_security: {name} lacks the rule columns {sorted(missing)}")
    return problems


def _access_problems(permissions: Any) -> list[str]:
    if not isinstance(permissions, dict) or "groups" not in permissions:
        return []
    problems = []
    if not _NAMESPACE.match(str(permissions.get("namespace", "default"))):
        problems.append("permissions.namespace may hold letters, digits, '.', '_' and '-'")
    groups = permissions["groups"]
    if not isinstance(groups, dict) or set(groups) != set(ROLES):
        return [*problems, f"permissions.groups must name one group per role {list(ROLES)}"]
    for role, name in groups.items():
        if not _GROUP.match(str(name).replace("{env}", "env")):
            problems.append(f"permissions.groups.{role}: {name!r} is not a QuickSight group name")
    return problems + [f"two roles share the group {g!r}" for g in _duplicates(groups.values())]


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
    problems += _access_problems(raw.get("permissions"))
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
    bucket = None if _PLACEHOLDER.search(source["lake_bucket"]) else source["lake_bucket"]
    permissions = doc.get("permissions") or {}
    return Declarations(
        data_source=DataSource(
            id=source["id"],
            name=source["name"],
            work_group=source["work_group"],
            catalog=source["catalog"],
            database=source["database"],
            lake_bucket=bucket,
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
        principals=tuple(permissions.get("principals") or ()),
        access=AccessControl(permissions.get("namespace", "default"), dict(permissions["groups"]))
        if "groups" in permissions
        else None,
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

    ``lake_bucket`` (``storepulse.lake.bucket.lake_bucket``) is needed by what reads the lake
    (Glue tables, the row-level-security rules); without it ``data_source.bucket`` raises."""
    raw = json.loads(path.read_text())
    values = {"env": env, "region": region, "account_id": account_id}
    return parse(raw, **values, **({"lake_bucket": lake_bucket} if lake_bucket else {}))
