"""QuickSight access control from the dashboard grants: one declaration per user.

A dashboard grant (``storepulse.settings.StoreAccess``) with a ``role`` makes its user a QuickSight
user of the same name in that role's group (``permissions.groups`` of the declarations), and its
store limit becomes the user's rows in the row-level-security rules data set: one row per store,
or one row with an empty ``store_id`` (every store) for an all-stores grant. A user without a
grant has no row and sees nothing (QuickSight's GRANT_ACCESS rules fail closed), a user whose
grant lost its role leaves the groups. QuickSight users are never deleted here (that would delete
what they authored): without a group or a rule they see nothing.

``sync_access`` applies it all, each step *describe, then change only what differs*: groups,
users, memberships, the groups' permissions on the data sets and dashboard, then the rules file
(``s3://<lake>/<rules s3_prefix>rules.parquet``, rewritten only when its content changes) and a
FULL ingestion of the rules data set when the file changed (or its last ingestion did not
complete), since QuickSight enforces the rules of its SPICE copy, not the file's. That ingestion
counts against the data set's manual-refresh quota like the curated data sets' refreshes: past
it, the file is not rewritten and the sync fails saying when the next slot opens.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from storepulse.clock import Clock, system_clock
from storepulse.quicksight.declarations import AccessControl, Declarations, RowLevelSecurity
from storepulse.quicksight.deployment import _describe, _error_code
from storepulse.quicksight.refresh import (
    ACTIVE_STATUSES,
    QUOTA_WINDOW,
    list_ingestions,
    manual_ingestions_since,
    new_ingestion_id,
    quota_refusal,
)
from storepulse.quicksight.requests import role_actions
from storepulse.settings.models import StoreAccess

log = logging.getLogger(__name__)

RULES_FILE = "rules.parquet"
FINGERPRINT = "rules-sha256"  # S3 object metadata: the rules' content hash
# What a role's user may do in QuickSight itself (authors build analyses, readers only read).
USER_ROLES = {"owner": "AUTHOR", "manager": "AUTHOR", "viewer": "READER"}


class AccessError(RuntimeError):
    """The declarations cannot express access control (no groups, no rules data set)."""


@dataclass
class AccessReport:
    """What a sync did, per principal or resource, and the rules it wrote."""

    actions: dict[str, str] = field(default_factory=dict)  # "<kind> <name>" -> action
    rules: int = 0
    rules_changed: bool = False
    ingestion: dict[str, str] | None = None  # {"data_set_id", "ingestion_id"} when started

    def record(self, kind: str, name: str, action: str) -> None:
        self.actions[f"{kind} {name}"] = action
        log.info("%s %s: %s", kind, name, action)

    def to_dict(self) -> dict[str, Any]:
        return {
            "actions": dict(self.actions),
            "rules": self.rules,
            "rules_changed": self.rules_changed,
            "ingestion": self.ingestion,
        }


def _parts(decl: Declarations) -> tuple[AccessControl, RowLevelSecurity]:
    if decl.access is None or decl.row_level_security is None:
        raise AccessError("the declarations need permissions.groups and row_level_security")
    return decl.access, decl.row_level_security


def quicksight_users(grants: Iterable[StoreAccess]) -> list[StoreAccess]:
    """The grants that make a QuickSight user (those with a role), by username."""
    return sorted((g for g in grants if g.role), key=lambda g: g.username)


# --- the rules ---------------------------------------------------------------------------------


def rules(
    decl: Declarations, grants: Iterable[StoreAccess], *, region: str, account_id: str
) -> list[dict[str, str | None]]:
    """The row-level-security rows of ``grants``: per QuickSight user, one row per store it may
    see, or one row with no store (every store) for an all-stores grant."""
    control, rls = _parts(decl)
    by_field = {c.field_name: c.name for c in rls.data_set.columns}
    if [c.name for c in rls.field_columns] != ["store_id"]:
        raise AccessError("the rules data set must restrict exactly one column, store_id")
    by_arn = rls.format_version == "VERSION_2"
    user_column = by_field["UserARN" if by_arn else "UserName"]
    group_column = by_field.get("GroupARN" if by_arn else "GroupName")
    rows = []
    for grant in quicksight_users(grants):
        principal = (
            control.user_arn(grant.username, region=region, account_id=account_id)
            if by_arn
            else grant.username
        )
        stores: list[str | None] = [None] if grant.all_stores else sorted(grant.store_ids)
        for store in stores:
            row = {user_column: principal, "store_id": store}
            rows.append(row | ({group_column: None} if group_column else {}))
    return rows


def rules_fingerprint(rows: list[dict[str, str | None]]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def rules_parquet(rls: RowLevelSecurity, rows: list[dict[str, str | None]]) -> bytes:
    """The rules as one Parquet file with the data set's columns (all strings, empty = null)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([pa.field(c.name, pa.string()) for c in rls.data_set.columns])
    table = pa.Table.from_pylist(rows, schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _rules_key(decl: Declarations) -> tuple[str, str]:
    _, rls = _parts(decl)
    return decl.data_source.bucket, rls.data_set.s3_prefix + RULES_FILE


def rules_written(s3: Any, decl: Declarations, rows: list[dict[str, str | None]]) -> bool:
    """Whether the rules file already holds ``rows`` (its content hash, in its metadata)."""
    bucket, key = _rules_key(decl)
    try:
        current = s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get(FINGERPRINT)
    except ClientError as exc:
        if _error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
            raise
        current = None
    return current == rules_fingerprint(rows)


def write_rules(s3: Any, decl: Declarations, rows: list[dict[str, str | None]]) -> tuple[str, bool]:
    """Put the rules file unless it already holds ``rows``; (key, changed). One PUT replaces
    the file whole, so QuickSight never reads half of it."""
    bucket, key = _rules_key(decl)
    if rules_written(s3, decl, rows):
        return key, False
    _, rls = _parts(decl)
    metadata = {FINGERPRINT: rules_fingerprint(rows)}
    s3.put_object(Bucket=bucket, Key=key, Body=rules_parquet(rls, rows), Metadata=metadata)
    log.info("wrote %d rules to s3://%s/%s", len(rows), bucket, key)
    return key, True


# --- principals --------------------------------------------------------------------------------


@contextlib.contextmanager
def _created_meanwhile() -> Iterator[None]:
    """A creation that another sync (deploy_quicksight beside the scheduled one) just did."""
    try:
        yield
    except ClientError as exc:
        if _error_code(exc) != "ResourceExistsException":
            raise


def _ensure_groups(client: Any, control: AccessControl, account_id: str, report: AccessReport):
    for role, group in control.groups.items():
        where = {"AwsAccountId": account_id, "Namespace": control.namespace, "GroupName": group}
        if _describe(client.describe_group, "Group", **where) is not None:
            report.record("group", group, "unchanged")
            continue
        with _created_meanwhile():
            client.create_group(**where, Description=f"StorePulse {role}s")
        report.record("group", group, "created")


def _ensure_users(
    client: Any,
    control: AccessControl,
    users: list[StoreAccess],
    account_id: str,
    report: AccessReport,
) -> None:
    for grant in users:
        where = {"AwsAccountId": account_id, "Namespace": control.namespace}
        wanted = {"Email": grant.email, "Role": USER_ROLES[str(grant.role)]}
        current = _describe(client.describe_user, "User", **where, UserName=grant.username)
        if current is None:
            with _created_meanwhile():
                client.register_user(
                    **where,
                    UserName=grant.username,
                    IdentityType="QUICKSIGHT",
                    Email=wanted["Email"],
                    UserRole=wanted["Role"],
                )
            report.record("user", grant.username, "registered")
        elif all(current.get(k) == v for k, v in wanted.items()):
            report.record("user", grant.username, "unchanged")
        else:
            client.update_user(**where, UserName=grant.username, **wanted)
            report.record("user", grant.username, "updated")


def _members(client: Any, control: AccessControl, group: str, account_id: str) -> set[str]:
    paginator = client.get_paginator("list_group_memberships")
    pages = paginator.paginate(
        AwsAccountId=account_id, Namespace=control.namespace, GroupName=group
    )
    return {m["MemberName"] for page in pages for m in page.get("GroupMemberList", [])}


def _sync_memberships(
    client: Any,
    control: AccessControl,
    users: list[StoreAccess],
    account_id: str,
    report: AccessReport,
) -> None:
    """Each group holds exactly the users of its role: a revoked or changed role leaves."""
    for role, group in control.groups.items():
        wanted = {g.username for g in users if g.role == role}
        current = _members(client, control, group, account_id)
        where = {"AwsAccountId": account_id, "Namespace": control.namespace, "GroupName": group}
        for name in sorted(wanted - current):
            client.create_group_membership(**where, MemberName=name)
            report.record("membership", f"{group}/{name}", "added")
        for name in sorted(current - wanted):
            client.delete_group_membership(**where, MemberName=name)
            report.record("membership", f"{group}/{name}", "removed")


# --- permissions -------------------------------------------------------------------------------


def _permission_changes(
    current: list[Mapping[str, Any]], wanted: Mapping[str, list[str]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(grants, revocations) that bring the ``wanted`` principals to exactly their actions;
    other principals' permissions are left alone."""
    have = {p["Principal"]: set(p["Actions"]) for p in current}
    grants, revokes = [], []
    for principal, actions in wanted.items():
        held = have.get(principal, set())
        if missing := sorted(set(actions) - held):
            grants.append({"Principal": principal, "Actions": missing})
        if extra := sorted(held - set(actions)):
            revokes.append({"Principal": principal, "Actions": extra})
    return grants, revokes


def _group_actions(
    control: AccessControl, kind: str, region: str, account_id: str
) -> dict[str, list[str]]:
    return {
        control.group_arn(role, region=region, account_id=account_id): role_actions(role, kind)
        for role in control.groups
    }


def _sync_permissions(
    client: Any, decl: Declarations, region: str, account_id: str, report: AccessReport
) -> None:
    """Each role's group gets its actions on the data sets and the dashboard; the rules data set
    is the owners' only (a reader of the rules would learn every user's stores)."""
    control, rls = _parts(decl)
    data_set_actions = _group_actions(control, "data_set", region, account_id)
    owners = control.group_arn("owner", region=region, account_id=account_id)
    for data_set in decl.every_data_set():
        wanted = data_set_actions
        if data_set.id == rls.data_set.id:
            wanted = {p: a if p == owners else [] for p, a in data_set_actions.items()}
        where = {"AwsAccountId": account_id, "DataSetId": data_set.id}
        current = client.describe_data_set_permissions(**where).get("Permissions", [])
        _apply(client.update_data_set_permissions, where, current, wanted, report, data_set.id)
    where = {"AwsAccountId": account_id, "DashboardId": decl.dashboard.id}
    current = client.describe_dashboard_permissions(**where).get("Permissions", [])
    wanted = _group_actions(control, "dashboard", region, account_id)
    _apply(client.update_dashboard_permissions, where, current, wanted, report, decl.dashboard.id)


def _apply(
    update: Any,
    where: Mapping[str, str],
    current: list[Mapping[str, Any]],
    wanted: Mapping[str, list[str]],
    report: AccessReport,
    name: str,
) -> None:
    grants, revokes = _permission_changes(current, wanted)
    if not grants and not revokes:
        report.record("permissions", name, "unchanged")
        return
    changes = {"GrantPermissions": grants} if grants else {}
    update(**where, **changes, **({"RevokePermissions": revokes} if revokes else {}))
    report.record("permissions", name, "updated")


# --- the whole sync ----------------------------------------------------------------------------


def _last_ingestion_completed(ingestions: list[dict[str, Any]]) -> bool:
    """An unchanged file needs no ingestion unless its last one failed or was cancelled."""
    if not ingestions:
        return False
    last = max(ingestions, key=lambda i: i["CreatedTime"])["IngestionStatus"]
    return last in ACTIVE_STATUSES | {"COMPLETED"}


def _refresh_rules(
    client: Any,
    s3: Any,
    decl: Declarations,
    rows: list[dict[str, str | None]],
    *,
    account_id: str,
    clock: Clock,
    report: AccessReport,
) -> None:
    """Write the rules file if it changed, then ingest it. That FULL refresh counts against the
    data set's manual quota like any other (``storepulse.quicksight.refresh``): with the quota
    spent, the file is left as it was, so the next sync still finds it different and tries again,
    and this one fails saying when the next slot opens (users keep their previous limits)."""
    _, rls = _parts(decl)
    data_set_id = rls.data_set.id
    changed = not rules_written(s3, decl, rows)
    ingestions = list_ingestions(client, account_id, data_set_id)
    if not changed and _last_ingestion_completed(ingestions):
        return
    counted = manual_ingestions_since(ingestions, clock() - QUOTA_WINDOW)
    if len(counted) >= decl.quota:
        refusal = quota_refusal(rls.data_set, counted, decl.quota)
        report.record("ingestion", data_set_id, f"refused: {refusal}")
        raise AccessError(f"the row-level-security rules were not refreshed: {refusal}")
    report.rules_changed = write_rules(s3, decl, rows)[1]
    ingestion_id = new_ingestion_id(rls.data_set.name, clock())
    client.create_ingestion(
        AwsAccountId=account_id,
        DataSetId=data_set_id,
        IngestionId=ingestion_id,
        IngestionType="FULL_REFRESH",
    )
    report.ingestion = {"data_set_id": data_set_id, "ingestion_id": ingestion_id}
    report.record("ingestion", data_set_id, ingestion_id)


def sync_access(
    client: Any,
    s3: Any,
    decl: Declarations,
    grants: Iterable[StoreAccess],
    *,
    account_id: str,
    region: str,
    clock: Clock = system_clock,
) -> AccessReport:
    """Groups, users, memberships, permissions, then the rules and their ingestion (see the
    module's doc). The declared data sets and dashboard must be deployed (deploy_quicksight)."""
    control, _ = _parts(decl)
    grants = list(grants)
    users = quicksight_users(grants)
    report = AccessReport()
    _ensure_groups(client, control, account_id, report)
    _ensure_users(client, control, users, account_id, report)
    _sync_memberships(client, control, users, account_id, report)
    _sync_permissions(client, decl, region, account_id, report)
    rows = rules(decl, grants, region=region, account_id=account_id)
    report.rules = len(rows)
    _refresh_rules(client, s3, decl, rows, account_id=account_id, clock=clock, report=report)
    return report
