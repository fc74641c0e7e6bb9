"""Refresh (``plan_refresh``, then the provider's ``QuickSightCreateIngestionOperator`` and
``QuickSightSensor``, then ``collect_results``): one ingestion per data set, except when one is
already INITIALIZED, QUEUED or RUNNING (it will pick up the new files: a second one would only be
queued behind it and spend quota), or when the data set has had its quota of manual ingestions in
the last 24 h (QuickSight Enterprise: 32 per data set; past it CreateIngestion fails anyway, here
the refusal says why and when the next slot opens). A FAILED ingestion is reported with
QuickSight's ErrorInfo (type and message).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from storepulse.clock import Clock, system_clock
from storepulse.quicksight.declarations import DataSet, Declarations
from storepulse.quicksight.deployment import _error_code

log = logging.getLogger(__name__)


ACTIVE_STATUSES = frozenset({"INITIALIZED", "QUEUED", "RUNNING"})
REFRESH_TYPES = frozenset({"FULL_REFRESH", "INCREMENTAL_REFRESH"})
QUOTA_WINDOW = timedelta(hours=24)


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


def quota_refusal(data_set: DataSet, counted: Sequence[Mapping[str, Any]], quota: int) -> str:
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
        return replace(plan, action="refuse", reason=quota_refusal(data_set, counted, limit))
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


def describe_ingestion(
    client: Any, *, account_id: str, data_set_id: str, ingestion_id: str
) -> dict[str, Any]:
    return client.describe_ingestion(
        AwsAccountId=account_id, DataSetId=data_set_id, IngestionId=ingestion_id
    )["Ingestion"]


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
