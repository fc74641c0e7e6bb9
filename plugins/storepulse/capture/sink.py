"""A batch of DynamoDB Streams records -> Parquet objects in ``changes/``, exactly once.

Object keys: ``changes/<table>/dt=<day>/hour=<HH>/<dataset>/<stream>-<first>-<last>.parquet``,
the UTC hour of the changes and the first and last sequence numbers of the run of changes they
hold (``hour_runs``). The same records always give the same keys and bytes, so a retried batch
overwrites its own objects. A bisected or partly failed batch may leave an object whose range
overlaps its halves': every row carries its stream position (``_stream``, ``_sequence_number``),
and readers keep one row per (item, position) (``storepulse.capture.compaction``), so nothing
is counted twice and nothing is lost.

Failures: a record that is not a change, or whose image a data set's builders refuse, goes to
``quarantine/changes/`` with the reason and the record, and never fails its neighbours. An S3
error fails the run it happened in: the handler reports that run's first record
(ReportBatchItemFailures) and Lambda resumes there.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError

from storepulse.capture.changes import (
    Change,
    ChangeError,
    change_rows,
    changes_table,
    hour_of,
    hour_runs,
)
from storepulse.export.datasets import Dataset, RowError, datasets_of
from storepulse.lake.paths import QUARANTINE_CHANGES, changes_hour_prefix
from storepulse.stream.archive import _gzip_lines

log = logging.getLogger(__name__)


@dataclass
class CaptureReport:
    records: int = 0
    changes: int = 0
    rows: int = 0
    files: list[str] = field(default_factory=list)
    quarantined: int = 0
    failed_sequence_numbers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Refused:
    entry: Mapping[str, Any]
    reason: str


def _sequence(entry: Mapping[str, Any]) -> str:
    return str((entry.get("dynamodb") or {}).get("SequenceNumber", "unknown"))


def _hour_folder(entry: Mapping[str, Any]) -> str:
    """``dt=<day>/hour=<HH>`` of a record's change time; ``undated`` when it has none."""
    try:
        created = float((entry.get("dynamodb") or {})["ApproximateCreationDateTime"])
    except (KeyError, TypeError, ValueError):
        return "undated"
    moment = datetime.fromtimestamp(created, UTC)
    return f"dt={moment:%Y-%m-%d}/hour={moment:%H}"


def object_key(dataset: Dataset, run: Sequence[Change]) -> str:
    first, last = run[0], run[-1]
    day, hour = hour_of(first)
    prefix = changes_hour_prefix(first.table.value, day, hour)
    return (
        f"{prefix}/{dataset.name}/"
        f"{first.stream}-{first.sequence_number}-{last.sequence_number}.parquet"
    )


def _parquet(table: Any) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


class ChangeSink:
    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    def write(self, records: Sequence[Mapping[str, Any]], decode: Any) -> CaptureReport:
        """``decode(entry) -> Change`` (``changes.decode_record``); records in stream order."""
        report = CaptureReport(records=len(records))
        changes: list[tuple[Mapping[str, Any], Change]] = []
        refused: list[_Refused] = []
        for entry in records:
            try:
                changes.append((entry, decode(entry)))
            except ChangeError as exc:
                refused.append(_Refused(entry, str(exc)))
        report.changes = len(changes)
        entries = {id(change): entry for entry, change in changes}
        for run in hour_runs([change for _, change in changes]):
            try:
                report.rows += self._write_run(run, entries, refused, report.files)
            except (BotoCoreError, ClientError) as exc:
                log.warning("changes from %s not written, resuming there: %s", run[0], exc)
                report.failed_sequence_numbers = [run[0].sequence_number]
                break
        report.quarantined = len(refused)
        place = {id(entry): i for i, entry in enumerate(records)}
        refused.sort(key=lambda r: place[id(r.entry)])  # stream order
        self._quarantine(refused)  # an S3 error here fails the whole batch: it is retried
        return report

    def _write_run(
        self,
        run: Sequence[Change],
        entries: Mapping[int, Mapping[str, Any]],
        refused: list[_Refused],
        files: list[str],
    ) -> int:
        rows_by_dataset: dict[str, list[dict[str, Any]]] = {}
        datasets = datasets_of(run[0].table)
        for change in run:
            try:
                built = {d.name: change_rows(change, d) for d in datasets}
            except RowError as exc:
                refused.append(_Refused(entries[id(change)], str(exc)))
                continue
            for name, rows in built.items():
                rows_by_dataset.setdefault(name, []).extend(rows)
        written = 0
        for dataset in datasets:
            rows = rows_by_dataset.get(dataset.name)
            if not rows:
                continue
            key = object_key(dataset, run)
            self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=_parquet(changes_table(dataset, rows))
            )
            files.append(key)
            written += len(rows)
        return written

    def _quarantine(self, refused: Sequence[_Refused]) -> str | None:
        if not refused:
            return None
        first, last = refused[0].entry, refused[-1].entry
        source = str(first.get("eventSourceARN", "unknown"))
        table = source.split(":", 5)[-1].split("/")[1] if "/" in source else "unknown"
        key = (
            f"{QUARANTINE_CHANGES}/{table}/{_hour_folder(first)}/"
            f"{_sequence(first)}-{_sequence(last)}.jsonl.gz"
        )
        lines = [{"reason": r.reason, "record": dict(r.entry)} for r in refused]
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=_gzip_lines(lines),
            ContentType="application/x-ndjson",
            ContentEncoding="gzip",
        )
        return key
