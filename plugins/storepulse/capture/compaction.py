"""Hourly compaction: the captured changes of some hours merged into the curated data sets'
partitions ("today so far", and any earlier day a late change belongs to), published like the
nightly export's (``storepulse.export.publish``: staged, then the manifest commit).

State: per data set and day, the latest change row of every item
(``changes/_state/<dataset>/dt=<day>/state.parquet``: the data set's columns and the change
columns, removes kept as tombstones), so re-reading an hour already compacted changes nothing
(each item keeps its highest stream position) and an older change never overwrites a newer one.
A day without state whose partition was published (by the nightly export) starts from that
partition, each row standing for its item at the lowest position: any captured change of the
item replaces it. (A day's sales mix spread over several items is seeded as its first item.)

Audited before anything is published (``storepulse.capture.audit``: the nightly export's Great
Expectations suites, the reconciliation judging the closed hours): a day that fails publishes
nothing, nor does any other day of the run (``CompactionAuditError`` says why, with numbers).

Only days a change belongs to are republished: a late sale for yesterday republishes yesterday,
and nothing else. Snapshots (inventory, customers) are the nightly export's: a day's snapshot
is the whole table, which the changes of a day do not hold.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from storepulse.capture import COMPACTED
from storepulse.capture.changes import change_schema
from storepulse.capture.reader import change_keys, curated_rows, merge, read_changes
from storepulse.clock import Clock, system_clock
from storepulse.export.datasets import DATASETS, Dataset, Row
from storepulse.export.staging import StagedDataset
from storepulse.lake.freshness import record_freshness
from storepulse.lake.manifest import current_files
from storepulse.lake.paths import CHANGES, CURATED, partition_prefix, staging_root

if TYPE_CHECKING:
    from storepulse.export.quality import AuditResult

log = logging.getLogger(__name__)

STATE: Final = f"{CHANGES}/_state"
SEED_POSITION: Final = ""  # below every stream position


def _year(row: Row) -> int:
    return row["business_date"].year


# The DynamoDB item each row of a data set comes from (to seed a day from its published rows).
ITEM_KEYS: Final[dict[str, Callable[[Row], tuple[str, str]]]] = {
    "orders": lambda r: (f"ORDER#{r['order_id']}", "ORDER"),
    "order_lines": lambda r: (f"ORDER#{r['order_id']}", "ORDER"),
    "refunds": lambda r: (f"REFUND#{r['refund_id']}", "REFUND"),
    "daily_store_metrics": lambda r: (
        f"S#{r['store_id']}#DAY#{_year(r)}",
        r["business_date"].isoformat(),
    ),
    "daily_category_sales": lambda r: (
        f"S#{r['store_id']}#MIX#{_year(r)}",
        r["business_date"].isoformat(),
    ),
    "daily_product_sales": lambda r: (
        f"S#{r['store_id']}#MIX#{_year(r)}",
        r["business_date"].isoformat(),
    ),
}


@dataclass(frozen=True)
class Compacted:
    """One republished partition."""

    dataset: str
    day: str
    rows: int
    changes: int  # change rows of the hours read that belong to this day
    newest_change: str  # ISO time of the newest change of the day's state
    published: bool  # False: the state already held every change (nothing new)


def state_key(dataset: Dataset, day: date) -> str:
    return f"{partition_prefix(STATE, dataset.name, day)}/state.parquet"


def _read_parquet(s3: Any, bucket: str, key: str) -> pa.Table | None:
    from botocore.exceptions import ClientError

    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in {"NoSuchKey", "404"}:
            return None
        raise
    return pq.read_table(io.BytesIO(body))


def _seed(fs: Any, bucket: str, dataset: Dataset, day: date) -> list[Row]:
    """The published partition's rows as change rows at the lowest position, or nothing."""
    files = current_files(fs, f"{bucket}/{CURATED}", dataset, day)
    if not files:
        return []
    rows = pq.read_table(files, filesystem=fs).to_pylist()
    seeded = []
    for row in rows:
        pk, sk = ITEM_KEYS[dataset.name](row)
        meta = {"_op": "SEED", "_pk": pk, "_sk": sk, "_stream": "", "_event_id": ""}
        seeded.append({**row, **meta, "_sequence_number": SEED_POSITION, "_changed_at": None})
    return seeded


def _state_schema(dataset: Dataset) -> pa.Schema:
    """The change schema, with ``_changed_at`` nullable (seeded rows have no change time)."""
    schema = change_schema(dataset)
    index = schema.get_field_index("_changed_at")
    return schema.set(index, schema.field(index).with_nullable(True))


@dataclass
class _Partition:
    """One day of a data set, merged: what the compactor stages, audits and publishes."""

    dataset: Dataset
    day: date
    merged: list[Row]  # the new state
    rows: list[Row]  # the curated rows
    changes: int
    publishes: bool
    staged: StagedDataset | None = None

    def compacted(self) -> Compacted:
        times = [r["_changed_at"] for r in self.merged if r["_changed_at"] is not None]
        newest = max(times).isoformat() if times else ""
        return Compacted(
            self.dataset.name,
            self.day.isoformat(),
            len(self.rows),
            self.changes,
            newest,
            self.publishes,
        )


Audit = Callable[[date, Mapping[str, StagedDataset], Sequence[Row]], "AuditResult"]
"""(day, its staged partitions, the day's orders) -> the audit (``storepulse.capture.audit``)."""


class CompactionAuditError(RuntimeError):
    """A compacted day failed its audit: nothing was published; the message says why."""

    def __init__(self, results: Sequence[AuditResult]) -> None:
        super().__init__(
            "the compaction published nothing:\n" + "\n".join(r.summary() for r in results)
        )
        self.results = list(results)


class Compactor:
    """Compacts the changes of some hours for every compacted data set (``compact``): merged,
    staged, audited (``audit``: every day must pass, or nothing is published), published."""

    def __init__(
        self,
        s3: Any,
        fs: Any,
        bucket: str,
        *,
        run_id: str,
        audit: Audit | None,
        clock: Clock = system_clock,
    ) -> None:
        self.s3, self.fs, self.bucket = s3, fs, bucket
        self.run_id, self.audit, self.clock = run_id, audit, clock

    def compact(self, hours: Sequence[tuple[date, int]]) -> list[Compacted]:
        parts = self._merge(hours)
        publishing = [p for p in parts if p.publishes]
        for part in publishing:
            part.staged = self._stage(part)
        self._audit(publishing, parts)
        for part in publishing:
            self._publish(part)
        compacted = [p.compacted() for p in parts]
        if publishing:
            record_freshness(self.s3, self.bucket, freshness(compacted), clock=self.clock)
        return compacted

    def _merge(self, hours: Sequence[tuple[date, int]]) -> list[_Partition]:
        parts = []
        for name in COMPACTED:
            dataset = DATASETS[name]
            keys = change_keys(self.s3, self.bucket, dataset, hours)
            if not keys:
                continue
            changes = read_changes(self.s3, self.bucket, dataset, keys).to_pylist()
            by_day: dict[date, list[Row]] = {}
            for row in changes:
                by_day.setdefault(row[dataset.partition_column], []).append(row)
            parts += [self._merge_day(dataset, day, rows) for day, rows in sorted(by_day.items())]
        return parts

    def _state(self, dataset: Dataset, day: date) -> tuple[list[Row], bool]:
        """The day's state (or its published partition as a seed), and whether it was stored."""
        stored = _read_parquet(self.s3, self.bucket, state_key(dataset, day))
        if stored is not None:
            return stored.to_pylist(), True
        return _seed(self.fs, self.bucket, dataset, day), False

    def _merge_day(self, dataset: Dataset, day: date, changes: list[Row]) -> _Partition:
        state, stored = self._state(dataset, day)
        merged = merge(dataset, state, changes)
        unchanged = stored and _positions(merged) == _positions(state)
        rows = curated_rows(dataset, merged)
        if not unchanged and not rows:
            log.warning(
                "%s dt=%s: every item was removed; the partition is left as it is",
                dataset.name,
                day,
            )
        return _Partition(dataset, day, merged, rows, len(changes), not unchanged and bool(rows))

    def _audit(self, publishing: Sequence[_Partition], parts: Sequence[_Partition]) -> None:
        """Every day to publish, audited with its orders (compacted now, else from the state)."""
        if self.audit is None:
            return
        failed = []
        for day in sorted({p.day for p in publishing}):
            staged = {p.dataset.name: p.staged for p in publishing if p.day == day and p.staged}
            orders = next(
                (p.rows for p in parts if p.day == day and p.dataset.name == "orders"), None
            )
            if orders is None:
                state, _ = self._state(DATASETS["orders"], day)
                orders = curated_rows(DATASETS["orders"], state)
            result = self.audit(day, staged, orders)
            if not result.success:
                failed.append(result)
        if failed:
            raise CompactionAuditError(failed)

    def _stage(self, part: _Partition) -> StagedDataset:
        from storepulse.export.writer import DatasetWriter

        dataset, day = part.dataset, part.day
        root = staging_root(self.bucket, self.run_id).removeprefix("s3://")
        folder = partition_prefix(f"{root}/compaction", dataset.name, day)
        with DatasetWriter(folder, dataset.schema, sort_by=dataset.key, filesystem=self.fs) as w:
            w.extend(part.rows)
            report = w.close()
        return StagedDataset(
            name=dataset.name,
            rows=report.rows,
            bytes=report.bytes,
            files=report.files,
            source_rows=len(part.rows),
        )

    def _publish(self, part: _Partition) -> None:
        from storepulse.export.publish import publish_partition

        assert part.staged is not None
        dataset, day = part.dataset, part.day
        publish_partition(
            self.s3, self.bucket, dataset, day, part.staged, run_id=self.run_id, clock=self.clock
        )
        table = pa.Table.from_pylist(part.merged, schema=_state_schema(dataset))
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        # After the publish: a crash in between re-reads the hours and publishes again.
        self.s3.put_object(Bucket=self.bucket, Key=state_key(dataset, day), Body=buffer.getvalue())


def _positions(rows: Iterable[Row]) -> set[tuple[str, str, str, str]]:
    return {(r["_pk"], r["_sk"], r["_stream"], r["_sequence_number"]) for r in rows}


def hours_of_interval(start: datetime, end: datetime) -> list[tuple[date, int]]:
    """The UTC hours of ``[start, end)`` and the hour before it: a batch's object for an hour
    can be written just after the hour (the batching window), and re-reading it is harmless."""
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    hours = []
    while hour < end:
        hours.append((hour.date(), hour.hour))
        hour += timedelta(hours=1)
    return hours


def freshness(compacted: Iterable[Compacted]) -> Mapping[str, str]:
    """The newest change time per data set, over the partitions compacted (recorded for the
    dashboard in ``curated/_freshness.json``, ``storepulse.lake.freshness``)."""
    newest: dict[str, str] = {}
    for c in compacted:
        newest[c.dataset] = max(newest.get(c.dataset, ""), c.newest_change)
    return newest
