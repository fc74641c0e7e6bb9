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
- Snapshots (inventory, customers) are a table's whole state, which a window of changes does not
  hold: a table that feeds one is exported whole (``plan_table`` says so).

Nothing here imports pyarrow.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from storepulse.export.dynamodb_json import iter_export_changes
from storepulse.export.sources import CompletedExport, ExportError, ExportWindow

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
) -> Plan:
    """``incremental`` where the table's changes can rebuild ``day``, else ``full`` (logged)."""
    snapshots = [d.name for d in datasets if d.snapshot]
    if snapshots:
        return Plan("full", f"feeds the snapshot(s) {', '.join(snapshots)}: the whole table")
    if recovery is None:
        return Plan("full", "point-in-time recovery is off: no incremental export")
    earliest, latest = recovery
    start = day_opens(day, timezones)
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


def _key(keys: Item) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((name, str(value)) for name, value in keys.items()))


@dataclass
class ChangeSet:
    """The latest image of every item changed in the exports' windows (None: deleted)."""

    images: dict[tuple[tuple[str, Any], ...], Item | None] = field(default_factory=dict)
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
