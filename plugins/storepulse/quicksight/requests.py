"""The QuickSight and Glue API requests built from the declarations."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from storepulse.quicksight.declarations import (
    Column,
    DataSet,
    Declarations,
    Dimension,
    Measure,
    View,
)

log = logging.getLogger(__name__)


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


# What each role's group may do (the owner group gets _OWNER_ACTIONS): a manager reads the data
# sets (to build analyses) and the dashboard, a viewer the dashboard only; the rules limit both.
_READER_ACTIONS = {
    "data_set": [
        "quicksight:DescribeDataSet",
        "quicksight:DescribeDataSetPermissions",
        "quicksight:PassDataSet",
        "quicksight:DescribeIngestion",
        "quicksight:ListIngestions",
    ],
    "dashboard": [
        "quicksight:DescribeDashboard",
        "quicksight:ListDashboardVersions",
        "quicksight:QueryDashboard",
    ],
}
_ROLE_ACTIONS = {
    "owner": _OWNER_ACTIONS,
    "manager": _READER_ACTIONS,
    "viewer": {"dashboard": _READER_ACTIONS["dashboard"]},
}


def role_actions(role: str, kind: str) -> list[str]:
    """The actions a role's group is granted on a ``data_set`` or the ``dashboard`` (may be
    none: a viewer reaches the data through the dashboard only)."""
    return list(_ROLE_ACTIONS[role].get(kind, []))


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
            "FormatVersion": rls.format_version,
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

    bucket = decl.data_source.bucket
    if data_set.name in DATASETS:
        return tables.glue_table_input(DATASETS[data_set.name], bucket)
    return tables.table_input(
        data_set.table,
        data_set.description,
        [{"Name": c.name, "Type": c.type} for c in data_set.columns],
        f"s3://{bucket}/{data_set.s3_prefix}",
        partition_key=data_set.partition_key,
    )
