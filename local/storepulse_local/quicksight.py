"""The local QuickSight: a small WSGI layer in front of moto for what the platform uses.

moto 5.2.5 knows QuickSight data sources and can *create* data sets and ingestions, but cannot
describe or list them, and an ingestion never leaves INITIALIZED (``/work/shared/FACTS.md``):
the refresh DAG, the Amazon provider's operator and sensor, and the deploy could not run on it.
This layer answers those calls itself, with QuickSight's REST routes, request and response
shapes and error codes, all taken from botocore's service model (what boto3 sends and parses):

- data sources: Create, Describe, Update, List;
- data sets: Create, Describe, Update, List, and their refresh properties (Put, Describe, Delete);
- ingestions: Create, Describe, List, Cancel;
- dashboards: Create, Describe, Update, UpdateDashboardPublishedVersion;
- users, groups and memberships (RegisterUser, Describe/List/UpdateUser, ListUserGroups,
  Create/Describe/ListGroups, Create/Delete/ListGroupMemberships), with AWS's errors (moto
  overwrites an existing user or group and adds members that do not exist);
- permissions of data sets and dashboards (Describe/Update*Permissions, and ``Permissions`` at
  creation); a principal naming a QuickSight user or group of the account must exist.

Any other QuickSight call goes on to moto. State lives in memory, per account, and is forgotten
with moto's (``/moto-api/reset``).

**What a user sees** (``visible_rows``, and ``GET /storepulse-local/quicksight/accounts/<account>
/namespaces/<ns>/users/<user>/data-sets/<id>/rows``; AWS has no such API, its dashboards and
analyses apply the same rules): the rows of the data set's SPICE copy (what its last completed
ingestion read) that row-level security lets the user see. It fails closed: a user who is not
registered, has no permission on the data set (directly, through a group, or through a dashboard
that uses it), or has no rule in the rules data set's SPICE copy (GRANT_ACCESS) is refused with
AccessDeniedException; a rule's empty field means every value. As on AWS, a data set's owners
(those who may UpdateDataSetPermissions) see every row.

An ingestion does the work Athena and SPICE would do, on the embedded AWS itself: it looks the
data set's table up in the Glue catalog (``SQL_TABLE_NOT_FOUND`` if missing), reads the Parquet
files under the table's location (a partitioned table: those of its registered partitions, or
with partition projection those in ``<key>=<value>/`` folders; never hidden files such as
``_manifest.json``), checks every column of the data set against each file (present, and of a
type compatible with the Glue column and the QuickSight column), and ends COMPLETED with
``RowInfo.RowsIngested`` = the rows read (an incremental refresh counts the rows inside the
lookback window), or FAILED with an ErrorInfo naming the file and the column, in Athena's words.
It runs in a background thread and lasts at least ``ingestion_seconds``, so that pollers see
INITIALIZED (or QUEUED behind another ingestion of the same data set), then RUNNING, then the end.
Creating or updating a SPICE data set starts an ingestion too, as on AWS.

Stricter than AWS, on purpose: a column of the data set missing from a file fails the ingestion
(Athena would read NULLs), because here it always means the export and the declarations disagree.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import parse_qs, unquote

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

DEFAULT_MANUAL_QUOTA = 32  # QuickSight Enterprise: manual refreshes per data set per 24 h
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
_ACTIVE = frozenset({"INITIALIZED", "QUEUED", "RUNNING"})
_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request", 404: "Not Found"}
_REASONS |= {403: "Forbidden"}
_REASONS |= {409: "Conflict", 500: "Internal Server Error"}
_ERROR_STATUS = {
    "ResourceNotFoundException": 404,
    "ResourceExistsException": 409,
    "ConflictException": 409,
    "LimitExceededException": 409,
    "InvalidParameterValueException": 400,
    "AccessDeniedException": 403,
    "InternalFailureException": 500,
}
_WINDOW_UNITS = {"HOUR": timedelta(hours=1), "DAY": timedelta(days=1), "WEEK": timedelta(weeks=1)}

OPERATIONS = (
    "CreateDataSource",
    "DescribeDataSource",
    "UpdateDataSource",
    "ListDataSources",
    "CreateDataSet",
    "DescribeDataSet",
    "UpdateDataSet",
    "ListDataSets",
    "PutDataSetRefreshProperties",
    "DescribeDataSetRefreshProperties",
    "DeleteDataSetRefreshProperties",
    "CreateIngestion",
    "DescribeIngestion",
    "ListIngestions",
    "CancelIngestion",
    "CreateDashboard",
    "DescribeDashboard",
    "UpdateDashboard",
    "UpdateDashboardPublishedVersion",
    "DescribeDataSetPermissions",
    "UpdateDataSetPermissions",
    "DescribeDashboardPermissions",
    "UpdateDashboardPermissions",
    "RegisterUser",
    "DescribeUser",
    "ListUsers",
    "UpdateUser",
    "ListUserGroups",
    "CreateGroup",
    "DescribeGroup",
    "ListGroups",
    "CreateGroupMembership",
    "DeleteGroupMembership",
    "ListGroupMemberships",
)
ROWS_PATH = re.compile(
    r"^/storepulse-local/quicksight/accounts/(?P<account>[^/]+)/namespaces/(?P<namespace>[^/]+)"
    r"/users/(?P<user>[^/]+)/data-sets/(?P<data_set>[^/]+)/rows/?$"
)
_PRINCIPAL = re.compile(
    r"^arn:aws:quicksight:[^:]+:(?P<account>\d+):(?P<kind>user|group)/(?P<ns>[^/]+)/(?P<name>.+)$"
)
_OWNER_ACTION = "quicksight:UpdateDataSetPermissions"  # who may share a data set owns it


class ApiError(Exception):
    """A QuickSight error response: its code (``x-amzn-ErrorType``) and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = _ERROR_STATUS.get(code, 400)


# --- routing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    operation: str
    method: str
    pattern: re.Pattern[str]


def _route_pattern(request_uri: str) -> re.Pattern[str]:
    """``/accounts/{AwsAccountId}/data-sets/{DataSetId}`` as a regex with named groups."""
    path = request_uri.split("?", 1)[0]
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    return re.compile(f"^{regex}/?$")


@cache
def routes() -> tuple[Route, ...]:
    """The routes of the operations served here, from botocore's QuickSight model."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("quicksight")
    table = []
    for name in OPERATIONS:
        http = model.operation_model(name).http
        table.append(Route(name, http["method"], _route_pattern(http["requestUri"])))
    return tuple(table)


def _signing(environ: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(access key, region, service) of a SigV4 Authorization header."""
    match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    return (match.group(1), match.group(2), match.group(3)) if match else None


def is_quicksight_request(environ: Mapping[str, Any]) -> bool:
    """A request for QuickSight: its host, or an ``/accounts/...`` path signed for quicksight."""
    if environ.get("HTTP_HOST", "").startswith("quicksight."):
        return True
    signing = _signing(environ)
    path = environ.get("PATH_INFO", "")
    return path.startswith("/accounts/") and signing is not None and signing[2] == "quicksight"


def _match(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    for route in routes():
        if route.method == method:
            found = route.pattern.match(path)
            if found:
                return route.operation, {k: unquote(v) for k, v in found.groupdict().items()}
    return None


# --- state -------------------------------------------------------------------------------------


def _now() -> float:
    return time.time()


@dataclass
class Ingestion:
    data_set_id: str
    ingestion_id: str
    arn: str
    request_type: str
    request_source: str
    created: float = field(default_factory=_now)
    status: str = "INITIALIZED"
    error: dict[str, str] | None = None
    rows: dict[str, int] | None = None
    size_bytes: int | None = None
    seconds: int | None = None
    queue_info: dict[str, str] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "Arn": self.arn,
            "IngestionId": self.ingestion_id,
            "IngestionStatus": self.status,
            "CreatedTime": self.created,
            "RequestSource": self.request_source,
            "RequestType": self.request_type,
        }
        optional = {
            "ErrorInfo": self.error,
            "RowInfo": self.rows,
            "QueueInfo": self.queue_info if self.status == "QUEUED" else None,
            "IngestionSizeInBytes": self.size_bytes,
            "IngestionTimeInSeconds": self.seconds,
        }
        return body | {k: v for k, v in optional.items() if v is not None}


@dataclass
class Account:
    data_sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    refresh_properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    ingestions: dict[str, dict[str, Ingestion]] = field(default_factory=dict)  # by data set
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    running: dict[str, threading.Lock] = field(default_factory=dict)  # one at a time per data set
    users: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (namespace, name)
    groups: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # + "members"
    permissions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by resource ARN
    spice: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # rows, by data set id

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A snapshot taken before a field existed restores it empty."""
        fresh = Account().__dict__
        self.__dict__.update({k: v for k, v in fresh.items() if k not in state} | state)


@dataclass(frozen=True)
class Caller:
    """Who called, where: the worker reads the lake with the caller's identity and region."""

    account_id: str
    region: str
    access_key: str
    endpoint: str  # this server's own URL

    def arn(self, kind: str, resource_id: str) -> str:
        return f"arn:aws:quicksight:{self.region}:{self.account_id}:{kind}/{resource_id}"


def _caller(environ: Mapping[str, Any], account_id: str) -> Caller:
    access_key, region, _ = _signing(environ) or ("local", "us-east-1", "quicksight")
    endpoint = f"http://{environ.get('SERVER_NAME', '127.0.0.1')}:{environ.get('SERVER_PORT')}"
    return Caller(account_id, region, access_key, endpoint)


def _page(key: str, items: list[Any], query: Mapping[str, list[str]]) -> dict[str, Any]:
    """A List* answer: one page of ``items`` under ``key`` for ``max-results``/``next-token``,
    with the next page's ``NextToken`` (an offset) unless it is the last."""
    start = int((query.get("next-token") or ["0"])[0])
    size = int((query.get("max-results") or ["100"])[0])
    end = start + size
    return {key: items[start:end]} | ({"NextToken": str(end)} if end < len(items) else {})


# --- the application ---------------------------------------------------------------------------


class LocalQuickSight:
    """In-memory QuickSight for the embedded AWS. ``in_front_of(moto_app)`` is the server's app."""

    def __init__(
        self, *, ingestion_seconds: float = 1.0, manual_quota: int = DEFAULT_MANUAL_QUOTA
    ) -> None:
        self.ingestion_seconds = ingestion_seconds
        self.manual_quota = manual_quota
        self._lock = threading.RLock()
        self._accounts: dict[str, Account] = {}

    def reset(self) -> None:
        with self._lock:
            self._accounts = {}

    def state_lock(self) -> threading.RLock:
        """Held while a snapshot pickles ``state()``: ingestion workers change it too."""
        return self._lock

    def state(self) -> dict[str, Account]:
        return self._accounts

    def restore_state(self, accounts: dict[str, Account] | None) -> None:
        """After a restart: an ingestion that was running has no worker any more, so it failed."""
        with self._lock:
            self._accounts = accounts or {}
            for account in self._accounts.values():
                for ingestion in (i for d in account.ingestions.values() for i in d.values()):
                    if ingestion.status in _ACTIVE:
                        ingestion.status = "FAILED"
                        ingestion.error = {
                            "Type": "INTERNAL_SERVICE_ERROR",
                            "Message": "Interrupted by a restart of the embedded AWS",
                        }

    def account(self, account_id: str) -> Account:
        with self._lock:
            return self._accounts.setdefault(account_id, Account())

    def in_front_of(self, app: WsgiApp) -> WsgiApp:
        """A WSGI app: QuickSight calls served here, everything else by ``app`` (moto)."""

        def dispatch(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/moto-api/reset":
                self.reset()
            rows = ROWS_PATH.match(environ.get("PATH_INFO", ""))
            if rows and environ.get("REQUEST_METHOD") == "GET":
                return self._serve_rows(start_response, **rows.groupdict())
            if is_quicksight_request(environ):
                matched = _match(environ.get("REQUEST_METHOD", "GET"), environ["PATH_INFO"])
                if matched:
                    return self._serve(environ, start_response, *matched)
            return app(environ, start_response)

        return dispatch

    # --- HTTP --------------------------------------------------------------------------------

    def _serve_rows(
        self, start_response: StartResponse, account: str, namespace: str, user: str, data_set: str
    ) -> Iterable[bytes]:
        try:
            found = self.visible_rows(account, unquote(data_set), unquote(user), namespace)
            status, payload, headers = 200, {"Rows": _jsonable(found), "RowCount": len(found)}, []
        except ApiError as exc:
            status, payload = exc.status, {"Message": str(exc)}
            headers = [("x-amzn-ErrorType", exc.code)]
        data = json.dumps(payload).encode()
        start_response(
            f"{status} {_REASONS.get(status, 'OK')}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers],
        )
        return [data]

    def _serve(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        operation: str,
        path: dict[str, str],
    ) -> Iterable[bytes]:
        request_id = str(uuid.uuid4())
        try:
            body = _read_json(environ)
            query = parse_qs(environ.get("QUERY_STRING", ""))
            caller = _caller(environ, path["AwsAccountId"])
            handler = getattr(self, "_" + _snake(operation))
            with self._lock:  # one call at a time: state is never seen half-changed
                status, payload = handler(caller, path, query, body)
                payload = json.loads(json.dumps(payload))  # a copy, made under the lock
            headers = []
        except ApiError as exc:
            status, payload = exc.status, {"Message": str(exc)}
            headers = [("x-amzn-ErrorType", exc.code)]
        except Exception as exc:  # a bug here must reach the caller as AWS would say it
            log.exception("local QuickSight: %s failed", operation)
            status, payload = 500, {"Message": f"{type(exc).__name__}: {exc}"}
            headers = [("x-amzn-ErrorType", "InternalFailureException")]
        data = json.dumps(payload | {"RequestId": request_id}).encode()
        start_response(
            f"{status} {_REASONS.get(status, 'OK')}",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(data))),
                ("x-amzn-RequestId", request_id),
                *headers,
            ],
        )
        return [data]

    # --- data sources ------------------------------------------------------------------------

    def _create_data_source(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        account, source_id = self.account(caller.account_id), body["DataSourceId"]
        with self._lock:
            if source_id in account.data_sources:
                raise ApiError("ResourceExistsException", f"Data source {source_id} exists")
            now = _now()
            account.data_sources[source_id] = {
                "Arn": caller.arn("datasource", source_id),
                "DataSourceId": source_id,
                "Name": body["Name"],
                "Type": body["Type"],
                "Status": "CREATION_SUCCESSFUL",
                "CreatedTime": now,
                "LastUpdatedTime": now,
                "DataSourceParameters": body.get("DataSourceParameters", {}),
                "SslProperties": body.get("SslProperties", {"DisableSsl": False}),
            }
        arn = account.data_sources[source_id]["Arn"]
        status = {"CreationStatus": "CREATION_IN_PROGRESS"}
        return 202, {"Arn": arn, "DataSourceId": source_id, **status}

    def _data_source(self, caller: Caller, source_id: str) -> dict[str, Any]:
        source = self.account(caller.account_id).data_sources.get(source_id)
        if source is None:
            raise ApiError("ResourceNotFoundException", f"Data source {source_id} not found")
        return source

    def _describe_data_source(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        return 200, {"DataSource": self._data_source(caller, path["DataSourceId"])}

    def _update_data_source(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        with self._lock:
            source = self._data_source(caller, path["DataSourceId"])
            source["Name"] = body["Name"]
            for key in ("DataSourceParameters", "SslProperties"):
                if key in body:
                    source[key] = body[key]
            source |= {"Status": "UPDATE_SUCCESSFUL", "LastUpdatedTime": _now()}
        status = {"UpdateStatus": "UPDATE_IN_PROGRESS"}
        return 202, {"Arn": source["Arn"], "DataSourceId": source["DataSourceId"], **status}

    def _list_data_sources(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        sources = list(self.account(caller.account_id).data_sources.values())
        return 200, _page("DataSources", sources, query)

    # --- data sets ---------------------------------------------------------------------------

    def _check_data_set_body(self, caller: Caller, body: Mapping[str, Any]) -> None:
        """Every data source and RLS data set the request names must exist."""
        account = self.account(caller.account_id)
        arns = {s["Arn"] for s in account.data_sources.values()}
        for table_id, table in body["PhysicalTableMap"].items():
            source_arn = next(iter(table.values())).get("DataSourceArn")
            if source_arn not in arns:
                message = f"Physical table {table_id}: data source {source_arn} not found"
                raise ApiError("InvalidParameterValueException", message)
        rls = body.get("RowLevelPermissionDataSet")
        if rls and rls["Arn"] not in {d["Arn"] for d in account.data_sets.values()}:
            message = f"RowLevelPermissionDataSet {rls['Arn']} not found"
            raise ApiError("InvalidParameterValueException", message)

    def _store_data_set(self, caller: Caller, body: Mapping[str, Any], created: float) -> Any:
        data_set_id = body["DataSetId"]
        kept = (
            "Name",
            "PhysicalTableMap",
            "LogicalTableMap",
            "ImportMode",
            "ColumnGroups",
            "FieldFolders",
            "RowLevelPermissionDataSet",
            "RowLevelPermissionTagConfiguration",
            "ColumnLevelPermissionRules",
            "DataSetUsageConfiguration",
            "DatasetParameters",
            "PerformanceConfiguration",
            "UseAs",
        )
        data_set = {k: body[k] for k in kept if k in body} | {
            "Arn": caller.arn("dataset", data_set_id),
            "DataSetId": data_set_id,
            "CreatedTime": created,
            "LastUpdatedTime": _now(),
            "OutputColumns": _output_columns(body),
            "ConsumedSpiceCapacityInBytes": 0,
        }
        self.account(caller.account_id).data_sets[data_set_id] = data_set
        return data_set

    def _create_data_set(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        data_set_id = body["DataSetId"]
        with self._lock:
            if data_set_id in self.account(caller.account_id).data_sets:
                raise ApiError("ResourceExistsException", f"Data set {data_set_id} exists")
            self._check_data_set_body(caller, body)
            self._check_principals(caller, body.get("Permissions", []))
            data_set = self._store_data_set(caller, body, _now())
            self._set_permissions(caller, data_set["Arn"], body.get("Permissions", []), [])
        return 201, self._data_set_answer(caller, data_set, "INITIAL_INGESTION")

    def _update_data_set(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        body = {**body, "DataSetId": path["DataSetId"]}
        with self._lock:
            current = self._data_set(caller, path["DataSetId"])
            self._check_data_set_body(caller, body)
            extra = {"UseAs": current["UseAs"]} if "UseAs" in current else {}
            data_set = self._store_data_set(caller, body | extra, current["CreatedTime"])
        return 200, self._data_set_answer(caller, data_set, "EDIT")

    def _data_set_answer(self, caller: Caller, data_set: Mapping[str, Any], kind: str) -> Any:
        """Create/UpdateDataSet's answer; a SPICE data set starts ingesting, as on AWS."""
        answer = {"Arn": data_set["Arn"], "DataSetId": data_set["DataSetId"]}
        if data_set["ImportMode"] != "SPICE":
            return answer
        ingestion = self._start(caller, data_set["DataSetId"], str(uuid.uuid4()), kind, "MANUAL")
        return answer | {"IngestionArn": ingestion.arn, "IngestionId": ingestion.ingestion_id}

    def _data_set(self, caller: Caller, data_set_id: str) -> dict[str, Any]:
        data_set = self.account(caller.account_id).data_sets.get(data_set_id)
        if data_set is None:
            raise ApiError("ResourceNotFoundException", f"Data set {data_set_id} not found")
        return data_set

    def _describe_data_set(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        return 200, {"DataSet": self._data_set(caller, path["DataSetId"])}

    def _list_data_sets(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        summaries = [
            {
                k: d[k]
                for k in (
                    "Arn",
                    "DataSetId",
                    "Name",
                    "CreatedTime",
                    "LastUpdatedTime",
                    "ImportMode",
                    "RowLevelPermissionDataSet",
                    "UseAs",
                )
                if k in d
            }
            | {
                "RowLevelPermissionTagConfigurationApplied": False,
                "ColumnLevelPermissionRulesApplied": False,
            }
            for d in self.account(caller.account_id).data_sets.values()
        ]
        return 200, _page("DataSetSummaries", summaries, query)

    def _put_data_set_refresh_properties(
        self, caller: Caller, path: Any, query: Any, body: Any
    ) -> Any:
        data_set = self._data_set(caller, path["DataSetId"])
        properties = body["DataSetRefreshProperties"]
        incremental = (properties.get("RefreshConfiguration") or {}).get("IncrementalRefresh")
        if incremental:
            column = incremental["LookbackWindow"]["ColumnName"]
            types = {c["Name"]: c["Type"] for c in data_set["OutputColumns"]}
            if types.get(column) != "DATETIME":
                message = f"Lookback column {column} is not a date column of the data set"
                raise ApiError("InvalidParameterValueException", message)
        with self._lock:
            self.account(caller.account_id).refresh_properties[path["DataSetId"]] = properties
        return 200, {}

    def _describe_data_set_refresh_properties(
        self, caller: Caller, path: Any, query: Any, body: Any
    ) -> Any:
        self._data_set(caller, path["DataSetId"])
        properties = self.account(caller.account_id).refresh_properties.get(path["DataSetId"])
        if properties is None:
            message = f"Data set {path['DataSetId']} has no refresh properties"
            raise ApiError("ResourceNotFoundException", message)
        return 200, {"DataSetRefreshProperties": properties}

    def _delete_data_set_refresh_properties(
        self, caller: Caller, path: Any, query: Any, body: Any
    ) -> Any:
        self._describe_data_set_refresh_properties(caller, path, query, body)
        with self._lock:
            del self.account(caller.account_id).refresh_properties[path["DataSetId"]]
        return 200, {}

    # --- ingestions --------------------------------------------------------------------------

    def _create_ingestion(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        data_set_id, ingestion_id = path["DataSetId"], path["IngestionId"]
        request_type = body.get("IngestionType", "FULL_REFRESH")
        with self._lock:
            self._data_set(caller, data_set_id)
            account = self.account(caller.account_id)
            if ingestion_id in account.ingestions.get(data_set_id, {}):
                raise ApiError("ResourceExistsException", f"Ingestion {ingestion_id} exists")
            if request_type == "INCREMENTAL_REFRESH" and not _incremental(account, data_set_id):
                message = f"Data set {data_set_id} has no incremental refresh configuration"
                raise ApiError("InvalidParameterValueException", message)
            self._check_quota(account, data_set_id)
            ingestion = self._start(caller, data_set_id, ingestion_id, request_type, "MANUAL")
        answer = {"Arn": ingestion.arn, "IngestionId": ingestion_id}
        return 201, answer | {"IngestionStatus": ingestion.status}

    def _check_quota(self, account: Account, data_set_id: str) -> None:
        since = _now() - 24 * 3600
        recent = [
            i
            for i in account.ingestions.get(data_set_id, {}).values()
            if i.request_source == "MANUAL"
            and i.request_type in ("FULL_REFRESH", "INCREMENTAL_REFRESH")
            and i.created >= since
        ]
        if len(recent) >= self.manual_quota:
            message = (
                f"Data set {data_set_id} has reached its limit of {self.manual_quota} "
                "manual refreshes in 24 hours"
            )
            raise ApiError("LimitExceededException", message)

    def _start(
        self, caller: Caller, data_set_id: str, ingestion_id: str, kind: str, source: str
    ) -> Ingestion:
        arn = caller.arn("dataset", f"{data_set_id}/ingestion/{ingestion_id}")
        ingestion = Ingestion(data_set_id, ingestion_id, arn, kind, source)
        account = self.account(caller.account_id)
        with self._lock:
            account.ingestions.setdefault(data_set_id, {})[ingestion_id] = ingestion
            lock = account.running.setdefault(data_set_id, threading.Lock())
        worker = threading.Thread(
            target=self._run,
            args=(caller, account, ingestion, lock),
            daemon=True,
            name=f"local-quicksight-{ingestion_id}",
        )
        worker.start()
        return ingestion

    def _ingestion(self, caller: Caller, data_set_id: str, ingestion_id: str) -> Ingestion:
        self._data_set(caller, data_set_id)
        found = self.account(caller.account_id).ingestions.get(data_set_id, {}).get(ingestion_id)
        if found is None:
            raise ApiError("ResourceNotFoundException", f"Ingestion {ingestion_id} not found")
        return found

    def _describe_ingestion(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        ingestion = self._ingestion(caller, path["DataSetId"], path["IngestionId"])
        return 200, {"Ingestion": ingestion.to_api()}

    def _list_ingestions(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        self._data_set(caller, path["DataSetId"])
        known = self.account(caller.account_id).ingestions.get(path["DataSetId"], {})
        newest_first = sorted(known.values(), key=lambda i: i.created, reverse=True)
        return 200, _page("Ingestions", [i.to_api() for i in newest_first], query)

    def _cancel_ingestion(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        ingestion = self._ingestion(caller, path["DataSetId"], path["IngestionId"])
        with self._lock:
            if ingestion.status not in _ACTIVE:
                message = f"Ingestion {ingestion.ingestion_id} is already {ingestion.status}"
                raise ApiError("ResourceNotFoundException", message)
            ingestion.cancelled.set()
            ingestion.status = "CANCELLED"
            ingestion.error = {"Type": "INGESTION_CANCELED", "Message": "Ingestion is canceled"}
        return 200, {"Arn": ingestion.arn, "IngestionId": ingestion.ingestion_id}

    # --- dashboards --------------------------------------------------------------------------

    def _dashboard(self, caller: Caller, dashboard_id: str) -> dict[str, Any]:
        dashboard = self.account(caller.account_id).dashboards.get(dashboard_id)
        if dashboard is None:
            raise ApiError("ResourceNotFoundException", f"Dashboard {dashboard_id} not found")
        return dashboard

    def _create_dashboard(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        account, dashboard_id = self.account(caller.account_id), path["DashboardId"]
        with self._lock:
            if dashboard_id in account.dashboards:
                raise ApiError("ResourceExistsException", f"Dashboard {dashboard_id} exists")
            version = _version(caller, dashboard_id, 1, body, account)
            now = version["CreatedTime"]
            arn = caller.arn("dashboard", dashboard_id)
            self._set_permissions(caller, arn, body.get("Permissions", []), [])
            account.dashboards[dashboard_id] = {
                "DashboardId": dashboard_id,
                "Arn": caller.arn("dashboard", dashboard_id),
                "Name": body["Name"],
                "versions": [version],
                "published": 1,
                "CreatedTime": now,
                "LastPublishedTime": now,
                "LastUpdatedTime": now,
            }
        return 202, {
            "Arn": caller.arn("dashboard", dashboard_id),
            "VersionArn": version["Arn"],
            "DashboardId": dashboard_id,
            "CreationStatus": "CREATION_IN_PROGRESS",
        }

    def _describe_dashboard(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        dashboard = self._dashboard(caller, path["DashboardId"])
        return 200, {"Dashboard": _dashboard_api(dashboard, query)}

    def _update_dashboard(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        """A new version; viewers see it once it is published (UpdateDashboardPublishedVersion)."""
        account = self.account(caller.account_id)
        with self._lock:
            dashboard = self._dashboard(caller, path["DashboardId"])
            number = len(dashboard["versions"]) + 1
            version = _version(caller, path["DashboardId"], number, body, account)
            dashboard["versions"].append(version)
            dashboard |= {"Name": body["Name"], "LastUpdatedTime": version["CreatedTime"]}
        return 202, {
            "Arn": dashboard["Arn"],
            "VersionArn": version["Arn"],
            "DashboardId": dashboard["DashboardId"],
            "CreationStatus": "CREATION_IN_PROGRESS",
            "Status": 202,
        }

    def _update_dashboard_published_version(
        self, caller: Caller, path: Any, query: Any, body: Any
    ) -> Any:
        number = int(path["VersionNumber"])
        with self._lock:
            dashboard = self._dashboard(caller, path["DashboardId"])
            if not 1 <= number <= len(dashboard["versions"]):
                raise ApiError("ResourceNotFoundException", f"Dashboard version {number} not found")
            dashboard |= {"published": number, "LastPublishedTime": _now()}
        return 200, {"DashboardId": dashboard["DashboardId"], "DashboardArn": dashboard["Arn"]}

    # --- users, groups, memberships ----------------------------------------------------------

    def _user(self, caller: Caller, namespace: str, name: str) -> dict[str, Any]:
        user = self.account(caller.account_id).users.get((namespace, name))
        if user is None:
            raise ApiError("ResourceNotFoundException", f"User {name} not found in {namespace}")
        return user

    def _register_user(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        namespace, name = path["Namespace"], body.get("UserName")
        if body["IdentityType"] != "QUICKSIGHT" or not name:
            message = "the local QuickSight registers QUICKSIGHT users with a UserName only"
            raise ApiError("InvalidParameterValueException", message)
        account = self.account(caller.account_id)
        if (namespace, name) in account.users:
            raise ApiError("ResourceExistsException", f"User {name} already exists")
        account.users[(namespace, name)] = {
            "Arn": caller.arn("user", f"{namespace}/{name}"),
            "UserName": name,
            "Email": body["Email"],
            "Role": body["UserRole"],
            "IdentityType": "QUICKSIGHT",
            "Active": False,  # until the invited user signs in
            "PrincipalId": f"user/{namespace}/{uuid.uuid4().hex}",
        }
        return 201, {"User": account.users[(namespace, name)], "Status": 201}

    def _describe_user(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        return 200, {"User": self._user(caller, path["Namespace"], path["UserName"])}

    def _list_users(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        known = self.account(caller.account_id).users.items()
        users = [u for (ns, _), u in known if ns == path["Namespace"]]
        return 200, _page("UserList", users, query)

    def _update_user(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        user = self._user(caller, path["Namespace"], path["UserName"])
        user |= {"Email": body["Email"], "Role": body["Role"]}
        return 200, {"User": user, "Status": 200}

    def _list_user_groups(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        self._user(caller, path["Namespace"], path["UserName"])
        groups = [
            _group_api(g)
            for (ns, _), g in self.account(caller.account_id).groups.items()
            if ns == path["Namespace"] and path["UserName"] in g["members"]
        ]
        return 200, _page("GroupList", groups, query)

    def _group(self, caller: Caller, namespace: str, name: str) -> dict[str, Any]:
        group = self.account(caller.account_id).groups.get((namespace, name))
        if group is None:
            raise ApiError("ResourceNotFoundException", f"Group {name} not found in {namespace}")
        return group

    def _create_group(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        namespace, name = path["Namespace"], body["GroupName"]
        account = self.account(caller.account_id)
        if (namespace, name) in account.groups:
            raise ApiError("ResourceExistsException", f"Group {name} already exists")
        account.groups[(namespace, name)] = {
            "Arn": caller.arn("group", f"{namespace}/{name}"),
            "GroupName": name,
            "Description": body.get("Description", ""),
            "PrincipalId": f"group/{namespace}/{uuid.uuid4().hex}",
            "members": [],
        }
        return 200, {"Group": _group_api(account.groups[(namespace, name)]), "Status": 200}

    def _describe_group(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        group = self._group(caller, path["Namespace"], path["GroupName"])
        return 200, {"Group": _group_api(group), "Status": 200}

    def _list_groups(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        groups = [
            _group_api(g)
            for (ns, _), g in self.account(caller.account_id).groups.items()
            if ns == path["Namespace"]
        ]
        return 200, _page("GroupList", groups, query)

    def _create_group_membership(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        namespace, name = path["Namespace"], path["MemberName"]
        group = self._group(caller, namespace, path["GroupName"])
        self._user(caller, namespace, name)  # AWS: only a registered user can join
        if name not in group["members"]:
            group["members"].append(name)
        return 200, {"GroupMember": _member(group, name), "Status": 200}

    def _delete_group_membership(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        group = self._group(caller, path["Namespace"], path["GroupName"])
        if path["MemberName"] not in group["members"]:
            message = f"{path['MemberName']} is not a member of {path['GroupName']}"
            raise ApiError("ResourceNotFoundException", message)
        group["members"].remove(path["MemberName"])
        return 200, {"Status": 200}

    def _list_group_memberships(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        group = self._group(caller, path["Namespace"], path["GroupName"])
        members = [_member(group, name) for name in group["members"]]
        return 200, _page("GroupMemberList", members, query)

    # --- permissions -------------------------------------------------------------------------

    def _check_principals(self, caller: Caller, permissions: Iterable[Mapping[str, Any]]) -> None:
        """A user or group of this account must exist (AWS refuses an unknown principal)."""
        account = self.account(caller.account_id)
        for permission in permissions:
            found = _PRINCIPAL.match(permission["Principal"])
            if not found or found["account"] != caller.account_id:
                continue
            known = account.users if found["kind"] == "user" else account.groups
            if (found["ns"], found["name"]) not in known:
                message = f"Principal {permission['Principal']} does not exist"
                raise ApiError("InvalidParameterValueException", message)

    def _set_permissions(
        self, caller: Caller, arn: str, grant: list[Any], revoke: list[Any]
    ) -> list[dict[str, Any]]:
        self._check_principals(caller, grant)
        held = {
            p["Principal"]: set(p["Actions"])
            for p in self.account(caller.account_id).permissions.get(arn, [])
        }
        for permission in grant:
            held.setdefault(permission["Principal"], set()).update(permission["Actions"])
        for permission in revoke:
            held.get(permission["Principal"], set()).difference_update(permission["Actions"])
        result = [{"Principal": p, "Actions": sorted(a)} for p, a in held.items() if a]
        self.account(caller.account_id).permissions[arn] = result
        return result

    def _describe_data_set_permissions(
        self, caller: Caller, path: Any, query: Any, body: Any
    ) -> Any:
        data_set = self._data_set(caller, path["DataSetId"])
        permissions = self.account(caller.account_id).permissions.get(data_set["Arn"], [])
        answer = {"DataSetArn": data_set["Arn"], "DataSetId": data_set["DataSetId"]}
        return 200, answer | _listed(permissions) | {"Status": 200}

    def _update_data_set_permissions(self, caller: Caller, path: Any, query: Any, body: Any) -> Any:
        data_set = self._data_set(caller, path["DataSetId"])
        grant, revoke = body.get("GrantPermissions", []), body.get("RevokePermissions", [])
        self._set_permissions(caller, data_set["Arn"], grant, revoke)
        answer = {"DataSetArn": data_set["Arn"], "DataSetId": data_set["DataSetId"]}
        return 200, answer | {"Status": 200}

    def _describe_dashboard_permissions(
        self, caller: Caller, path: Any, query: Any, body: Any
    ) -> Any:
        dashboard = self._dashboard(caller, path["DashboardId"])
        permissions = self.account(caller.account_id).permissions.get(dashboard["Arn"], [])
        answer = {"DashboardArn": dashboard["Arn"], "DashboardId": dashboard["DashboardId"]}
        return 200, answer | _listed(permissions) | {"Status": 200}

    def _update_dashboard_permissions(
        self, caller: Caller, path: Any, query: Any, body: Any
    ) -> Any:
        dashboard = self._dashboard(caller, path["DashboardId"])
        grant, revoke = body.get("GrantPermissions", []), body.get("RevokePermissions", [])
        permissions = self._set_permissions(caller, dashboard["Arn"], grant, revoke)
        answer = {"DashboardArn": dashboard["Arn"], "DashboardId": dashboard["DashboardId"]}
        return 200, answer | _listed(permissions) | {"Status": 200}

    # --- what a user sees --------------------------------------------------------------------

    def visible_rows(
        self, account_id: str, data_set_id: str, user_name: str, namespace: str = "default"
    ) -> list[dict[str, Any]]:
        """The SPICE rows of ``data_set_id`` that ``user_name`` may see (see the module's doc);
        raises ``ApiError`` (AccessDeniedException) when they may see none."""
        with self._lock:
            account = self._accounts.get(account_id) or Account()
            user = account.users.get((namespace, user_name))
            if user is None:
                raise ApiError("AccessDeniedException", f"{user_name} is not a QuickSight user")
            data_set = account.data_sets.get(data_set_id)
            if data_set is None:
                raise ApiError("ResourceNotFoundException", f"Data set {data_set_id} not found")
            principals = {user["Arn"]} | {
                g["Arn"]
                for (ns, _), g in account.groups.items()
                if ns == namespace and user_name in g["members"]
            }
            actions = _actions_of(account, data_set, principals)
            if not actions:
                message = f"{user_name} has no permission on data set {data_set_id}"
                raise ApiError("AccessDeniedException", message)
            rows = list(account.spice.get(data_set_id, []))
            rls = data_set.get("RowLevelPermissionDataSet") or {}
            if rls.get("Status", "ENABLED") == "DISABLED" or not rls or _OWNER_ACTION in actions:
                return rows
            return _apply_rules(account, rls, rows, user, principals - {user["Arn"]})

    # --- the ingestion worker ----------------------------------------------------------------

    def _set(self, ingestion: Ingestion, **changes: Any) -> bool:
        """Apply ``changes`` unless the ingestion was cancelled meanwhile."""
        with self._lock:
            if ingestion.cancelled.is_set():
                return False
            for key, value in changes.items():
                setattr(ingestion, key, value)
            return True

    def _run(self, caller: Caller, account: Account, ingestion: Ingestion, lock: Any) -> None:
        """INITIALIZED -> (QUEUED) -> RUNNING -> COMPLETED | FAILED, at least ingestion_seconds."""
        started = time.monotonic()
        if ingestion.cancelled.wait(self.ingestion_seconds / 4):
            return
        if not lock.acquire(blocking=False):
            ahead = _running_id(account, ingestion.data_set_id, ingestion.ingestion_id)
            queue = {"WaitingOnIngestion": ahead, "QueuedIngestion": ingestion.ingestion_id}
            self._set(ingestion, status="QUEUED", queue_info=queue)
            lock.acquire()
        try:
            if not self._set(ingestion, status="RUNNING"):
                return
            outcome = self._ingest(caller, account, ingestion)
            spice = outcome.pop("spice", None)
            remaining = self.ingestion_seconds - (time.monotonic() - started)
            if remaining > 0 and ingestion.cancelled.wait(remaining):
                return
            with self._lock:  # the rows and the status change together
                seconds = max(1, round(time.monotonic() - started))
                if self._set(ingestion, seconds=seconds, **outcome) and spice is not None:
                    account.spice[ingestion.data_set_id] = spice
        finally:
            lock.release()

    def _ingest(self, caller: Caller, account: Account, ingestion: Ingestion) -> dict[str, Any]:
        """The ingestion's final fields: status, and RowInfo or ErrorInfo."""
        data_set = account.data_sets.get(ingestion.data_set_id)
        if data_set is None:
            return _failed("DATA_SET_DELETED", f"Data set {ingestion.data_set_id} was deleted")
        if data_set["ImportMode"] != "SPICE":
            return _failed("DATA_SET_NOT_SPICE", f"Data set {ingestion.data_set_id} is not SPICE")
        try:
            table = self._athena_table(caller, account, data_set)
            window = _lookback(account, data_set, ingestion.request_type)
            return _read_table(caller, table, window)
        except IngestionFailedError as failure:
            return _failed(failure.type, str(failure))
        except Exception as exc:  # an unreadable lake must end the ingestion, not hang it
            log.exception("local QuickSight: ingestion %s failed", ingestion.ingestion_id)
            return _failed("CONNECTION_FAILURE", f"{type(exc).__name__}: {exc}")

    def _athena_table(
        self, caller: Caller, account: Account, data_set: Mapping[str, Any]
    ) -> AthenaTable:
        tables = list(data_set["PhysicalTableMap"].values())
        relational = tables[0].get("RelationalTable") if len(tables) == 1 else None
        if relational is None:
            raise IngestionFailedError(
                "CUSTOMER_ERROR", "the local QuickSight ingests one RelationalTable per data set"
            )
        sources = {s["Arn"]: s for s in account.data_sources.values()}
        source = sources.get(relational["DataSourceArn"])
        if source is None or source["Type"] != "ATHENA":
            message = f"Athena data source {relational['DataSourceArn']} not found"
            raise IngestionFailedError("DATA_SOURCE_NOT_FOUND", message)
        database = relational.get("Schema", "default")
        glue_table = _glue_table(caller, database, relational["Name"])
        renames = _renames(data_set)
        return AthenaTable(
            database=database,
            name=relational["Name"],
            glue=glue_table,
            partitions=_registered_partitions(caller, glue_table),
            input_columns=[
                {**c, "Field": renames.get(c["Name"], c["Name"])}
                for c in relational["InputColumns"]
            ],
        )


class IngestionFailedError(Exception):
    """Ends an ingestion FAILED with ErrorInfo {Type, Message}."""

    def __init__(self, type_: str, message: str) -> None:
        super().__init__(message)
        self.type = type_


def _failed(type_: str, message: str) -> dict[str, Any]:
    return {"status": "FAILED", "error": {"Type": type_, "Message": message}}


def _running_id(account: Account, data_set_id: str, other_than: str) -> str:
    for ingestion in account.ingestions.get(data_set_id, {}).values():
        if ingestion.status == "RUNNING" and ingestion.ingestion_id != other_than:
            return ingestion.ingestion_id
    return "unknown"


def _incremental(account: Account, data_set_id: str) -> dict[str, Any] | None:
    properties = account.refresh_properties.get(data_set_id) or {}
    return (properties.get("RefreshConfiguration") or {}).get("IncrementalRefresh")


def _renames(data_set: Mapping[str, Any]) -> dict[str, str]:
    """Physical column name -> field name, from the logical tables' rename operations."""
    renames = {}
    for table in data_set.get("LogicalTableMap", {}).values():
        for transform in table.get("DataTransforms", []):
            rename = transform.get("RenameColumnOperation")
            if rename:
                renames[rename["ColumnName"]] = rename["NewColumnName"]
    return renames


def _output_columns(body: Mapping[str, Any]) -> list[dict[str, str]]:
    renames = _renames(body)
    columns = []
    for table in body["PhysicalTableMap"].values():
        for column in next(iter(table.values())).get("InputColumns", []):
            output = {"Name": renames.get(column["Name"], column["Name"]), "Type": column["Type"]}
            sub_type = column.get("SubType") or ("FIXED" if column["Type"] == "DECIMAL" else None)
            columns.append(output | ({"SubType": sub_type} if sub_type else {}))
    return columns


@dataclass(frozen=True)
class LookbackWindow:
    column: str  # physical (Athena) name
    cutoff: datetime


def _lookback(
    account: Account, data_set: Mapping[str, Any], request_type: str
) -> LookbackWindow | None:
    """The rows an incremental refresh reads: the lookback column >= now - window."""
    incremental = _incremental(account, data_set["DataSetId"])
    if request_type != "INCREMENTAL_REFRESH" or not incremental:
        return None
    window = incremental["LookbackWindow"]
    physical = {v: k for k, v in _renames(data_set).items()}
    cutoff = datetime.now(UTC) - window["Size"] * _WINDOW_UNITS[window["SizeUnit"]]
    return LookbackWindow(physical.get(window["ColumnName"], window["ColumnName"]), cutoff)


# --- the lake, as Athena reads it --------------------------------------------------------------


@dataclass(frozen=True)
class AthenaTable:
    database: str
    name: str
    glue: Mapping[str, Any]
    input_columns: list[dict[str, str]]  # the data set's columns, with their field name
    partitions: tuple[str, ...] | None = None  # key prefixes of registered partitions

    @property
    def location(self) -> tuple[str, str]:
        uri = self.glue["StorageDescriptor"]["Location"]
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        return bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/"

    @property
    def column_types(self) -> dict[str, str]:
        """Glue column name (lowercase, as Athena) -> Athena type."""
        columns = self.glue["StorageDescriptor"].get("Columns", [])
        columns = columns + self.glue.get("PartitionKeys", [])
        return {c["Name"].lower(): c["Type"].lower() for c in columns}

    @property
    def partition_keys(self) -> list[str]:
        return [k["Name"] for k in self.glue.get("PartitionKeys", [])]


def _client(caller: Caller, service: str) -> Any:
    import boto3
    from botocore.config import Config

    from storepulse_local.iam import credentials_of

    # The embedded AWS enforces IAM: the caller's own credentials, as moto holds them.
    secret, token = credentials_of(caller.access_key)
    return boto3.client(
        service,
        endpoint_url=caller.endpoint,
        region_name=caller.region,
        aws_access_key_id=caller.access_key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )


def _glue_table(caller: Caller, database: str, name: str) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    try:
        return _client(caller, "glue").get_table(DatabaseName=database, Name=name)["Table"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "EntityNotFoundException":
            raise
        message = f"SQL exception: Table {database}.{name} does not exist in the Glue catalog"
        raise IngestionFailedError("SQL_TABLE_NOT_FOUND", message) from None


def _registered_partitions(caller: Caller, table: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The key prefixes of a partitioned table's registered partitions: all Athena reads. None
    when it reads folders instead: an unpartitioned table, or partition projection."""
    projected = (table.get("Parameters") or {}).get("projection.enabled", "").lower() == "true"
    if not table.get("PartitionKeys") or projected:
        return None
    pages = (
        _client(caller, "glue")
        .get_paginator("get_partitions")
        .paginate(DatabaseName=table["DatabaseName"], TableName=table["Name"])
    )
    locations = [p["StorageDescriptor"]["Location"] for page in pages for p in page["Partitions"]]
    keys = [uri.removeprefix("s3://").partition("/")[2] for uri in locations]
    return tuple(key if key.endswith("/") else key + "/" for key in keys)


def _is_data_file(relative_key: str, partition_keys: list[str]) -> bool:
    """What Athena reads under a table's location: no hidden files (``_SUCCESS``, ``.tmp``),
    and for a partitioned table only files inside ``<key>=<value>/`` folders, key by key."""
    parts = relative_key.split("/")
    if not parts[-1] or any(p.startswith(("_", ".")) for p in parts):
        return False
    folders = parts[:-1]
    if len(folders) < len(partition_keys):
        return False
    return all(f.startswith(f"{k}=") for f, k in zip(folders, partition_keys, strict=False))


def _data_files(s3: Any, table: AthenaTable) -> Iterator[tuple[str, int]]:
    bucket, prefix = table.location
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if not _is_data_file(key[len(prefix) :], table.partition_keys):
                continue
            if table.partitions is None or key.startswith(table.partitions):
                yield key, item["Size"]


def _read_table(
    caller: Caller, table: AthenaTable, window: LookbackWindow | None
) -> dict[str, Any]:
    """Check every file against the data set's columns and count its rows."""
    import pyarrow.parquet as pq

    s3 = _client(caller, "s3")
    bucket = table.location[0]
    _check_columns_exist(table)
    total = ingested = size = 0
    spice: list[dict[str, Any]] = []
    for key, length in sorted(_data_files(s3, table)):
        uri = f"s3://{bucket}/{key}"
        raw = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        try:
            parquet = pq.ParquetFile(io.BytesIO(raw))
        except Exception as exc:
            message = f"HIVE_BAD_DATA: {uri} is not a valid Parquet file ({exc})"
            raise IngestionFailedError("CUSTOMER_ERROR", message) from None
        _check_file(table, parquet.schema_arrow, uri)
        spice += _spice_rows(parquet, table, key)
        rows = parquet.metadata.num_rows
        total += rows
        ingested += rows if window is None else _rows_in_window(parquet, window)
        size += length
    rows_info = {"RowsIngested": ingested, "RowsDropped": 0, "TotalRowsInDataset": total}
    return {"status": "COMPLETED", "rows": rows_info, "size_bytes": size, "spice": spice}


def _spice_rows(parquet: Any, table: AthenaTable, key: str) -> list[dict[str, Any]]:
    """A file's rows as SPICE keeps them: by field name, partition keys from the folders. (An
    incremental refresh keeps every row read, not only the window's: the lake is append-only
    per partition, so the copy is the same.)"""
    names = {f.name.lower(): f.name for f in parquet.schema_arrow}
    read = [c for c in table.input_columns if c["Name"].lower() in names]
    data = parquet.read(columns=[names[c["Name"].lower()] for c in read]).to_pylist()
    folders = dict(part.split("=", 1) for part in key.split("/")[:-1] if "=" in part)
    filled = {
        c["Field"]: folders.get(c["Name"])
        for c in table.input_columns
        if c["Name"].lower() not in names
    }
    return [{c["Field"]: row[names[c["Name"].lower()]] for c in read} | filled for row in data]


def _check_columns_exist(table: AthenaTable) -> None:
    glue_columns = table.column_types
    for column in table.input_columns:
        if column["Name"].lower() not in glue_columns:
            message = (
                f"COLUMN_NOT_FOUND: Column '{column['Name']}' cannot be resolved: "
                f"table {table.database}.{table.name} has no such column"
            )
            raise IngestionFailedError("CUSTOMER_ERROR", message)


def _check_file(table: AthenaTable, schema: Any, uri: str) -> None:
    """Each column of the data set: in the file, of a type the table and QuickSight accept."""
    file_types = {f.name.lower(): f.type for f in schema}
    partition_keys = {k.lower() for k in table.partition_keys}
    for column in table.input_columns:
        name = column["Name"].lower()
        if name in partition_keys:
            continue  # a partition key comes from the folder name, not the file
        athena_type = table.column_types[name]
        arrow_type = file_types.get(name)
        if arrow_type is None:
            message = (
                f"HIVE_BAD_DATA: column {column['Name']} ({athena_type}) of data set field "
                f"{column['Field']} is missing from parquet file {uri}"
            )
            raise IngestionFailedError("CUSTOMER_ERROR", message)
        if not athena_accepts(athena_type, arrow_type):
            message = (
                f"HIVE_BAD_DATA: Field {column['Name']}'s type {arrow_type} in parquet file "
                f"{uri} is incompatible with type {athena_type} defined in table schema"
            )
            raise IngestionFailedError("CUSTOMER_ERROR", message)
        if not quicksight_accepts(column["Type"], arrow_type):
            message = (
                f"Column {column['Field']} is {column['Type']} in the data set but "
                f"{arrow_type} in parquet file {uri}"
            )
            raise IngestionFailedError("CUSTOMER_ERROR", message)


def _rows_in_window(parquet: Any, window: LookbackWindow) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc

    names = {f.name.lower(): f.name for f in parquet.schema_arrow}
    column = names.get(window.column.lower())
    if column is None:
        return 0
    values = parquet.read(columns=[column]).column(0)
    if pa.types.is_date(values.type):
        cutoff = pa.scalar(window.cutoff.date(), type=pa.date32()).cast(values.type)
    else:
        cutoff = pa.scalar(window.cutoff).cast(values.type)
    return int(pc.sum(pc.greater_equal(values, cutoff)).as_py() or 0)


_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
_INTEGER_BITS = {"tinyint": 8, "smallint": 16, "int": 32, "integer": 32, "bigint": 64}


def athena_accepts(athena_type: str, arrow_type: Any) -> bool:
    """Whether Athena reads a Parquet column of ``arrow_type`` as ``athena_type``: same kind,
    integers no wider, decimals with the same scale and no more precision."""
    import pyarrow as pa

    kind = athena_type.lower()
    if kind == "string" or kind.startswith(("varchar", "char")):
        return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
    if kind in _INTEGER_BITS:
        return (
            pa.types.is_signed_integer(arrow_type) and arrow_type.bit_width <= _INTEGER_BITS[kind]
        )
    if kind in ("double", "float", "real"):
        return pa.types.is_floating(arrow_type) and (kind == "double" or arrow_type.bit_width <= 32)
    decimal = _DECIMAL.match(kind)
    if decimal:
        precision, scale = int(decimal.group(1)), int(decimal.group(2))
        return (
            pa.types.is_decimal(arrow_type)
            and arrow_type.scale == scale
            and arrow_type.precision <= precision
        )
    checks = {"boolean": pa.types.is_boolean, "date": pa.types.is_date}
    checks["timestamp"] = pa.types.is_timestamp
    return checks.get(kind, lambda _type: True)(arrow_type)


def quicksight_accepts(quicksight_type: str, arrow_type: Any) -> bool:
    """Whether a QuickSight input column of ``quicksight_type`` can hold ``arrow_type``."""
    import pyarrow as pa

    checks: dict[str, Callable[[Any], bool]] = {
        "STRING": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
        "INTEGER": pa.types.is_integer,
        "DECIMAL": lambda t: pa.types.is_decimal(t) or pa.types.is_floating(t),
        "DATETIME": lambda t: pa.types.is_timestamp(t) or pa.types.is_date(t),
        "BOOLEAN": pa.types.is_boolean,
        "BIT": pa.types.is_boolean,
    }
    return checks.get(quicksight_type, lambda _type: True)(arrow_type)


# --- permissions and row-level security --------------------------------------------------------


def _group_api(group: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in group.items() if k != "members"}


def _listed(permissions: list[dict[str, Any]]) -> dict[str, Any]:
    """``Permissions`` of a describe: AWS leaves it out rather than send an empty list."""
    return {"Permissions": permissions} if permissions else {}


def _member(group: Mapping[str, Any], name: str) -> dict[str, Any]:
    return {"Arn": f"{group['Arn']}/{name}", "MemberName": name}


def _actions_of(account: Account, data_set: Mapping[str, Any], principals: set[str]) -> set[str]:
    """What ``principals`` may do with the data set: its own permissions, and reading it through
    a dashboard they may view whose published version uses it."""
    held = {
        action
        for p in account.permissions.get(data_set["Arn"], [])
        if p["Principal"] in principals
        for action in p["Actions"]
    }
    for dashboard in account.dashboards.values():
        version = dashboard["versions"][dashboard["published"] - 1]
        viewers = {p["Principal"] for p in account.permissions.get(dashboard["Arn"], [])}
        if data_set["Arn"] in version["DataSetArns"] and viewers & principals:
            held.add("quicksight:QueryDashboard")
    return held


def _apply_rules(
    account: Account,
    rls: Mapping[str, Any],
    rows: list[dict[str, Any]],
    user: Mapping[str, Any],
    group_arns: set[str],
) -> list[dict[str, Any]]:
    """The rows the rules data set's SPICE copy lets ``user`` see; no rule: refused."""
    by_arn = rls.get("FormatVersion", "VERSION_1") == "VERSION_2"
    user_column, group_column = ("UserARN", "GroupARN") if by_arn else ("UserName", "GroupName")
    user_key = user["Arn"] if by_arn else user["UserName"]
    groups = group_arns if by_arn else {arn.rsplit("/", 1)[1] for arn in group_arns}
    source = next((d for d in account.data_sets.values() if d["Arn"] == rls["Arn"]), None)
    rules = account.spice.get(source["DataSetId"], []) if source else []
    mine = [
        rule
        for rule in rules
        if rule.get(user_column) == user_key or (rule.get(group_column) or "") in groups
    ]
    if not mine:
        message = f"no row-level security rule lets {user['UserName']} see data set rows"
        raise ApiError("AccessDeniedException", message)
    fields = [k for k in mine[0] if k not in (user_column, group_column)]
    deny = rls.get("PermissionPolicy") == "DENY_ACCESS"
    return [row for row in rows if any(_matches(row, r, fields) for r in mine) != deny]


def _matches(row: Mapping[str, Any], rule: Mapping[str, Any], fields: list[str]) -> bool:
    """Every field of the rule is empty (all values) or lists the row's value (comma-separated)."""
    return all(
        not rule.get(name) or str(row.get(name)) in {v.strip() for v in str(rule[name]).split(",")}
        for name in fields
    )


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decimals as exact strings, dates and times in ISO 8601."""
    return json.loads(
        json.dumps(rows, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))
    )


def query_rows(
    endpoint: str, account_id: str, data_set_id: str, user_name: str, namespace: str = "default"
) -> list[dict[str, Any]]:
    """``visible_rows`` over HTTP (the embedded AWS at ``endpoint``); raises ``ApiError``."""
    import httpx

    path = (
        f"/storepulse-local/quicksight/accounts/{account_id}/namespaces/{namespace}"
        f"/users/{user_name}/data-sets/{data_set_id}/rows"
    )
    response = httpx.get(endpoint.rstrip("/") + path, timeout=30)
    if response.status_code != 200:
        code = response.headers.get("x-amzn-ErrorType", "InternalFailureException")
        raise ApiError(code, response.json().get("Message", response.text))
    return list(response.json()["Rows"])


# --- helpers -----------------------------------------------------------------------------------


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _read_json(environ: Mapping[str, Any]) -> dict[str, Any]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise ApiError("InvalidParameterValueException", "the request body is not JSON") from None


def _dashboard_errors(account: Account, definition: Mapping[str, Any]) -> list[dict[str, Any]]:
    known = {d["Arn"] for d in account.data_sets.values()}
    return [
        {"Type": "DATA_SET_NOT_FOUND", "Message": f"Data set {d['DataSetArn']} not found"}
        for d in definition.get("DataSetIdentifierDeclarations", [])
        if d["DataSetArn"] not in known
    ]


def _version(caller: Caller, dashboard_id: str, number: int, body: Any, account: Account) -> Any:
    definition = body.get("Definition")
    if definition is None:
        message = "the local QuickSight builds dashboards from a Definition only (no SourceEntity)"
        raise ApiError("InvalidParameterValueException", message)
    errors = _dashboard_errors(account, definition)
    version: dict[str, Any] = {
        "CreatedTime": _now(),
        "VersionNumber": number,
        "Status": "CREATION_FAILED" if errors else "CREATION_SUCCESSFUL",
        "Arn": caller.arn("dashboard", f"{dashboard_id}/version/{number}"),
        "DataSetArns": [d["DataSetArn"] for d in definition["DataSetIdentifierDeclarations"]],
        "Sheets": [
            {"SheetId": s["SheetId"], "Name": s.get("Name", s["SheetId"])}
            for s in definition.get("Sheets", [])
        ],
    }
    if errors:
        version["Errors"] = errors
    if body.get("VersionDescription"):
        version["Description"] = body["VersionDescription"]
    if body.get("ThemeArn"):
        version["ThemeArn"] = body["ThemeArn"]
    return version


def _dashboard_api(dashboard: Mapping[str, Any], query: Mapping[str, list[str]]) -> dict[str, Any]:
    versions = dashboard["versions"]
    number = int((query.get("version-number") or [dashboard["published"]])[0])
    alias = (query.get("alias-name") or [None])[0]
    if alias == "$LATEST":
        number = len(versions)
    if not 1 <= number <= len(versions):
        raise ApiError("ResourceNotFoundException", f"Dashboard version {number} not found")
    return {
        "DashboardId": dashboard["DashboardId"],
        "Arn": dashboard["Arn"],
        "Name": dashboard["Name"],
        "Version": versions[number - 1],
        "CreatedTime": dashboard["CreatedTime"],
        "LastPublishedTime": dashboard["LastPublishedTime"],
        "LastUpdatedTime": dashboard["LastUpdatedTime"],
    }


__all__ = [
    "OPERATIONS",
    "ApiError",
    "LocalQuickSight",
    "athena_accepts",
    "is_quicksight_request",
    "query_rows",
    "quicksight_accepts",
    "routes",
]
