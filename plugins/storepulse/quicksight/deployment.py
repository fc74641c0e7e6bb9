"""Deploy (``deploy``), every step *describe, then create or update, or leave alone*:

1. the Glue catalog Athena (hence the data source) reads, database ``storepulse_<env>_curated``:
   one table per data set, as ``storepulse.lake.tables`` defines it (partition projection on
   ``dt``: readable before the first publish, nothing to register per day). The nightly export
   ensures the same definition when it publishes, so whichever runs first creates it;
2. the ATHENA data source;
3. the row-level-security data set (if declared), then one SPICE data set per curated data set,
   with its refresh properties (incremental: the lookback window);
4. the dashboard, one sheet per declared view. Its version description carries the hash of its
   definition, so an unchanged dashboard gets no new version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from storepulse.quicksight.declarations import DataSet, Declarations
from storepulse.quicksight.requests import (
    _permissions,
    dashboard_definition,
    data_set_request,
    data_source_request,
    definition_hash,
    glue_table_input,
)

log = logging.getLogger(__name__)


class DeployError(RuntimeError):
    """A QuickSight or Glue resource could not be deployed; the message names it."""


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
