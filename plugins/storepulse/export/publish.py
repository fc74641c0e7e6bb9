"""Write, audit, publish: the staging and publishing halves of the nightly export.

Layout of the lake bucket::

    staging/<run>/<dataset>/dt=<day>/part-NNNNN.parquet     written by stage_table, audited
    staging/<run>/_exports/<table>/try-<n>/AWSDynamoDB/...   point-in-time exports (raw)
    curated/<dataset>/dt=<day>/part-<token>-NNNNN.parquet    published files
    curated/<dataset>/dt=<day>/_manifest.json                the partition's current files
                                                              (``_``: hidden from Athena/Hive)

Everything under ``staging/`` is temporary (the lake's lifecycle rules expire it after 7 days),
which is why a failed audit can leave it there for inspection.

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
a publish that crashed). A reader that resolves the partition through :func:`current_files` sees
the old files or the new ones, never a mix. A crash before (2) leaves the previous partition
and its manifest untouched; the rerun copies again under the same names and completes it. The
token is a content hash, so rerunning a day whose data did not change finds the same token in
the manifest and writes nothing at all. (Athena reads the partition's folder, not the manifest:
it can see both generations for the seconds between (1) and (3).) A reader holding the old
manifest while (3) runs gets a missing file, not a mixed answer: it retries.

**Glue Data Catalog** (:func:`register_partition`): database ``storepulse_<env>_curated``, one
table per data set (Parquet SerDe, Hive types from the Arrow schema, partition key ``dt``,
parameter ``storepulse.schema_version``), one partition per day at its ``dt=`` folder; each
created or updated only when it differs.

Nothing heavy at import time: readers (the dashboard, DuckDB helpers) may import this module for
:func:`read_manifest` and :func:`current_files`; staging imports pyarrow when it runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from storepulse.clock import Clock, system_clock

if TYPE_CHECKING:
    import pyarrow as pa

    from storepulse.export.datasets import Dataset
    from storepulse.export.sources import CompletedExport
    from storepulse.export.writer import WriterOptions

__all__ = [
    "CURATED",
    "MANIFEST_NAME",
    "STAGING",
    "Manifest",
    "PointInTimeRecoveryOffError",
    "PublishError",
    "PublishReport",
    "StagedDataset",
    "content_token",
    "current_files",
    "current_uris",
    "export_prefix",
    "glue_database_name",
    "glue_table_input",
    "hive_type",
    "partition_prefix",
    "publish_partition",
    "read_manifest",
    "register_partition",
    "require_point_in_time_recovery",
    "run_folder",
    "stage_export",
    "stage_table",
    "staging_root",
]

log = logging.getLogger(__name__)

Item = dict[str, Any]

STAGING = "staging"
CURATED = "curated"
MANIFEST_NAME = "_manifest.json"
MANIFEST_FORMAT = "storepulse.partition-manifest/1"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
SCHEMA_VERSION_PARAMETER = "storepulse.schema_version"
_STAGED_PART = re.compile(r"^part-\d{5}\.parquet$")
_PUBLISHED_PART = re.compile(r"^part-[0-9a-f]+-\d{5}\.parquet$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_REJECTED_KEPT = 20  # reasons kept per data set (the count is always exact)


class PublishError(RuntimeError):
    """A partition cannot be published as asked; the message says why."""


# --- names -------------------------------------------------------------------------------------


def run_folder(run_id: str) -> str:
    """A run id as one safe key segment (``scheduled__2026-11-27T00:00:00+00:00`` has ``:`` and
    ``+``, which glob patterns and some tools mishandle)."""
    return _UNSAFE.sub("_", run_id).strip("_") or "run"


def staging_root(bucket: str, run_id: str) -> str:
    """``s3://<bucket>/staging/<run>``: the root ``dataset_path`` puts a run's files under."""
    return f"s3://{bucket}/{STAGING}/{run_folder(run_id)}"


def export_prefix(run_id: str, table: str, try_number: int) -> str:
    """Key prefix of one point-in-time export. One per try: without a manifest (the embedded
    AWS writes none) a prefix holding two exports is ambiguous, and a retried task starts a
    new export."""
    return f"{STAGING}/{run_folder(run_id)}/_exports/{table}/try-{try_number}"


def partition_prefix(root: str, dataset: str, day: date) -> str:
    """``<root>/<dataset>/dt=<day>`` (``root`` is a key prefix such as ``curated``)."""
    return f"{root.rstrip('/')}/{dataset}/dt={day.isoformat()}"


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


# --- manifests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """The commit point of a published partition: its files and what they hold."""

    dataset: str
    day: str
    schema_version: int
    run_id: str
    token: str
    rows: int
    bytes: int
    files: tuple[str, ...]  # names inside the partition folder
    published_at: str
    format: str = MANIFEST_FORMAT

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Manifest:
        data = json.loads(raw)
        if data.get("format") != MANIFEST_FORMAT:
            raise PublishError(f"not a partition manifest: format {data.get('format')!r}")
        data["files"] = tuple(data["files"])
        return cls(**data)


def _dataset_name(dataset: Dataset | str) -> str:
    return dataset if isinstance(dataset, str) else dataset.name


def read_manifest(fs: Any, root: str, dataset: Dataset | str, day: date) -> Manifest | None:
    """The manifest of a published partition, or None (never published, or published before
    manifests existed). ``fs`` is a pyarrow filesystem, ``root`` its path of the curated folder
    (``open_filesystem("s3://<lake>/curated")`` gives both)."""
    path = f"{partition_prefix(root, _dataset_name(dataset), day)}/{MANIFEST_NAME}"
    try:
        with fs.open_input_stream(path) as stream:
            return Manifest.from_json(stream.read())
    except FileNotFoundError:
        return None


def current_files(fs: Any, root: str, dataset: Dataset | str, day: date) -> list[str]:
    """The paths (in ``fs``'s terms) of a partition's current files: what its manifest names,
    or, for a partition without one, every ``part-*.parquet`` in its folder. Empty when the
    partition does not exist. Readers use this instead of listing, which during a publish can
    see the previous files beside the new ones."""
    folder = partition_prefix(root, _dataset_name(dataset), day)
    manifest = read_manifest(fs, root, dataset, day)
    if manifest is not None:
        return [f"{folder}/{name}" for name in manifest.files]
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    return sorted(
        i.path for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")
    )


def current_uris(fs: Any, root: str, dataset: Dataset | str, days: Iterable[date]) -> list[str]:
    """``s3://`` URIs of the current files of several days, for DuckDB::

    duck.execute("SELECT ... FROM read_parquet(?, hive_partitioning = true)", [uris])
    """
    scheme = "s3://" if fs.type_name == "s3" else ""
    return [scheme + path for day in days for path in current_files(fs, root, dataset, day)]


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


# --- Glue Data Catalog -------------------------------------------------------------------------


def glue_database_name(env: str) -> str:
    """``storepulse_<env>_curated`` (Glue names: lowercase letters, digits, underscores)."""
    return f"storepulse_{_UNSAFE.sub('_', env.replace('-', '_')).lower()}_curated"


def hive_type(type_: pa.DataType) -> str:
    """The Hive type Athena reads an Arrow type as (the types the curated schemas use)."""
    import pyarrow as pa

    checks: list[tuple[Callable[[pa.DataType], bool], str]] = [
        (pa.types.is_string, "string"),
        (pa.types.is_large_string, "string"),
        (pa.types.is_int64, "bigint"),
        (pa.types.is_int32, "int"),
        (pa.types.is_int16, "smallint"),
        (pa.types.is_int8, "tinyint"),
        (pa.types.is_boolean, "boolean"),
        (pa.types.is_float64, "double"),
        (pa.types.is_float32, "float"),
        (pa.types.is_date32, "date"),
        (pa.types.is_timestamp, "timestamp"),
    ]
    if pa.types.is_decimal(type_):
        return f"decimal({type_.precision},{type_.scale})"
    for check, name in checks:
        if check(type_):
            return name
    raise PublishError(f"no Hive type for Arrow type {type_}")


def _storage_descriptor(dataset: Dataset, location: str) -> dict[str, Any]:
    return {
        "Columns": [{"Name": f.name, "Type": hive_type(f.type)} for f in dataset.schema],
        "Location": location,
        "InputFormat": PARQUET_INPUT,
        "OutputFormat": PARQUET_OUTPUT,
        "Compressed": True,
        "SerdeInfo": {
            "SerializationLibrary": PARQUET_SERDE,
            "Parameters": {"serialization.format": "1"},
        },
    }


def glue_table_input(dataset: Dataset, bucket: str) -> dict[str, Any]:
    """``TableInput`` of a data set's external table over ``s3://<bucket>/curated/<name>/``."""
    return {
        "Name": dataset.name,
        "Description": f"StorePulse curated data set {dataset.name}: {dataset.feeds_from}",
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            "classification": "parquet",
            "EXTERNAL": "TRUE",
            "parquet.compression": "ZSTD",
            SCHEMA_VERSION_PARAMETER: str(dataset.schema_version),
        },
        "StorageDescriptor": _storage_descriptor(
            dataset, f"s3://{bucket}/{CURATED}/{dataset.name}/"
        ),
        "PartitionKeys": [{"Name": "dt", "Type": "string"}],
    }


def _is(exc: ClientError, code: str) -> bool:
    return bool(exc.response["Error"]["Code"] == code)


def _same(current: Mapping[str, Any], wanted: Mapping[str, Any], keys: Sequence[str]) -> bool:
    return all(current.get(k) == wanted.get(k) for k in keys)


def _ensure_database(glue: Any, database: str) -> str:
    try:
        glue.get_database(Name=database)
        return "unchanged"
    except ClientError as exc:
        if not _is(exc, "EntityNotFoundException"):
            raise
    try:
        glue.create_database(
            DatabaseInput={"Name": database, "Description": "StorePulse curated lake (Parquet)"}
        )
    except ClientError as exc:  # another publish task created it meanwhile
        if not _is(exc, "AlreadyExistsException"):
            raise
        return "unchanged"
    return "created"


def _ensure_table(glue: Any, database: str, dataset: Dataset, bucket: str) -> str:
    wanted = glue_table_input(dataset, bucket)
    try:
        table = glue.get_table(DatabaseName=database, Name=dataset.name)["Table"]
    except ClientError as exc:
        if not _is(exc, "EntityNotFoundException"):
            raise
        glue.create_table(DatabaseName=database, TableInput=wanted)
        return "created"
    storage_keys = ("Columns", "Location", "InputFormat", "OutputFormat", "SerdeInfo")
    same = (
        _same(table.get("StorageDescriptor", {}), wanted["StorageDescriptor"], storage_keys)
        and _same(table, wanted, ("PartitionKeys", "TableType"))
        and _same(table.get("Parameters", {}), wanted["Parameters"], list(wanted["Parameters"]))
    )
    if same:
        return "unchanged"
    # Parameters set by others (the QuickSight deploy's partition projection, statistics) stay.
    parameters = {**table.get("Parameters", {}), **wanted["Parameters"]}
    glue.update_table(DatabaseName=database, TableInput=wanted | {"Parameters": parameters})
    return "updated"


def _ensure_partition(glue: Any, database: str, dataset: Dataset, bucket: str, day: date) -> str:
    location = f"s3://{bucket}/{partition_prefix(CURATED, dataset.name, day)}/"
    wanted = {
        "Values": [day.isoformat()],
        "StorageDescriptor": _storage_descriptor(dataset, location),
    }
    try:
        current = glue.get_partition(
            DatabaseName=database, TableName=dataset.name, PartitionValues=wanted["Values"]
        )["Partition"]
    except ClientError as exc:
        if not _is(exc, "EntityNotFoundException"):
            raise
        glue.create_partition(DatabaseName=database, TableName=dataset.name, PartitionInput=wanted)
        return "created"
    keys = ("Columns", "Location", "InputFormat", "OutputFormat", "SerdeInfo")
    if _same(current.get("StorageDescriptor", {}), wanted["StorageDescriptor"], keys):
        return "unchanged"
    glue.update_partition(
        DatabaseName=database,
        TableName=dataset.name,
        PartitionValueList=wanted["Values"],
        PartitionInput=wanted,
    )
    return "updated"


def register_partition(
    glue: Any, database: str, dataset: Dataset, bucket: str, day: date
) -> dict[str, str]:
    """Create or update the database, the data set's table and the day's partition, so Athena
    and QuickSight find them. Returns what happened to each (created, updated, unchanged)."""
    return {
        "database": _ensure_database(glue, database),
        "table": _ensure_table(glue, database, dataset, bucket),
        "partition": _ensure_partition(glue, database, dataset, bucket, day),
    }
