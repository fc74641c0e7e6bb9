"""Write, audit, publish: the staging and publishing halves of the nightly export.

Where the files go: ``storepulse.lake.paths``. Everything under ``staging/`` is temporary (the
lake's lifecycle rules expire it after 7 days), which is why a failed audit can leave it there
for inspection.

**Staging** (:func:`stage_table`): one pass over a table's items writes the day's partition of
every data set the table feeds, as ``writer.write_datasets`` does, into a filesystem given by the
caller (the task's connection, not the process environment), and counts on the way what the
source calls for (``source_rows``: the audit's row-count expectation). When the strict writer
refuses the rows (a duplicate or null key, an item that cannot become a row) the table is staged
again *as it is*: schema relaxed to nullable, unsorted, unbuildable items counted as rejected, so
that the audit can name the problem with its expectations instead of the run dying in a writer
error. Such a staging never passes the audit (its nulls, duplicates or missing rows fail it) and
:func:`publish_partition` refuses it anyway.

**Publishing** (:func:`publish_partition`), per partition, atomic for readers that follow the
manifest: (1) copy the staged files to ``curated/<dataset>/dt=<day>/`` under *new* names
``part-<token>-NNNNN.parquet``, where ``token`` is a hash of the staged files' ETags and sizes;
(2) write ``_manifest.json`` (files, rows, bytes, schema version, run id): the commit point;
(3) only then delete the files the manifest does not name (the previous run's, and leftovers of
a publish that crashed). A reader that resolves the partition through ``storepulse.lake.manifest``
sees the old files or the new ones, never a mix. A crash before (2) leaves the previous partition
and its manifest untouched; the rerun copies again under the same names and completes it. The
token is a content hash, so rerunning a day whose data did not change finds the same token in
the manifest and writes nothing at all. (Athena reads the partition's folder, not the manifest:
it can see both generations for the seconds between (1) and (3).) A reader holding the old
manifest while (3) runs gets a missing file, not a mixed answer: it retries.

The curated data sets' Glue tables (partition projection: nothing to register per day) are
``storepulse.lake.tables``'s; the paths and the manifest, ``storepulse.lake``.

Nothing heavy at import time: staging imports pyarrow when it runs.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from storepulse.clock import Clock, system_clock
from storepulse.lake.manifest import MANIFEST_NAME, Manifest
from storepulse.lake.paths import CURATED, partition_prefix

if TYPE_CHECKING:
    from storepulse.export.datasets import Dataset
    from storepulse.export.sources import CompletedExport
    from storepulse.export.writer import WriterOptions

__all__ = [
    "PointInTimeRecoveryOffError",
    "PublishError",
    "PublishReport",
    "StagedDataset",
    "content_token",
    "publish_partition",
    "require_point_in_time_recovery",
    "stage_export",
    "stage_table",
]

log = logging.getLogger(__name__)

Item = dict[str, Any]

_STAGED_PART = re.compile(r"^part-\d{5}\.parquet$")
_PUBLISHED_PART = re.compile(r"^part-[0-9a-f]+-\d{5}\.parquet$")
_REJECTED_KEPT = 20  # reasons kept per data set (the count is always exact)


class PublishError(RuntimeError):
    """A partition cannot be published as asked; the message says why."""


# --- reading a point-in-time export ------------------------------------------------------------


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


# --- staging -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StagedDataset:
    """One data set's staged partition, as the audit and the publish task need it (an XCom)."""

    name: str
    rows: int
    bytes: int
    files: tuple[str, ...]  # "bucket/key", as pyarrow names them
    source_rows: int  # rows the source items call for (the audit compares ``rows`` with it)
    strict: bool = True  # False: staged as-is because the strict writer refused the rows
    rejected_count: int = 0  # items that could not become rows (lenient staging only)
    rejected: tuple[str, ...] = ()  # the first reasons, naming the items
    items_read: int = 0  # items of the table read by the pass (all its data sets alike)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StagedDataset:
        values = dict(data)
        values["files"] = tuple(values["files"])
        values["rejected"] = tuple(values.get("rejected", ()))
        return cls(**values)


class _Lenient(dict):  # type: ignore[type-arg]
    """An item whose missing attributes read as None, so a row shows the gap as a null."""

    def __missing__(self, key: str) -> None:
        return None


def _rows_per_item(dataset: Dataset, item: Item) -> int:
    """Rows one selected item calls for, counted from the item itself, not from the builder:
    one per order line for ``order_lines``, one otherwise (summed data sets: see below)."""
    if dataset.name == "order_lines":
        lines = item.get("lines")
        return len(lines) if isinstance(lines, list) else 0
    return 1


@dataclass
class _TableStaging:
    """The state of one pass over a table's items."""

    datasets: Sequence[Dataset]
    day: date
    strict: bool
    source_rows: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, list[str]] = field(default_factory=dict)
    rejected_count: dict[str, int] = field(default_factory=dict)
    partial: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    row_error: type[Exception] = field(default=ValueError, init=False, repr=False)

    def __post_init__(self) -> None:
        from storepulse.export.datasets import RowError

        self.row_error = RowError
        for d in self.datasets:
            self.source_rows[d.name] = 0
            self.rejected[d.name], self.rejected_count[d.name] = [], 0
            if d.summed:
                self.partial[d.name] = []

    def rows(self, dataset: Dataset, item: Item) -> list[dict[str, Any]]:
        """The rows of a selected item; in lenient mode a refused item is counted, not raised."""
        if not dataset.summed:
            self.source_rows[dataset.name] += _rows_per_item(dataset, item)
        if self.strict:
            return dataset.rows(item, self.day)
        try:
            return dataset.rows(_Lenient(item), self.day)
        except self.row_error as exc:
            self.rejected_count[dataset.name] += 1
            if len(self.rejected[dataset.name]) < _REJECTED_KEPT:
                self.rejected[dataset.name].append(str(exc))
            return []

    def summed_rows(self, dataset: Dataset) -> list[dict[str, Any]]:
        """A summed data set's rows: one per distinct key among the items' parts (which is what
        the source calls for: parts of one key spread over several items add up)."""
        from storepulse.export.datasets import sum_rows

        parts = self.partial[dataset.name]
        keys = {tuple(row[k] for k in dataset.key) for row in parts}
        self.source_rows[dataset.name] = len(keys)
        return sum_rows(parts, dataset.key, dataset.summed)


def _stage_pass(
    items: Iterable[Item],
    datasets: Sequence[Dataset],
    day: date,
    root: str,
    fs: Any,
    *,
    strict: bool,
    options: WriterOptions | None,
) -> dict[str, StagedDataset]:
    from storepulse.export.writer import open_writers

    state = _TableStaging(datasets, day, strict)
    read = 0
    with ExitStack() as stack:
        writers = open_writers(
            stack, root, datasets, day, options=options, filesystem=fs, strict=strict
        )
        for item in items:
            read += 1
            for d in datasets:
                if d.selects(item, day):
                    rows = state.rows(d, item)
                    (state.partial[d.name] if d.summed else writers[d.name]).extend(rows)
        for d in datasets:
            if d.summed:
                writers[d.name].extend(state.summed_rows(d))
        reports = {name: writer.close() for name, writer in writers.items()}
    return {
        name: StagedDataset(
            name=name,
            rows=report.rows,
            bytes=report.bytes,
            files=report.files,
            source_rows=state.source_rows[name],
            strict=strict,
            rejected_count=state.rejected_count[name],
            rejected=tuple(state.rejected[name]),
            items_read=read,
        )
        for name, report in reports.items()
    }


def stage_table(
    items: Callable[[], Iterable[Item]],
    datasets: Sequence[Dataset],
    day: date,
    root: str,
    fs: Any,
    *,
    options: WriterOptions | None = None,
) -> dict[str, StagedDataset]:
    """Stage the day's partition of every data set in ``datasets`` (all fed by one table).

    ``items()`` returns a fresh iterable of the table's items (called a second time only when
    the strict writer refuses the rows); ``root`` is a path of ``fs`` (a pyarrow filesystem),
    e.g. ``<bucket>/staging/<run>``. Partitions go to ``dataset_path(root, dataset, day)``."""
    from storepulse.export.datasets import RowError
    from storepulse.export.writer import WriteError

    try:
        return _stage_pass(items(), datasets, day, root, fs, strict=True, options=options)
    except (RowError, WriteError) as exc:
        names = ", ".join(d.name for d in datasets)
        log.warning(
            "the writer refused the rows of %s (%s): staged as-is for the audit", names, exc
        )
    return _stage_pass(items(), datasets, day, root, fs, strict=False, options=options)


def _stage_columnar(
    s3: Any,
    export: CompletedExport,
    datasets: Sequence[Dataset],
    day: date,
    root: str,
    fs: Any,
    options: WriterOptions | None,
) -> dict[str, StagedDataset]:
    """The strict pass of ``_stage_pass``, batch by batch in Arrow (``export.columnar``)."""
    from storepulse.export import columnar
    from storepulse.export.writer import open_writers

    source_rows = dict.fromkeys((d.name for d in datasets), 0)
    read = 0
    with ExitStack() as stack:
        writers = open_writers(stack, root, datasets, day, options=options, filesystem=fs)
        for items in columnar.export_batches(s3, export, columnar.parse_schema()):
            read += len(items)
            for d in datasets:
                built = columnar.columnar_rows(d, items, day)
                source_rows[d.name] += built.source_rows
                writers[d.name].add_table(built.table)
        reports = {name: writer.close() for name, writer in writers.items()}
    return {
        name: StagedDataset(
            name=name,
            rows=report.rows,
            bytes=report.bytes,
            files=report.files,
            source_rows=source_rows[name],
            items_read=read,
        )
        for name, report in reports.items()
    }


def stage_export(
    s3: Any,
    export: CompletedExport,
    datasets: Sequence[Dataset],
    day: date,
    root: str,
    fs: Any,
    *,
    options: WriterOptions | None = None,
    vectorized: bool = True,
) -> dict[str, StagedDataset]:
    """``stage_table`` for a completed native export: vectorized where ``columnar`` applies
    (the same files, ~10x faster), else, or when it refuses the data, the per-item path."""
    from storepulse.export import columnar
    from storepulse.export.sources import exported_items

    if vectorized and columnar.applies(export, datasets):
        try:
            return _stage_columnar(s3, export, datasets, day, root, fs, options)
        except columnar.FALLBACK_ERRORS as exc:
            log.warning("vectorized conversion refused the export (%s): per item instead", exc)
    items = lambda: exported_items(s3, export)  # noqa: E731
    return stage_table(items, datasets, day, root, fs, options=options)


# --- publishing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishReport:
    dataset: str
    day: str
    rows: int
    bytes: int
    files: tuple[str, ...]  # keys of the current files
    token: str
    changed: bool  # False: the partition already held exactly these files
    removed: int  # files of the previous publish (or of crashed attempts) deleted
    manifest_key: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Object:
    key: str
    etag: str
    size: int

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


def _list_objects(s3: Any, bucket: str, prefix: str) -> list[_Object]:
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        for entry in page.get("Contents", []):
            if "/" not in entry["Key"][len(prefix) + 1 :]:  # this folder only
                objects.append(_Object(entry["Key"], entry["ETag"].strip('"'), entry["Size"]))
    return sorted(objects, key=lambda o: o.key)


def content_token(objects: Iterable[Any]) -> str:
    """A short hash of files' names, ETags and sizes: equal bytes, equal token (the writer is
    deterministic), so a rerun that stages the same data publishes under the same names. (ETags
    are the content's MD5 under SSE-S3, the lake's encryption; under SSE-KMS they differ per
    upload, and a rerun would republish the same rows under new names: correct, not a no-op.)"""
    digest = hashlib.sha256()
    for obj in sorted(objects, key=lambda o: o.name):
        digest.update(f"{obj.name}\0{obj.etag}\0{obj.size}\n".encode())
    return digest.hexdigest()[:16]


def _load_manifest(s3: Any, bucket: str, key: str) -> Manifest | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in {"NoSuchKey", "404"}:
            return None
        raise
    with body:
        return Manifest.from_json(body.read())


def _delete(s3: Any, bucket: str, keys: Sequence[str]) -> int:
    for start in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        response = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if response.get("Errors"):
            first = response["Errors"][0]
            raise PublishError(f"could not delete {first['Key']}: {first.get('Message')}")
    return len(keys)


def _staged_objects(s3: Any, bucket: str, staged: StagedDataset) -> list[_Object]:
    """The staged files, checked against what the stage task reported (and the audit read)."""
    if not staged.strict:
        raise PublishError(
            f"{staged.name}: staged as-is after the writer refused its rows; it cannot be published"
        )
    if not staged.files:
        raise PublishError(f"{staged.name}: nothing staged")
    folder = staged.files[0].split("/", 1)[1].rsplit("/", 1)[0]
    objects = [o for o in _list_objects(s3, bucket, folder) if _STAGED_PART.match(o.name)]
    expected = sorted(path.split("/", 1)[1] for path in staged.files)
    if [o.key for o in objects] != expected:
        raise PublishError(
            f"{staged.name}: s3://{bucket}/{folder}/ holds {[o.name for o in objects]}, the "
            f"stage task wrote {[p.rsplit('/', 1)[-1] for p in expected]}: restage the day"
        )
    return objects


def publish_partition(
    s3: Any,
    bucket: str,
    dataset: Dataset,
    day: date,
    staged: StagedDataset,
    *,
    run_id: str,
    clock: Clock = system_clock,
) -> PublishReport:
    """Replace ``curated/<dataset>/dt=<day>`` by the staged files: copy under new names, commit
    the manifest, then delete what it does not name (see the module docstring). ``s3`` is a
    boto3 client (copies are server side; files are at most the writer's 128 MB)."""
    sources = _staged_objects(s3, bucket, staged)
    token = content_token(sources)
    folder = partition_prefix(CURATED, dataset.name, day)
    manifest_key = f"{folder}/{MANIFEST_NAME}"
    current = _load_manifest(s3, bucket, manifest_key)
    present = {o.name for o in _list_objects(s3, bucket, folder) if _PUBLISHED_PART.match(o.name)}
    unchanged = current is not None and current.token == token and set(current.files) <= present
    if unchanged:
        assert current is not None
        manifest = current
    else:
        names = []
        for number, source in enumerate(sources):
            name = f"part-{token}-{number:05d}.parquet"
            s3.copy_object(
                Bucket=bucket,
                Key=f"{folder}/{name}",
                CopySource={"Bucket": bucket, "Key": source.key},
            )
            names.append(name)
        manifest = Manifest(
            dataset=dataset.name,
            day=day.isoformat(),
            schema_version=dataset.schema_version,
            run_id=run_id,
            token=token,
            rows=staged.rows,
            bytes=sum(o.size for o in sources),
            files=tuple(names),
            published_at=clock().isoformat(),
        )
        s3.put_object(
            Bucket=bucket, Key=manifest_key, Body=manifest.to_json(), ContentType="application/json"
        )
    stale = sorted(f"{folder}/{name}" for name in present - set(manifest.files))
    removed = _delete(s3, bucket, stale)
    return PublishReport(
        dataset=dataset.name,
        day=day.isoformat(),
        rows=manifest.rows,
        bytes=manifest.bytes,
        files=tuple(f"{folder}/{name}" for name in manifest.files),
        token=token,
        changed=not unchanged,
        removed=removed,
        manifest_key=manifest_key,
    )
