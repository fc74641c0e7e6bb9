"""The nightly export's incremental strategy: a day's partitions from DynamoDB's incremental
exports (``ExportType=INCREMENTAL_EXPORT``) of the span in which that day's items can change,
instead of a full export of the table. Its cost follows the day's changes, not the table.

Why it equals the full export: an item of business day D (a fact's ``business_date``, a metrics
item's sort key) is first written no earlier than D's first local midnight among the business's
stores, less a margin for device clocks (``day_opens``). Every item of D therefore changed in
``[day_opens(D), T)``, and the incremental exports of that span hold each one's image at ``T``:
the items a full export at ``T`` selects for D, which the staging sorts and writes with the same
settings, so the same Parquet bytes (``tests/integration/test_incremental_export.py``).

- AWS exports 15 minutes to 24 hours at a time: a longer span is chained (``chained_windows``;
  a later export's image of an item replaces an earlier one's, a deletion removes it).
- Late events: items of an earlier day X changed in the span (a POS syncing yesterday's sales):
  X is re-published by its own run over ``[day_opens(X), T)`` (``late_days``); a day more than
  ``MAX_LOOKBACK`` back, or older than the table's recovery history, needs the full export.
- Snapshots (inventory, customers) are a table's whole state at ``T``: the previous day's
  published snapshot, taken at ``as_of`` (``state/export/snapshots/``, written when it was
  published), with the changes of ``[as_of, T)`` applied (``snapshot_seed``, ``day_items``). A
  table whose previous snapshot or its ``as_of`` is missing is exported whole.

Nothing here imports pyarrow.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from storepulse import stock_levels
from storepulse.export.dynamodb_json import iter_export_changes
from storepulse.export.sources import CompletedExport, ExportError, ExportWindow
from storepulse.lake.paths import SNAPSHOT_STATE, partition_prefix

if TYPE_CHECKING:
    from storepulse.export.datasets import Dataset

log = logging.getLogger(__name__)

CLOCK_MARGIN: Final = timedelta(hours=1)  # a device clock ahead of real time by up to this
MIN_WINDOW: Final = timedelta(minutes=15)  # AWS's limits of one incremental export
MAX_WINDOW: Final = timedelta(hours=24)
MAX_LOOKBACK: Final = timedelta(days=4)  # beyond: a full export (a backfill, a repair)

Item = dict[str, Any]


def day_opens(day: date, timezones: Iterable[str], margin: timedelta = CLOCK_MARGIN) -> datetime:
    """The earliest instant an item of business ``day`` can be written: its first local
    midnight among ``timezones`` (UTC when none), less ``margin``."""
    zones = sorted(set(timezones)) or ["UTC"]
    midnights = [datetime.combine(day, time(0), ZoneInfo(zone)).astimezone(UTC) for zone in zones]
    return min(midnights) - margin


def chained_windows(start: datetime, end: datetime) -> tuple[ExportWindow, ...]:
    """``[start, end)`` as incremental exports AWS accepts (15 min to 24 h each), in order. A
    span under 15 minutes is widened backwards: more changes read, the same result."""
    if end - start < MIN_WINDOW:
        return (ExportWindow(end - MIN_WINDOW, end),)
    windows, cursor = [], start
    while cursor < end:
        upper = min(cursor + MAX_WINDOW, end)
        windows.append(ExportWindow(cursor, upper))
        cursor = upper
    if len(windows) > 1 and windows[-1].end - windows[-1].start < MIN_WINDOW:
        last = windows[-1]
        windows[-1] = ExportWindow(last.end - MIN_WINDOW, last.end)  # overlaps the one before
    return tuple(windows)


def recovery_window(dynamodb: Any, table_name: str) -> tuple[datetime, datetime] | None:
    """(earliest, latest) restorable instants of a table, None without point-in-time recovery."""
    backups = dynamodb.describe_continuous_backups(TableName=table_name)
    description = backups["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})
    if description.get("PointInTimeRecoveryStatus") != "ENABLED":
        return None
    return _aware(description["EarliestRestorableDateTime"]), _aware(
        description["LatestRestorableDateTime"]
    )


def _aware(value: datetime | float) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), UTC)


@dataclass(frozen=True)
class Plan:
    """How one table's day is exported: ``incremental`` (its windows) or ``full``, and why."""

    strategy: str
    reason: str
    windows: tuple[ExportWindow, ...] = ()


def plan_table(
    datasets: Sequence[Dataset],
    day: date,
    timezones: Iterable[str],
    recovery: tuple[datetime, datetime] | None,
    snapshots_as_of: Mapping[str, datetime | None] | None = None,
) -> Plan:
    """``incremental`` where the table's changes can rebuild ``day``, else ``full`` (logged).
    ``snapshots_as_of``: when the previous day's published snapshot of each snapshot data set
    of the table was taken (None or absent: none to start from)."""
    if recovery is None:
        return Plan("full", "point-in-time recovery is off: no incremental export")
    start = day_opens(day, timezones)
    for name in (d.name for d in datasets if d.snapshot):
        as_of = (snapshots_as_of or {}).get(name)
        if as_of is None:
            return Plan("full", f"no published {name} of the day before to apply changes to")
        start = min(start, as_of)
    earliest, latest = recovery
    if latest - start > MAX_LOOKBACK:
        return Plan(
            "full",
            f"{day} opened {latest - start} before the export: older than "
            f"{MAX_LOOKBACK.days} days, a backfill or repair reads the whole table",
        )
    windows = chained_windows(start, latest)
    if windows[0].start < earliest:
        return Plan(
            "full",
            f"the recovery history starts at {earliest.isoformat()}, after {day} opened "
            f"({windows[0].start.isoformat()}): a first run reads the whole table",
        )
    spans = ", ".join(f"[{w.start.isoformat()}, {w.end.isoformat()})" for w in windows)
    return Plan("incremental", f"{len(windows)} incremental export(s): {spans}", windows)


# --- reading the changes -----------------------------------------------------------------------


Key = tuple[tuple[str, str], ...]


def _key(keys: Mapping[str, Any]) -> Key:
    return tuple(sorted((name, str(value)) for name, value in keys.items()))


@dataclass
class ChangeSet:
    """The latest image of every item changed in the exports' windows (None: deleted)."""

    images: dict[Key, Item | None] = field(default_factory=dict)
    lines_read: int = 0
    bytes_read: int = 0

    def items(self) -> Iterator[Item]:
        """The changed items that exist at the end of the last window (any order)."""
        return (image for image in self.images.values() if image is not None)

    def days(self) -> set[date]:
        """The business days the changed items belong to."""
        return {d for item in self.items() if (d := item_day(item)) is not None}


def item_day(item: Item) -> date | None:
    """The business day of a fact (``business_date``) or a metrics item (sort key
    ``<date>[#...]``); None for anything else (snapshots, settings)."""
    raw = item.get("business_date") or str(item.get("sk", "")).split("#")[0]
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        return None


def read_changes(s3: Any, exports: Sequence[CompletedExport]) -> ChangeSet:
    """The exports' lines in order (a later window's image of an item wins)."""
    changes = ChangeSet()
    for export in exports:
        if export.export_type != "INCREMENTAL_EXPORT":
            raise ExportError(
                f"export {export.arn} is a {export.export_type}, not the incremental export "
                "asked for: run the day with strategy pitr"
            )
        for key in export.data_keys:
            response = s3.get_object(Bucket=export.bucket, Key=key)
            changes.bytes_read += int(response.get("ContentLength") or 0)
            body = response["Body"]
            try:
                for keys, image in iter_export_changes(body):
                    changes.lines_read += 1
                    changes.images[_key(keys)] = image
            finally:
                body.close()
    return changes


def late_days(changes: ChangeSet, day: date) -> list[date]:
    """Days before ``day`` whose items changed in the windows: each is re-published."""
    return sorted(d for d in changes.days() if d < day)


def logical_date_of(day: date, timezone: str) -> datetime:
    """The nightly run's logical date (00:00 UTC) whose business day is ``day`` in the
    business's time zone (the DAG's rule: the interval start's local date)."""
    for candidate in (day, day + timedelta(days=1)):
        moment = datetime.combine(candidate, time(0), UTC)
        if moment.astimezone(ZoneInfo(timezone)).date() == day:
            return moment
    return datetime.combine(day, time(0), UTC)


@dataclass(frozen=True)
class NightlyRun:
    """The scheduled nightly run whose business day is a given day, as Airflow 3 makes it:
    logical date at the daily interval's start, run id from its end (``run_after``)."""

    logical_date: datetime
    run_after: datetime
    run_id: str


def nightly_run_of(day: date, timezone: str) -> NightlyRun:
    """The scheduled run of ``day``, and the run created when no run holds its logical date
    (``storepulse.export.republish``): its interval from ``run_after``, the daily interval
    ending then, whose business day is ``day``."""
    logical = logical_date_of(day, timezone)
    run_after = logical + timedelta(days=1)
    return NightlyRun(logical, run_after, f"scheduled__{run_after.isoformat()}")


# --- snapshots: the day before's, with the changes applied -------------------------------------


def _instant_text(value: Any) -> str | None:
    return None if value is None else value.isoformat()


# The item each snapshot row stands for, holding what the data set's row builder reads: rebuilt
# with the new snapshot date, it is the row a full export would write for the unchanged item.
SNAPSHOT_ITEMS: Final[dict[str, Callable[[Mapping[str, Any]], Item]]] = {
    "customers": lambda r: {
        "pk": f"CUSTOMER#{r['customer_id']}",
        "sk": "PROFILE",
        "type": "customer",
        "customer_id": r["customer_id"],
        "store_id": r["store_id"],
        "age_band": r["age_band"],
        "region": r["region"],
        "segment": r["segment"],
        "updated_at": _instant_text(r["updated_at"]),
    },
    "inventory_snapshot": lambda r: stock_levels.snapshot_item(
        r["store_id"], r["sku"], stock_levels.Level(r["on_hand"], r["counted_at"])
    ),
}


def snapshot_state_key(dataset: str, day: date) -> str:
    return f"{partition_prefix(SNAPSHOT_STATE, dataset, day)}.json"


def put_snapshot_as_of(s3: Any, bucket: str, dataset: str, day: date, as_of: datetime) -> None:
    """Record when the snapshot just published for ``day`` was taken (after its publish)."""
    body = json.dumps({"dataset": dataset, "day": day.isoformat(), "as_of": as_of.isoformat()})
    s3.put_object(Bucket=bucket, Key=snapshot_state_key(dataset, day), Body=body.encode())


def snapshot_as_of(s3: Any, bucket: str, dataset: str, day: date) -> datetime | None:
    """When the published snapshot of ``day`` was taken; None if not recorded."""
    from botocore.exceptions import ClientError

    try:
        body = s3.get_object(Bucket=bucket, Key=snapshot_state_key(dataset, day))["Body"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in {"NoSuchKey", "404"}:
            return None
        raise
    with body:
        return datetime.fromisoformat(json.loads(body.read())["as_of"])


@dataclass
class SnapshotSeed:
    """The items standing for a published snapshot's rows, by item key."""

    items: dict[Key, Item] = field(default_factory=dict)
    bytes_read: int = 0


def snapshot_seed(
    fs: Any, curated_root: str, datasets: Sequence[Dataset], day: date
) -> SnapshotSeed:
    """The published snapshots of ``day`` (the day before the one exported) as items."""
    import pyarrow.parquet as pq

    from storepulse.lake.manifest import current_files

    seed = SnapshotSeed()
    for dataset in (d for d in datasets if d.snapshot):
        files = current_files(fs, curated_root, dataset, day)
        seed.bytes_read += sum(fs.get_file_info(path).size or 0 for path in files)
        rows = pq.read_table(files, filesystem=fs).to_pylist() if files else []
        for row in rows:
            item = SNAPSHOT_ITEMS[dataset.name](row)
            seed.items[_key({"pk": item["pk"], "sk": item["sk"]})] = item
    return seed


def day_items(changes: ChangeSet, seed: SnapshotSeed | None = None) -> Callable[[], Iterator[Item]]:
    """The items a day is staged from: the changed ones, and the seed's unchanged ones."""

    def items() -> Iterator[Item]:
        yield from changes.items()
        if seed is not None:
            # A changed level item holds the levels of several SKUs, each a seed item of its own.
            changed = set(changes.images) | {
                _key(key.as_item())
                for item in changes.items()
                for key in stock_levels.level_keys(item)
            }
            yield from (i for k, i in seed.items.items() if k not in changed)

    return items


@dataclass(frozen=True)
class StagedChanges:
    """What staging a day from incremental exports read and wrote."""

    staged: dict[str, Any]  # data set -> StagedDataset
    late_days: list[date]
    lines_read: int
    bytes_read: int  # export data files and the seeding snapshots


def stage_changes(
    s3: Any,
    exports: Sequence[CompletedExport],
    datasets: Sequence[Dataset],
    day: date,
    root: str,
    fs: Any,
    curated_root: str,
) -> StagedChanges:
    """Stage ``day`` of every data set in ``datasets`` (one table's) from its incremental
    exports, snapshots seeded from the day before's published ones (``curated_root``: the
    curated folder in ``fs``'s terms)."""
    from storepulse.export.staging import stage_table

    changes = read_changes(s3, exports)
    seed = None
    if any(d.snapshot for d in datasets):
        seed = snapshot_seed(fs, curated_root, datasets, day - timedelta(days=1))
    staged = stage_table(day_items(changes, seed), datasets, day, root, fs)
    return StagedChanges(
        staged=staged,
        late_days=late_days(changes, day),
        lines_read=changes.lines_read,
        bytes_read=changes.bytes_read + (seed.bytes_read if seed else 0),
    )
