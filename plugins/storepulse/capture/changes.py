"""DynamoDB Streams records as changes, and changes as rows of the curated data sets.

A change row is a data set's row (its Arrow schema, built by the same functions as the nightly
export's, ``storepulse.export.datasets``) plus the change's own columns (``CHANGE_FIELDS``): the
operation, the DynamoDB item it came from, the stream position and the change time. An item
that leaves a data set (a REMOVE, or a MODIFY whose new image no longer belongs) gives its old
rows with ``_op`` REMOVE, so "latest change per item" is all a reader needs. Items that belong to
no data set (minute buckets, claims) give no row.

TTL deletions (``userIdentity`` of the DynamoDB service) are not changes of the business: the
lake keeps the expired facts, so they give no row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

import pyarrow as pa
from boto3.dynamodb.types import TypeDeserializer

from storepulse.export.datasets import TIMESTAMP, Dataset, Row
from storepulse.layout import Table, padded_sequence

INSERT, MODIFY, REMOVE = "INSERT", "MODIFY", "REMOVE"
TTL_PRINCIPAL: Final = "dynamodb.amazonaws.com"

CHANGE_FIELDS: Final = (
    pa.field("_op", pa.string(), nullable=False),
    pa.field("_pk", pa.string(), nullable=False),
    pa.field("_sk", pa.string(), nullable=False),
    pa.field("_changed_at", TIMESTAMP, nullable=False),
    pa.field("_stream", pa.string(), nullable=False),  # the stream's label
    pa.field("_sequence_number", pa.string(), nullable=False),  # zero-padded: sorts as text
    pa.field("_event_id", pa.string(), nullable=False),
)
CHANGE_COLUMNS: Final = tuple(f.name for f in CHANGE_FIELDS)

_deserializer = TypeDeserializer()


class ChangeError(ValueError):
    """A stream record that is not a change of a captured table's item."""


@dataclass(frozen=True)
class Change:
    table: Table
    op: str
    keys: Mapping[str, Any]
    new: Mapping[str, Any] | None
    old: Mapping[str, Any] | None
    changed_at: datetime
    stream: str  # the stream's label (Lambda's events name no shard)
    sequence_number: str
    event_id: str
    expired: bool = False  # a TTL deletion

    @property
    def position(self) -> str:
        return padded_sequence(self.sequence_number)


def table_of_stream(stream_arn: str) -> Table:
    """``arn:...:table/storepulse-dev-facts/stream/<label>`` -> ``Table.FACTS``."""
    name = stream_arn.split(":", 5)[-1].split("/")[1]
    kind = name.rsplit("-", 1)[-1]
    try:
        return Table(kind)
    except ValueError:
        raise ChangeError(f"not a table of the lake: {name}") from None


def _image(raw: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    return {name: _deserializer.deserialize(value) for name, value in raw.items()}


def stream_label(stream_arn: str) -> str:
    """``.../stream/2026-12-07T02:13:30.123`` -> the label, as a key-safe segment."""
    return stream_arn.rsplit("/stream/", 1)[-1].replace(":", "").replace(".", "")


def decode_record(entry: Mapping[str, Any]) -> Change:
    """One record of a DynamoDB Streams Lambda event."""
    try:
        stream = entry["dynamodb"]
        op = entry["eventName"]
        if op not in (INSERT, MODIFY, REMOVE):
            raise ChangeError(f"unknown eventName {op!r}")
        identity = entry.get("userIdentity") or {}
        return Change(
            table=table_of_stream(entry["eventSourceARN"]),
            op=op,
            keys=_image(stream["Keys"]) or {},
            new=_image(stream.get("NewImage")),
            old=_image(stream.get("OldImage")),
            changed_at=datetime.fromtimestamp(float(stream["ApproximateCreationDateTime"]), UTC),
            stream=stream_label(entry["eventSourceARN"]),
            sequence_number=str(stream["SequenceNumber"]),
            event_id=str(entry["eventID"]),
            expired=identity.get("principalId") == TTL_PRINCIPAL,
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ChangeError):
            raise
        raise ChangeError(f"malformed stream record: {type(exc).__name__}: {exc}") from None


def change_schema(dataset: Dataset) -> pa.Schema:
    """The data set's schema with the change columns after its own."""
    metadata = {**(dataset.schema.metadata or {}), b"storepulse.changes": b"1"}
    return pa.schema([*dataset.schema, *CHANGE_FIELDS], metadata=metadata)


def _item_day(item: Mapping[str, Any], fallback: date) -> date:
    """The business day an item belongs to: a fact's ``business_date``, a day bucket's sort
    key (``<date>`` or ``<date>#<part>``), else the change's own day (snapshots)."""
    for candidate in (item.get("business_date"), str(item.get("sk", "")).split("#")[0]):
        try:
            return date.fromisoformat(str(candidate))
        except ValueError:
            continue
    return fallback


def _rows_of(dataset: Dataset, item: Mapping[str, Any] | None, fallback: date) -> list[Row]:
    if item is None:
        return []
    day = _item_day(item, fallback)
    return dataset.rows(item, day) if dataset.selects(item, day) else []


def change_rows(change: Change, dataset: Dataset) -> list[Row]:
    """The change's rows in ``dataset`` (RowError for an image its builders refuse)."""
    if change.expired:
        return []
    fallback = change.changed_at.date()
    op, rows = change.op, [] if change.op == REMOVE else _rows_of(dataset, change.new, fallback)
    if not rows:  # removed, or no longer in the data set: its old rows go
        op, rows = REMOVE, _rows_of(dataset, change.old, fallback)
    meta = {
        "_op": op,
        "_pk": str(change.keys.get("pk")),
        "_sk": str(change.keys.get("sk")),
        "_changed_at": change.changed_at,
        "_stream": change.stream,
        "_sequence_number": change.position,
        "_event_id": change.event_id,
    }
    return [{**row, **meta} for row in rows]


def changes_table(dataset: Dataset, rows: Iterable[Row]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=change_schema(dataset))


def hour_of(change: Change) -> tuple[date, int]:
    return change.changed_at.date(), change.changed_at.hour


def hour_runs(changes: Sequence[Change]) -> list[list[Change]]:
    """Consecutive changes of the same UTC hour, in stream order: each run is written (and
    fails) together, so a failed run is where the batch resumes."""
    runs: list[list[Change]] = []
    for change in changes:
        if runs and hour_of(runs[-1][-1]) == hour_of(change):
            runs[-1].append(change)
        else:
            runs.append([change])
    return runs
