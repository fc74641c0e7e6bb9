"""Where the nightly export reads DynamoDB items from: two strategies, the same items.

``PointInTimeExportSource``: DynamoDB's native export to S3 (``ExportTableToPointInTime``). It
reads a consistent snapshot without consuming table capacity, which is what a large table wants;
it needs point-in-time recovery on the table, and takes minutes on AWS. The data files are found
through the export's ``manifest-files.json``; the embedded AWS's full export (moto's) writes no
manifest, so the export's prefix is listed instead. With ``incremental`` it exports the changes
of a window (``storepulse.export.incremental`` builds a day from them).

``ScanSource`` (parallel, consistent ``Scan``) and ``QuerySource`` (one ``gsi1`` partition, e.g.
the order and refund facts of one business day): no PITR needed and immediate, but they read
through the table's capacity.

Every source yields items decoded by ``dynamodb_json.deserialize_item`` (``Decimal`` numbers), so
for the same table state they yield equal items (in different orders: the writer sorts).
Nothing here imports pyarrow: a DAG may import this module cheaply.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from botocore.exceptions import ClientError, ParamValidationError

from storepulse.export.dynamodb_json import deserialize_item, export_kind, iter_export_items
from storepulse.layout import orders_of_day

__all__ = [
    "Backoff",
    "CompletedExport",
    "ExportError",
    "ExportWindow",
    "ItemSource",
    "PointInTimeExportSource",
    "PointInTimeRecoveryOffError",
    "QuerySource",
    "ScanSource",
    "StrategyChoice",
    "TransferModel",
    "choose_strategy",
    "require_point_in_time_recovery",
]

log = logging.getLogger(__name__)

Item = dict[str, Any]


class ExportError(RuntimeError):
    """The export could not run or its output is not what DynamoDB described."""


class ItemSource(Protocol):
    """Anything that yields the decoded items of one table."""

    table_name: str

    def items(self) -> Iterator[Item]: ...


# --- scan and query ----------------------------------------------------------------------------


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def _put(pages: queue.Queue[Any], value: Any, stop: threading.Event) -> bool:
    """Put unless the consumer went away; False if it did."""
    while not stop.is_set():
        try:
            pages.put(value, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _parallel_pages(
    producers: list[Callable[[], Iterator[list[Any]]]], max_pending: int
) -> Iterator[list[Any]]:
    """Pages from several producers run in threads, at most ``max_pending`` held at a time (a
    slow consumer slows the scan down instead of filling memory)."""
    pages: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
    stop = threading.Event()

    def run(produce: Callable[[], Iterator[list[Any]]]) -> None:
        try:
            for page in produce():
                if not _put(pages, page, stop):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            _put(pages, _Failure(exc), stop)
        finally:
            _put(pages, _DONE, stop)

    threads = [threading.Thread(target=run, args=(p,), daemon=True) for p in producers]
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            page = pages.get()
            if page is _DONE:
                running -= 1
            elif isinstance(page, _Failure):
                raise page.error
            else:
                yield page
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


@dataclass
class ScanSource:
    """A parallel, strongly consistent scan of a whole table (low-level boto3 client).

    ``total_segments`` threads each scan one segment, page by page (``page_size`` items, default:
    DynamoDB's 1 MB pages)."""

    client: Any
    table_name: str
    total_segments: int = 4
    page_size: int | None = None
    consistent_read: bool = True

    def items(self) -> Iterator[Item]:
        producers = [self._segment_pages(s) for s in range(self.total_segments)]
        for page in _parallel_pages(producers, max_pending=2 * self.total_segments):
            for raw in page:
                yield deserialize_item(raw)

    def _segment_pages(self, segment: int) -> Callable[[], Iterator[list[Any]]]:
        def pages() -> Iterator[list[Any]]:
            arguments: dict[str, Any] = {
                "TableName": self.table_name,
                "ConsistentRead": self.consistent_read,
            }
            if self.total_segments > 1:
                arguments |= {"Segment": segment, "TotalSegments": self.total_segments}
            if self.page_size:
                arguments["PaginationConfig"] = {"PageSize": self.page_size}
            for page in self.client.get_paginator("scan").paginate(**arguments):
                yield page.get("Items", [])

        return pages


@dataclass
class QuerySource:
    """The items of one partition of an index (default ``gsi1``), page by page. A global index
    is eventually consistent: run it once the day's writes have settled."""

    client: Any
    table_name: str
    partition_value: str
    index_name: str = "gsi1"
    partition_key: str = "gsi1pk"
    page_size: int | None = None

    @classmethod
    def orders_of_day(cls, client: Any, table_name: str, day: date) -> QuerySource:
        """Order and refund facts of one business day (``gsi1pk = ORDERS#<date>``)."""
        return cls(client, table_name, orders_of_day(day))

    def items(self) -> Iterator[Item]:
        arguments: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": self.index_name,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": self.partition_key},
            "ExpressionAttributeValues": {":pk": {"S": self.partition_value}},
        }
        if self.page_size:
            arguments["PaginationConfig"] = {"PageSize": self.page_size}
        for page in self.client.get_paginator("query").paginate(**arguments):
            for raw in page.get("Items", []):
                yield deserialize_item(raw)


# --- point-in-time export ----------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """Polling of a running export: ``first`` seconds, times ``factor``, at most ``maximum``;
    give up after ``timeout``. One schedule for every export: it starts short enough for one that
    takes a second (as on the embedded AWS) and backs off to a minute for those of many minutes
    (AWS); the first few polls cost a handful of DescribeExport calls. Not boto3's
    ``export_completed`` waiter (nor the provider's ``export_table``): they poll at a fixed 20-30 s,
    which adds that much per table where an export takes a second."""

    first: float = 0.25
    factor: float = 2.0
    maximum: float = 60.0
    timeout: float = 3 * 3600.0

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield delay
            delay = min(delay * self.factor, self.maximum)


@dataclass(frozen=True)
class ExportWindow:
    """The changes of ``[start, end)`` (an incremental export: 15 min to 24 h on AWS)."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class CompletedExport:
    arn: str
    bucket: str
    prefix: str
    export_type: str  # what ran: FULL_EXPORT, or INCREMENTAL_EXPORT when it was accepted
    item_count: int | None
    data_keys: tuple[str, ...]
    from_manifest: bool  # False: found by listing (no manifest-files.json: embedded AWS)


_FALLBACK_CODES = {"ValidationException", "InvalidParameterValue", "UnknownOperationException"}


@dataclass
class PointInTimeExportSource:
    """``ExportTableToPointInTime`` to ``s3://bucket/prefix`` in DynamoDB JSON, then its items.

    ``prefix`` should be unique per export (e.g. ``exports/<table>/<run id>``): without a manifest
    the data files are found by listing it. ``export_time``: the snapshot's instant (default:
    now). ``incremental``: export only the window's changes where the API accepts it, else fall
    back to a full export (``CompletedExport.export_type`` says which ran). ``client_token``:
    makes a retried start return the same export instead of starting another."""

    dynamodb: Any  # low-level clients
    s3: Any
    table_name: str
    bucket: str
    prefix: str
    export_time: datetime | None = None
    incremental: ExportWindow | None = None
    client_token: str | None = None
    backoff: Backoff = field(default_factory=Backoff)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _completed: CompletedExport | None = field(default=None, init=False, repr=False)

    def run(self) -> CompletedExport:
        """Start the export and wait for it (once; later calls return the same export)."""
        if self._completed is None:
            arn, export_type = self._start()
            description = self._wait(arn)
            keys, from_manifest = self._data_keys(description)
            self._completed = CompletedExport(
                arn=arn,
                bucket=self.bucket,
                prefix=self.prefix,
                export_type=self._export_type(description.get("ExportType") or export_type, keys),
                item_count=description.get("ItemCount"),
                data_keys=keys,
                from_manifest=from_manifest,
            )
        return self._completed

    def items(self) -> Iterator[Item]:
        """The exported items, file by file, line by line. A full export's count is checked
        against the one DynamoDB reports, so a missed data file cannot go unnoticed."""
        return exported_items(self.s3, self.run())

    # -- starting ---------------------------------------------------------------------------
    def _table_arn(self) -> str:
        return self.dynamodb.describe_table(TableName=self.table_name)["Table"]["TableArn"]

    def _arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "TableArn": self._table_arn(),
            "S3Bucket": self.bucket,
            "S3Prefix": self.prefix,
            "ExportFormat": "DYNAMODB_JSON",
        }
        if self.export_time is not None:
            arguments["ExportTime"] = self.export_time
        if self.client_token:
            arguments["ClientToken"] = self.client_token
        return arguments

    def _call(self, arguments: dict[str, Any]) -> str:
        try:
            response = self.dynamodb.export_table_to_point_in_time(**arguments)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "PointInTimeRecoveryUnavailableException":
                raise ExportError(
                    f"table {self.table_name} has no point-in-time recovery: enable it "
                    "(UpdateContinuousBackups) or use a ScanSource"
                ) from exc
            raise
        return str(response["ExportDescription"]["ExportArn"])

    def _start(self) -> tuple[str, str]:
        arguments = self._arguments()
        if self.incremental is not None:
            try:
                return self._call(arguments | self._incremental_arguments()), "INCREMENTAL_EXPORT"
            except ParamValidationError as exc:  # an SDK that predates incremental exports
                log.warning("incremental export unsupported by the SDK (%s): full export", exc)
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in _FALLBACK_CODES:
                    raise
                log.warning("incremental export refused (%s): full export instead", exc)
        return self._call(arguments), "FULL_EXPORT"

    def _incremental_arguments(self) -> dict[str, Any]:
        assert self.incremental is not None
        return {
            "ExportType": "INCREMENTAL_EXPORT",
            "IncrementalExportSpecification": {
                "ExportFromTime": self.incremental.start,
                "ExportToTime": self.incremental.end,
                "ExportViewType": "NEW_IMAGE",
            },
        }

    # -- waiting ----------------------------------------------------------------------------
    def _wait(self, arn: str) -> dict[str, Any]:
        deadline = self.clock() + self.backoff.timeout
        for delay in self.backoff.delays():
            description = self.dynamodb.describe_export(ExportArn=arn)["ExportDescription"]
            status = description.get("ExportStatus")
            if status == "COMPLETED":
                return description
            if status == "FAILED":
                raise ExportError(
                    f"export of {self.table_name} failed: "
                    f"{description.get('FailureCode') or 'no code'}: "
                    f"{description.get('FailureMessage') or 'no message'} ({arn})"
                )
            if self.clock() + delay > deadline:
                break
            self.sleep(delay)
        raise ExportError(
            f"export of {self.table_name} not completed after {self.backoff.timeout:.0f} s ({arn})"
        )

    def _export_type(self, described: str, keys: tuple[str, ...]) -> str:
        """What the files hold: an endpoint may accept an incremental request and write a full
        snapshot anyway (plain moto does); the first line tells."""
        if described != "INCREMENTAL_EXPORT" or not keys:
            return described
        body = self.s3.get_object(Bucket=self.bucket, Key=keys[0])["Body"]
        try:
            kind = export_kind(body)
        finally:
            body.close()
        if kind == "full":
            log.warning("incremental export of %s wrote a full snapshot", self.table_name)
            return "FULL_EXPORT"
        return described

    # -- finding the data files -------------------------------------------------------------
    def _data_keys(self, description: dict[str, Any]) -> tuple[tuple[str, ...], bool]:
        manifest = description.get("ExportManifest")  # .../AWSDynamoDB/<id>/manifest-summary.json
        if manifest:
            keys = self._manifest_keys(manifest.rsplit("/", 1)[0] + "/manifest-files.json")
            if keys is not None:
                return keys, True
        return self._listed_keys(), False

    def _manifest_keys(self, key: str) -> tuple[str, ...] | None:
        """Data files named by ``manifest-files.json`` (JSON lines with ``dataFileS3Key``)."""
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in {"NoSuchKey", "404"}:
                return None
            raise
        try:
            lines = [line for line in body.iter_lines() if line.strip()]
        finally:
            body.close()
        return tuple(json.loads(line)["dataFileS3Key"] for line in lines)

    def _listed_keys(self) -> tuple[str, ...]:
        """Data files under ``<prefix>/AWSDynamoDB/<export>/data/``, for an export without a
        manifest. Two exports under the prefix would be ambiguous: refused."""
        root = f"{self.prefix.rstrip('/')}/AWSDynamoDB/"
        keys, exports = [], set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=root
        ):
            for entry in page.get("Contents", []):
                key = entry["Key"]
                export_id, _, rest = key[len(root) :].partition("/")
                if rest.startswith("data/") and key.endswith(".gz"):
                    keys.append(key)
                    exports.add(export_id)
        if len(exports) > 1:
            raise ExportError(
                f"s3://{self.bucket}/{root} holds {len(exports)} exports and no manifest tells "
                "which is this one: give every export its own prefix"
            )
        return tuple(sorted(keys))


def exported_items(s3: Any, export: CompletedExport) -> Iterator[Item]:
    """The items of a completed export, file by file, line by line, in bounded memory; a full
    export's item count is checked against DynamoDB's, so a missed data file cannot go
    unnoticed. (A task can read an export that an earlier task ran.)"""
    count = 0
    for key in export.data_keys:
        body = s3.get_object(Bucket=export.bucket, Key=key)["Body"]
        try:
            for item in iter_export_items(body):
                count += 1
                yield item
        finally:
            body.close()
    full = export.export_type != "INCREMENTAL_EXPORT"
    if full and export.item_count is not None and count != export.item_count:
        raise ExportError(
            f"export {export.arn} describes {export.item_count} items but its "
            f"{len(export.data_keys)} data file(s) hold {count}"
        )


# --- choosing the strategy ---------------------------------------------------------------------


@dataclass(frozen=True)
class TransferModel:
    """What reading a whole table costs on AWS, for :func:`choose_strategy` and the benchmark.

    A native export has a fixed cost of minutes (AWS snapshots the table and writes a manifest,
    whatever its size) and then streams fast, without table capacity; a consistent scan starts
    at once but reads through the table: one read unit per 4 KB, at a per-segment pace. Prices
    are list prices (us-east-1, on-demand) in USD, exact decimals; they only rank the options."""

    export_fixed_seconds: float = 300.0
    export_bytes_per_second: float = 50e6
    scan_bytes_per_second_per_segment: float = 5e6
    scan_segments: int = 4
    read_unit_bytes: int = 4096  # strongly consistent: 1 unit per 4 KB
    export_usd_per_gb: Decimal = Decimal("0.10")
    usd_per_million_read_units: Decimal = Decimal("0.125")
    average_item_bytes: int = 700  # when DescribeTable reports no size yet (updated ~6-hourly)

    def table_bytes(self, item_count: int, size_bytes: int) -> int:
        return max(size_bytes, item_count * self.average_item_bytes)

    def export_seconds(self, size: int) -> float:
        return self.export_fixed_seconds + size / self.export_bytes_per_second

    def scan_seconds(self, size: int) -> float:
        return size / (self.scan_bytes_per_second_per_segment * self.scan_segments)

    def scan_read_units(self, item_count: int, size: int) -> int:
        """Read units of a consistent scan: pages of up to 1 MB, 1 unit per 4 KB of them."""
        return max(-(-size // self.read_unit_bytes), 1 if item_count else 0)

    def export_usd(self, size: int) -> Decimal:
        return (Decimal(size) / Decimal(10**9) * self.export_usd_per_gb).quantize(Decimal("0.0001"))

    def scan_usd(self, read_units: int) -> Decimal:
        cost = Decimal(read_units) / Decimal(10**6) * self.usd_per_million_read_units
        return cost.quantize(Decimal("0.0001"))


@dataclass(frozen=True)
class StrategyChoice:
    strategy: str  # "pitr" or "scan"
    reason: str


def choose_strategy(
    table: dict[str, Any], *, pitr_enabled: bool, model: TransferModel | None = None
) -> StrategyChoice:
    """``pitr`` or ``scan`` for a table (``DescribeTable``'s ``Table``), with the reason: the
    scan while it finishes before a native export would (its fixed minutes dominate small
    tables), the export beyond, where a scan would also take read capacity from live traffic."""
    model = model or TransferModel()
    items, reported = int(table.get("ItemCount") or 0), int(table.get("TableSizeBytes") or 0)
    size = model.table_bytes(items, reported)
    scan_s, export_s = model.scan_seconds(size), model.export_seconds(size)
    units = model.scan_read_units(items, size)
    facts = (
        f"{items:,} items, {size / 1e6:,.1f} MB: scan ~{scan_s:,.0f} s and {units:,} read units "
        f"(${model.scan_usd(units)}), native export ~{export_s:,.0f} s "
        f"(${model.export_usd(size)}, no table capacity)"
    )
    if not pitr_enabled:
        return StrategyChoice("scan", f"{facts}; point-in-time recovery off: scan")
    if scan_s <= export_s:
        return StrategyChoice("scan", f"{facts}; the scan ends first")
    return StrategyChoice("pitr", f"{facts}; the export ends first and spares the table")


# --- point-in-time recovery -------------------------------------------------------------------


class PointInTimeRecoveryOffError(RuntimeError):
    """A table to export has point-in-time recovery off; the message says what to do."""


def require_point_in_time_recovery(dynamodb: Any, table_name: str) -> None:
    """Raise :class:`PointInTimeRecoveryOffError` unless point-in-time recovery is on: an export
    needs it. The stack's template switches it on (``PointInTimeRecoverySpecification``) and owns
    the setting, so the export does not switch it on itself: off means the table drifted from the
    template (or was made elsewhere), which an operator must see."""
    backups = dynamodb.describe_continuous_backups(TableName=table_name)
    description = backups["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})
    status = description.get("PointInTimeRecoveryStatus", "DISABLED")
    if status != "ENABLED":
        raise PointInTimeRecoveryOffError(
            f"point-in-time recovery of {table_name} is {status}: the export needs it on. The "
            "stack's template declares it (PointInTimeRecoverySpecification): redeploy the stack "
            "(DAG deploy_realtime_stack) or look for what switched it off; or run the export "
            "with strategy scan"
        )
