"""DynamoDB's incremental export (``ExportType=INCREMENTAL_EXPORT``) inside the embedded AWS.

moto 5.2.5 accepts an incremental request but ignores ``IncrementalExportSpecification`` and
writes the whole table in the full export's format. AWS exports, from the table's
point-in-time recovery history, one line per item changed in ``[ExportFromTime,
ExportToTime)``::

    {"Metadata": {"WriteTimestampMicros": {"N": "..."}}, "Keys": {...},
     "OldImage": {...}, "NewImage": {...}}

``NewImage``: the item just before ``ExportToTime`` (absent: deleted); ``OldImage`` (view
``NEW_AND_OLD_IMAGES``, the default): the item just before ``ExportFromTime`` (absent: it did
not exist). Data files go to the shared ``<prefix>/AWSDynamoDB/data/`` folder; the export's
``manifest-summary.json`` and ``manifest-files.json`` name them, and ``ExportManifest`` points
at the summary.

What this module adds to moto, once per process (``patch_dynamodb_exports``):

- a change log per table while point-in-time recovery is on: ``(time, keys, old, new)`` of
  every put, update and delete (batch and transaction writes go through the same methods),
  trimmed to the recovery period; switching recovery off forgets it, as AWS forgets the history;
- ``EarliestRestorableDateTime`` (when recovery was switched on) and
  ``LatestRestorableDateTime`` (now) from the module's clock, which tests may set
  (``set_clock``): an incremental export of a day needs a table whose history is that old;
- the request's validation as AWS does it: the window must lie in the recovery window
  (``InvalidExportTimeException``), last 15 minutes to 24 hours, ``ExportFromTime`` before
  ``ExportToTime``, no ``ExportTime`` beside it, a known view type (``ValidationException``).
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from storepulse_local.cloudformation import patch_once

MIN_WINDOW_SECONDS: Final = 15 * 60
MAX_WINDOW_SECONDS: Final = 24 * 3600
VIEW_TYPES: Final = ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")
_LOG: Final = "_storepulse_changes"
_SINCE: Final = "_storepulse_pitr_since"

# time, keys (JSON), old and new image (zlib'd JSON: a busy metrics item is kilobytes, written
# with every sale, and the log is held in memory and in the snapshots)
Change = tuple[float, str, bytes | None, bytes | None]

_clock: Callable[[], float] = time.time


def set_clock(clock: Callable[[], float] | None) -> None:
    """The embedded AWS's clock for recovery history (seconds since the epoch); None: real."""
    global _clock
    _clock = clock or time.time


def now() -> float:
    return _clock()


def change_log(table: Any) -> list[Change] | None:
    """The table's recovery history, oldest first (None: recovery is off)."""
    return table.__dict__.get(_LOG)


def patch_dynamodb_exports() -> None:
    """Apply the patches (once per process, however many servers start)."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.models.table_export import TableExport
    from moto.dynamodb.responses import DynamoHandler

    patch_once(Table, "put_item", _logging_put)
    patch_once(Table, "delete_item", _logging_delete)
    patch_once(DynamoDBBackend, "update_item", _logging_update)
    patch_once(DynamoDBBackend, "update_continuous_backups", _stamping_recovery)
    patch_once(DynamoDBBackend, "describe_continuous_backups", _describing_recovery)
    patch_once(DynamoHandler, "export_table_to_point_in_time", _exporting_increments)
    patch_once(TableExport, "response", _describing_increments)


# --- the change log ----------------------------------------------------------------------------


def _recovery_on(table: Any) -> bool:
    description = table.continuous_backups.get("PointInTimeRecoveryDescription", {})
    return description.get("PointInTimeRecoveryStatus") == "ENABLED"


def _image(item: Any) -> bytes | None:
    """An item as compressed DynamoDB JSON, taken now (moto updates items in place)."""
    from moto.dynamodb.models.utilities import dynamo_json_dump

    if item is None:
        return None
    return zlib.compress(dynamo_json_dump(item.to_json()["Attributes"]).encode(), 1)


def _load(image: bytes) -> Any:
    return json.loads(zlib.decompress(image))


def _keys(table: Any, item: Any) -> str:
    from moto.dynamodb.models.utilities import dynamo_json_dump

    keys = {table.hash_key_attr: item.hash_key.to_json()}
    if table.range_key_attr and item.range_key is not None:
        keys[table.range_key_attr] = item.range_key.to_json()
    return str(dynamo_json_dump(keys))


def _record(table: Any, old: bytes | None, new_item: Any, keyed: Any) -> None:
    if not _recovery_on(table):
        return
    log: list[Change] = table.__dict__.setdefault(_LOG, [])
    moment = _clock()
    log.append((moment, _keys(table, keyed), old, _image(new_item)))
    days = table.continuous_backups["PointInTimeRecoveryDescription"].get(
        "RecoveryPeriodInDays", 35
    )
    horizon = moment - float(days) * 86400
    if log[0][0] < horizon:  # trimmed as AWS forgets history past the recovery period
        table.__dict__[_LOG] = [change for change in log if change[0] >= horizon]


def _current(table: Any, hash_value: Any, range_value: Any) -> Any:
    try:
        return table.get_item(hash_value, range_value)
    except Exception:  # a malformed key: the write itself refuses it
        return None


def _logging_put(put: Callable[..., Any]) -> Callable[..., Any]:
    def put_item(self: Any, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        from moto.dynamodb.models.dynamo_type import DynamoType

        old = None
        if self.hash_key_attr in item_attrs:
            range_value = item_attrs.get(self.range_key_attr) if self.range_key_attr else None
            old = _image(
                _current(
                    self,
                    DynamoType(item_attrs[self.hash_key_attr]),
                    DynamoType(range_value) if range_value else None,
                )
            )
        item = put(self, item_attrs, *args, **kwargs)
        _record(self, old, item, item)
        return item

    return put_item


def _logging_delete(delete: Callable[..., Any]) -> Callable[..., Any]:
    def delete_item(self: Any, hash_key: Any, range_key: Any) -> Any:
        item = delete(self, hash_key, range_key)
        if item is not None:
            _record(self, _image(item), None, item)
        return item

    return delete_item


def _logging_update(update: Callable[..., Any]) -> Callable[..., Any]:
    def update_item(self: Any, table_name: str, key: dict[str, Any], *args: Any, **kw: Any) -> Any:
        table = self.get_table(table_name)
        old = None
        try:
            hash_value, range_value = self.get_keys_value(table, key)
            old = _image(_current(table, hash_value, range_value))
        except Exception:  # the update itself reports a bad key
            pass
        item = update(self, table_name, key, *args, **kw)
        _record(table, old, item, item)
        return item

    return update_item


def _stamping_recovery(update: Callable[..., Any]) -> Callable[..., Any]:
    def update_continuous_backups(self: Any, table_name: str, spec: dict[str, Any]) -> Any:
        table = self.get_table(table_name)
        was_on = _recovery_on(table)
        answer = update(self, table_name, spec)
        if _recovery_on(table) and not was_on:
            table.__dict__[_SINCE] = _clock()
            table.__dict__[_LOG] = []
        elif not _recovery_on(table):
            table.__dict__.pop(_SINCE, None)
            table.__dict__.pop(_LOG, None)  # AWS forgets the history when recovery goes off
        return answer

    return update_continuous_backups


def _describing_recovery(describe: Callable[..., Any]) -> Callable[..., Any]:
    def describe_continuous_backups(self: Any, table_name: str) -> Any:
        answer = describe(self, table_name)
        table = self.get_table(table_name)
        if _recovery_on(table) and _SINCE in table.__dict__:
            description = answer["PointInTimeRecoveryDescription"]
            description["EarliestRestorableDateTime"] = table.__dict__[_SINCE]
            description["LatestRestorableDateTime"] = _clock()
        return answer

    return describe_continuous_backups


# --- the export --------------------------------------------------------------------------------


def _error(code: str, message: str) -> Exception:
    from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException

    return DynamodbException(ERROR_TYPE_PREFIX + code, message)


def _seconds(value: Any) -> float:
    """A request timestamp: epoch seconds (boto3) or ISO 8601 text."""
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def validate_window(body: dict[str, Any], table: Any) -> tuple[float, float, str]:
    """(from, to, view type) of an incremental request, or AWS's refusal."""
    spec = body.get("IncrementalExportSpecification") or {}
    if body.get("ExportTime") is not None:
        raise _error("ValidationException", "ExportTime cannot be set for an incremental export")
    if spec.get("ExportFromTime") is None:
        raise _error("ValidationException", "ExportFromTime is required for INCREMENTAL_EXPORT")
    start = _seconds(spec["ExportFromTime"])
    end = _seconds(spec["ExportToTime"]) if spec.get("ExportToTime") is not None else _clock()
    view = spec.get("ExportViewType", "NEW_AND_OLD_IMAGES")
    if view not in VIEW_TYPES:
        raise _error(
            "ValidationException",
            f"1 validation error detected: Value '{view}' at 'exportViewType' failed to satisfy "
            f"constraint: Member must satisfy enum value set: [{', '.join(VIEW_TYPES)}]",
        )
    if start >= end:
        raise _error("ValidationException", "ExportFromTime must be earlier than ExportToTime")
    if end - start < MIN_WINDOW_SECONDS:
        raise _error(
            "ValidationException", "The incremental export period must be at least 15 minutes"
        )
    if end - start > MAX_WINDOW_SECONDS:
        raise _error(
            "ValidationException", "The incremental export period must not exceed 24 hours"
        )
    earliest = table.__dict__.get(_SINCE)
    if earliest is None or start < earliest or end > _clock():
        raise _error(
            "InvalidExportTimeException",
            f"The specified export period [{_iso(start)}, {_iso(end)}) is outside of the point "
            "in time recovery window",
        )
    return start, end, view


def incremental_lines(
    changes: list[Change], start: float, end: float, view: str
) -> list[dict[str, Any]]:
    """One line per item changed in ``[start, end)``: its image just before ``end`` and, for
    ``NEW_AND_OLD_IMAGES``, just before ``start``."""
    first: dict[str, Change] = {}
    last: dict[str, Change] = {}
    for change in changes:
        if start <= change[0] < end:
            first.setdefault(change[1], change)
            last[change[1]] = change
    lines = []
    for key, latest in last.items():
        line: dict[str, Any] = {
            "Metadata": {"WriteTimestampMicros": {"N": str(int(latest[0] * 1_000_000))}},
            "Keys": json.loads(key),
        }
        old = first[key][2]
        if view == "NEW_AND_OLD_IMAGES" and old is not None:
            line["OldImage"] = _load(old)
        if latest[3] is not None:
            line["NewImage"] = _load(latest[3])
        lines.append(line)
    return lines


class _IncrementalExport:
    """Replaces ``TableExport.run``: the window's changes, the manifests, the description."""

    def __init__(self, export: Any, start: float, end: float, view: str) -> None:
        self.export, self.start, self.end, self.view = export, start, end, view
        self.export_id = export.arn.rsplit("/", 1)[-1]

    def run(self) -> None:
        from moto.s3.models import s3_backends

        export = self.export
        try:
            s3 = s3_backends[export.account_id][export.partition]
            s3.buckets[export.s3_bucket]
        except KeyError:
            export.status, export.failure_code = "FAILED", "S3NoSuchBucket"
            export.failure_message = "The specified bucket does not exist"
            return
        lines = incremental_lines(
            list(export.table.__dict__.get(_LOG, [])), self.start, self.end, self.view
        )
        text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        root = f"{export.s3_prefix.rstrip('/')}/AWSDynamoDB"
        data_key = f"{root}/data/{uuid.uuid4().hex}.json.gz"
        s3.put_object(export.s3_bucket, data_key, gzip.compress(text.encode(), mtime=0))
        files = {"itemCount": len(lines), "dataFileS3Key": data_key}
        s3.put_object(
            export.s3_bucket,
            f"{root}/{self.export_id}/manifest-files.json",
            (json.dumps(files) + "\n").encode(),
        )
        s3.put_object(
            export.s3_bucket,
            self.manifest_key(),
            json.dumps(self.summary(len(lines), len(text))).encode(),
        )
        export.item_count, export.processed_bytes = len(lines), len(text)
        export.status = "COMPLETED"

    def manifest_key(self) -> str:
        prefix = self.export.s3_prefix.rstrip("/")
        return f"{prefix}/AWSDynamoDB/{self.export_id}/manifest-summary.json"

    def summary(self, items: int, size: int) -> dict[str, Any]:
        export = self.export
        return {
            "version": "2023-08-01",
            "exportArn": export.arn,
            "tableArn": export.table.table_arn,
            "exportFromTime": _iso(self.start),
            "exportToTime": _iso(self.end),
            "s3Bucket": export.s3_bucket,
            "s3Prefix": export.s3_prefix,
            "exportFormat": "DYNAMODB_JSON",
            "exportType": "INCREMENTAL_EXPORT",
            "outputView": self.view,
            "billedSizeBytes": size,
            "itemCount": items,
            "outputFormat": "DYNAMODB_JSON",
            "manifestFilesS3Key": self.manifest_key().replace(
                "manifest-summary.json", "manifest-files.json"
            ),
        }

    def response(self, base: dict[str, Any]) -> dict[str, Any]:
        answer = dict(base)
        answer["IncrementalExportSpecification"] = {
            "ExportFromTime": self.start,
            "ExportToTime": self.end,
            "ExportViewType": self.view,
        }
        if answer["ExportStatus"] == "COMPLETED":
            answer["ExportManifest"] = self.manifest_key()
        return answer


def _exporting_increments(handler: Callable[..., Any]) -> Callable[..., Any]:
    def export_table_to_point_in_time(self: Any) -> Any:
        body = self.body
        if body.get("ExportType", "FULL_EXPORT") != "INCREMENTAL_EXPORT":
            if body.get("IncrementalExportSpecification"):
                raise _error(
                    "ValidationException",
                    "IncrementalExportSpecification is only valid with INCREMENTAL_EXPORT",
                )
            return handler(self)
        return _start_incremental(self, body)

    return export_table_to_point_in_time


def _start_incremental(handler: Any, body: dict[str, Any]) -> Any:
    from moto.core.responses import ActionResult
    from moto.dynamodb.exceptions import PointInTimeRecoveryUnavailable, TableNotFoundException
    from moto.dynamodb.models.table_export import TableExport

    backend = handler.dynamodb_backend
    table = next((t for t in backend.tables.values() if t.table_arn == body["TableArn"]), None)
    if table is None:
        raise TableNotFoundException(name=body["TableArn"])
    if not _recovery_on(table):
        raise PointInTimeRecoveryUnavailable(name=table.name)
    start, end, view = validate_window(body, table)
    export = TableExport(
        s3_bucket=body["S3Bucket"],
        s3_prefix=body.get("S3Prefix", ""),
        region_name=backend.region_name,
        account_id=body.get("S3BucketOwner") or backend.account_id,
        table=table,
        export_format=body.get("ExportFormat", "DYNAMODB_JSON"),
        export_type="INCREMENTAL_EXPORT",
    )
    incremental = _IncrementalExport(export, start, end, view)
    incremental.run()  # in the request: the window's changes are few, and the log is not locked
    backend.table_exports[export.arn] = export
    export.__dict__["_storepulse_incremental"] = incremental
    return ActionResult({"ExportDescription": export.response()})


def _describing_increments(response: Callable[..., Any]) -> Callable[..., Any]:
    def described(self: Any) -> dict[str, Any]:
        incremental = self.__dict__.get("_storepulse_incremental")
        base = response(self)
        return incremental.response(base) if incremental else base

    return described
