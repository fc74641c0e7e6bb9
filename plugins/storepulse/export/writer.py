"""Write a dataset's rows to Parquet in bounded memory, byte for byte reproducibly.

Rows (dicts) are converted to Arrow record batches of ``batch_rows`` (or arrive as Arrow tables,
``add_table``); with a sort key, batches gather into sorted runs of ``run_rows`` and, past one
run, spill to local Arrow IPC files that are merged back in order, in Arrow (an external merge
sort): memory holds one run plus a small window of each
spilled run, whatever the partition's size. Files are written with ``pyarrow.parquet``: zstd,
row groups of ``row_group_rows``, a new ``part-NNNNN.parquet`` once a file passes
``max_file_bytes``.

Reproducible: the output depends only on the rows and their sort key, never on the order they
arrived in or on the clock (Parquet's ``created_by`` names the library version, nothing else),
so a scan and a point-in-time export of the same table state give identical files. A sort key
must be unique: a duplicate is reported as an error (it would be a duplicated fact anyway).

Filesystems: ``storepulse.lake.filesystem.open_filesystem``.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from storepulse.export.datasets import Dataset, dataset_path
from storepulse.lake.filesystem import open_filesystem

__all__ = [
    "DatasetWriter",
    "WriteError",
    "WriteReport",
    "WriterOptions",
    "part_name",
]

_PART = re.compile(r"^part-\d{5}\.parquet$")


class WriteError(ValueError):
    """Rows that cannot be written as given (a null key, a duplicate key)."""


@dataclass(frozen=True)
class WriterOptions:
    batch_rows: int = 16_384  # Python rows held before conversion to Arrow (~1 KB each)
    # Arrow rows sorted in memory before spilling a run: small enough that memory stays flat
    # from tens of thousands to millions of items (measured by benchmarks/export.py).
    run_rows: int = 32_768
    row_group_rows: int = 131_072
    max_file_bytes: int = 128 * 1024 * 1024
    compression: str = "zstd"
    compression_level: int = 3
    merge_window_rows: int = 4_096  # rows of each spilled run in memory while merging


@dataclass(frozen=True)
class WriteReport:
    uri: str  # the folder written
    rows: int
    bytes: int
    files: tuple[str, ...]  # paths of the files, in the filesystem's terms


def part_name(number: int) -> str:
    return f"part-{number:05d}.parquet"


def _existing_parts(fs: pafs.FileSystem, directory: str) -> set[str]:
    selector = pafs.FileSelector(directory, allow_not_found=True)
    return {
        info.path
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File and _PART.match(info.base_name)
    }


# --- Parquet files -----------------------------------------------------------------------------


class _PartFiles:
    """Row groups of a fixed number of rows into ``part-NNNNN.parquet`` files of bounded size."""

    def __init__(
        self, fs: pafs.FileSystem, directory: str, schema: pa.Schema, options: WriterOptions
    ) -> None:
        self.fs, self.directory, self.schema, self.options = fs, directory, schema, options
        self.files: list[str] = []
        self.bytes = 0
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._sink: Any = None
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        while self._pending_rows >= self.options.row_group_rows:
            self._write_row_group(self.options.row_group_rows)

    def close(self) -> None:
        while self._pending_rows:
            self._write_row_group(min(self._pending_rows, self.options.row_group_rows))
        if self._writer is None and not self.files:
            self._open()  # an empty day still gets a file: "exported, no rows" is not "missing"
        self._close_file()

    def abort(self) -> None:
        """Remove what was written: a half-written part must not pass for a partition."""
        if self._sink is not None:
            if self._writer is not None:  # first, or its finaliser writes to a closed sink
                with suppress(Exception):
                    self._writer.close()
            self._sink.close()
            self._sink, self._writer = None, None
        for path in self.files:
            with suppress(OSError):  # best effort: the error that caused the abort matters more
                self.fs.delete_file(path)
        self.files = []

    def _write_row_group(self, rows: int) -> None:
        table = pa.concat_tables(self._pending).combine_chunks()
        group, rest = table.slice(0, rows), table.slice(rows)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
        if self._writer is None:
            self._open()
        assert self._writer is not None
        self._writer.write_table(group, row_group_size=rows)
        self.rows += rows
        if self._sink.tell() >= self.options.max_file_bytes:
            self._close_file()

    def _open(self) -> None:
        path = f"{self.directory}/{part_name(len(self.files))}"
        self._sink = self.fs.open_output_stream(path)
        self._writer = pq.ParquetWriter(
            self._sink,
            self.schema,
            compression=self.options.compression,
            compression_level=self.options.compression_level,
            version="2.6",
            use_dictionary=True,
            write_statistics=True,
            write_page_index=False,
            store_schema=True,  # readers get the exact Arrow types (tz, decimal) back
        )
        self.files.append(path)

    def _close_file(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self.bytes += self._sink.tell()
        self._sink.close()
        self._sink, self._writer = None, None


# --- sorting -----------------------------------------------------------------------------------


def _sort(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    order = pc.sort_indices(table, sort_keys=[(k, "ascending") for k in keys])
    return table.take(order)


def _check_unique(table: pa.Table, keys: Sequence[str]) -> None:
    if table.group_by(list(keys)).aggregate([]).num_rows != table.num_rows:
        raise WriteError(f"duplicate key ({', '.join(keys)}) in the rows")


class _Run:
    """One spilled run, read a batch (``merge_window_rows``) at a time."""

    def __init__(self, path: str, keys: Sequence[str]) -> None:
        # A plain read, not a memory map: mapped pages stay resident (and counted) once touched.
        self.reader = pa.ipc.open_file(pa.OSFile(path))
        self.keys, self.next, self.last = keys, 0, None
        self.exhausted = self.reader.num_record_batches == 0

    def load(self) -> pa.RecordBatch:
        batch = self.reader.get_batch(self.next)
        self.next += 1
        self.exhausted = self.next == self.reader.num_record_batches
        last = batch.slice(batch.num_rows - 1).to_pylist()[0] if batch.num_rows else None
        self.last = self.last if last is None else tuple(last[k] for k in self.keys)
        return batch


def _upto(table: pa.Table, keys: Sequence[str], bound: tuple[Any, ...]) -> int:
    """How many rows of sorted ``table`` have a key up to ``bound`` (lexicographic, nulls last
    as ``_sort`` puts them)."""
    upto = None
    for name, value in reversed(list(zip(keys, bound, strict=True))):
        column = table[name]
        if value is None:
            less, equal = pc.is_valid(column), pc.is_null(column)
        else:
            scalar = pa.scalar(value, table.schema.field(name).type)
            less = pc.fill_null(pc.less(column, scalar), False)
            equal = pc.fill_null(pc.equal(column, scalar), False)
        upto = pc.or_(less, equal) if upto is None else pc.or_(less, pc.and_(equal, upto))
    return int(pc.sum(upto).as_py() or 0) if upto is not None else table.num_rows


def _merged(
    runs: list[str], keys: Sequence[str], schema: pa.Schema, options: WriterOptions
) -> Iterator[pa.Table]:
    """Sorted runs merged into sorted tables, in Arrow: each run has a window of its rows in
    memory; rows up to the smallest "last key loaded" of the runs not yet exhausted cannot be
    preceded by any row still on disk, so each window's rows up to it are sorted together and
    go out (every row is sorted once more, with the others of its step); then that run loads
    its next batch. Memory: about one batch of each run, whatever the partition's size."""
    readers = [_Run(path, keys) for path in runs]
    windows = [pa.Table.from_batches([r.load()], schema) for r in readers]
    while True:
        pending = [n for n, r in enumerate(readers) if not r.exhausted and r.last is not None]
        if not pending:
            break
        bound = min(pending, key=lambda n: readers[n].last)  # type: ignore[arg-type, return-value]
        cuts = [_upto(w, keys, readers[bound].last) for w in windows]  # type: ignore[arg-type]
        step = pa.concat_tables([w.slice(0, cut) for w, cut in zip(windows, cuts, strict=True)])
        yield _checked(_sort(step, keys), keys)
        windows = [w.slice(cut) for w, cut in zip(windows, cuts, strict=True)]
        loaded = pa.Table.from_batches([readers[bound].load()], schema)
        windows[bound] = pa.concat_tables([windows[bound], loaded])
    rest = pa.concat_tables(windows)
    if rest.num_rows:
        yield _checked(_sort(rest, keys), keys)


def _checked(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    _check_unique(table, keys)  # a key in two runs: both copies are in the buffer when it goes
    return table


# --- the writer --------------------------------------------------------------------------------


class DatasetWriter:
    """Rows in (``add``), Parquet files out (``close``); use as a context manager.

    ``uri``: a folder URI, or a path of ``filesystem`` when one is given. Existing
    ``part-*.parquet`` files there are replaced: a rerun of a day rewrites it."""

    def __init__(
        self,
        uri: str,
        schema: pa.Schema,
        *,
        sort_by: Sequence[str] = (),
        options: WriterOptions | None = None,
        filesystem: pafs.FileSystem | None = None,
    ) -> None:
        self.schema, self.sort_by = schema, tuple(sort_by)
        self.options = options or WriterOptions()
        fs, directory = open_filesystem(uri) if filesystem is None else (filesystem, uri)
        self.uri = f"s3://{directory}" if fs.type_name == "s3" else directory
        if isinstance(fs, pafs.LocalFileSystem):
            fs.create_dir(directory, recursive=True)  # S3 has no folders: never make markers
        # Parts of an earlier run that this one does not overwrite go after it succeeds (a rerun
        # may write fewer files); deleting first would leave S3 a "folder" marker object.
        self._stale = _existing_parts(fs, directory)
        self._parts = _PartFiles(fs, directory, schema, self.options)
        self._rows: list[Mapping[str, Any]] = []
        self._run: list[pa.Table] = []
        self._run_rows = 0
        self._spill_dir: str | None = None
        self._spilled: list[str] = []

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()

    def add(self, row: Mapping[str, Any]) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.options.batch_rows:
            self._convert()

    def extend(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.add(row)

    def close(self) -> WriteReport:
        """Write what is left; report rows, bytes and files."""
        try:
            self._convert()
            if self.sort_by:
                self._finish_sorted()
            self._parts.close()
        except BaseException:
            self.abort()
            raise
        self._drop_spill()
        for path in sorted(self._stale - set(self._parts.files)):
            self._parts.fs.delete_file(path)
        parts = self._parts
        return WriteReport(self.uri, parts.rows, parts.bytes, tuple(parts.files))

    def abort(self) -> None:
        self._parts.abort()
        self._drop_spill()

    # -- internals --------------------------------------------------------------------------
    def add_table(self, table: pa.Table) -> None:
        """Rows already in Arrow (the vectorized export), in this writer's schema: they join
        the same runs as converted rows, so the files do not depend on how rows arrived."""
        self._convert()
        if not table.schema.equals(self.schema):
            raise WriteError(f"table schema differs from the writer's: {table.schema}")
        self._add_arrow(table)

    def _convert(self) -> None:
        if not self._rows:
            return
        table = pa.Table.from_pylist(self._rows, schema=self.schema)
        self._rows = []
        self._add_arrow(table)

    def _add_arrow(self, table: pa.Table) -> None:
        for column, field in zip(table.columns, self.schema, strict=True):
            if not field.nullable and column.null_count:
                raise WriteError(f"{column.null_count} row(s) without {field.name!r}")
        if not self.sort_by:
            self._parts.write(table)
            return
        self._run.append(table)
        self._run_rows += table.num_rows
        if self._run_rows >= self.options.run_rows:
            self._spill()

    def _sorted_run(self) -> pa.Table:
        table = _sort(pa.concat_tables(self._run).combine_chunks(), self.sort_by)
        _check_unique(table, self.sort_by)
        self._run, self._run_rows = [], 0
        return table

    def _spill(self) -> None:
        table = self._sorted_run()
        if self._spill_dir is None:
            self._spill_dir = tempfile.mkdtemp(prefix="storepulse-export-")
        path = str(Path(self._spill_dir) / f"run-{len(self._spilled):05d}.arrow")
        with pa.ipc.new_file(path, self.schema) as sink:
            sink.write_table(table, max_chunksize=self.options.merge_window_rows)
        self._spilled.append(path)

    def _finish_sorted(self) -> None:
        if not self._spilled:
            if self._run:
                self._parts.write(self._sorted_run())
            return
        if self._run:
            self._spill()
        for table in _merged(self._spilled, self.sort_by, self.schema, self.options):
            self._parts.write(table)

    def _drop_spill(self) -> None:
        if self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)
            self._spill_dir, self._spilled = None, []


def open_writers(
    stack: ExitStack,
    root_path: str,
    datasets: Sequence[Dataset],
    day: date,
    *,
    options: WriterOptions | None,
    filesystem: Any,
    strict: bool = True,
) -> dict[str, DatasetWriter]:
    """A writer per data set for its partition of ``day`` under ``root_path``, closed with
    ``stack``. Not strict: every field nullable and no sort key, to stage rows as they are."""
    return {
        d.name: stack.enter_context(
            DatasetWriter(
                dataset_path(root_path, d, day),
                d.schema if strict else _nullable(d.schema),
                sort_by=d.key if strict else (),
                options=options,
                filesystem=filesystem,
            )
        )
        for d in datasets
    }


def _nullable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in schema], metadata=schema.metadata)
