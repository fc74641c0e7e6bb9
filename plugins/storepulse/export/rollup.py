"""The daily rollup: a year of ``daily_store_metrics`` in one small object, for cold history.

A 365-day trend (with the previous period: 730 days) would read 730 partition files; the
dashboard's first request after a start paid ~7 s for it. After each publish of a day's
``daily_store_metrics`` partition, the nightly export rewrites that year's rollup::

    curated/_rollups/daily_store_metrics/v<N>/year=YYYY/part-00000.parquet

holding the published rows of every exported day of the year (same schema as the data set,
sorted by business date and store), and in its metadata the days it covers (a day exported with
no rows is covered too, so a reader skips its partition). Rewriting replaces the day's rows:
a rerun of a day (late events) rewrites it idempotently, and an unchanged day writes nothing.

Outside the curated data sets on purpose: it is a cache of ``daily_store_metrics`` for the
dashboard, not a new table. The ``_`` folder keeps it out of Athena/Glue and QuickSight (as
``_manifest.json``), so the data set declarations and Glue tables need no change. Written with a
single PUT, so readers see the old year or the new one.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from storepulse.export.datasets import Dataset
from storepulse.lake.manifest import current_files
from storepulse.lake.paths import ROLLUPS
from storepulse.lake.paths import rollup_path as _rollup_path

__all__ = [
    "DAYS_KEY",
    "ROLLUPS",
    "RollupReport",
    "covered_days",
    "rollup_path",
    "update_rollup",
    "write_rollup",
]

DAYS_KEY = b"storepulse.rollup.days"


@dataclass(frozen=True)
class RollupReport:
    path: str
    year: int
    days: int  # days the year's rollup covers
    rows: int
    changed: bool  # False: the same bytes were there already (an unchanged rerun)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("path", "year", "days", "rows", "changed")}


def rollup_path(root: str, dataset: Dataset, year: int) -> str:
    """``<root>/_rollups/<dataset>/v<N>/year=<year>/part-00000.parquet`` (``root``: curated)."""
    return _rollup_path(root, dataset.name, dataset.schema_version, year)


def covered_days(schema: pa.Schema) -> set[date]:
    """The days a rollup file covers, from its schema metadata."""
    raw = (schema.metadata or {}).get(DAYS_KEY, b"")
    return {date.fromisoformat(d) for d in raw.decode().split(",") if d}


def _read(fs: Any, path: str) -> tuple[bytes | None, pa.Table | None]:
    try:
        with fs.open_input_stream(path) as stream:
            raw = stream.read()
    except FileNotFoundError:
        return None, None
    return raw, pq.read_table(pa.BufferReader(raw))


def _day_rows(fs: Any, root: str, dataset: Dataset, day: date) -> pa.Table:
    """The day's published rows (the files its manifest names), in the data set's schema."""
    files = current_files(fs, root, dataset, day)
    tables = [pq.read_table(path, filesystem=fs, schema=dataset.schema) for path in files]
    return pa.concat_tables(tables) if tables else dataset.schema.empty_table()


def _encode(table: pa.Table, days: set[date], dataset: Dataset) -> bytes:
    metadata = dict(dataset.schema.metadata or {})
    metadata[DAYS_KEY] = ",".join(sorted(d.isoformat() for d in days)).encode()
    order = pc.sort_indices(table, [("business_date", "ascending"), ("store_id", "ascending")])
    table = table.take(order).combine_chunks().replace_schema_metadata(metadata)
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        compression_level=3,
        version="2.6",
        write_statistics=True,
        store_schema=True,
    )
    return sink.getvalue()


def update_rollup(fs: Any, root: str, dataset: Dataset, day: date) -> RollupReport:
    """Replace ``day``'s rows in its year's rollup with the published partition's rows.

    ``fs``/``root``: a pyarrow filesystem and its path of the curated folder. Idempotent: the
    bytes depend only on the published rows of the covered days."""
    path = rollup_path(root, dataset, day.year)
    before, existing = _read(fs, path)
    days = {day}
    kept = dataset.schema.empty_table()
    if existing is not None:
        days |= covered_days(existing.schema)
        existing = existing.cast(dataset.schema)
        kept = existing.filter(pc.not_equal(existing["business_date"], pa.scalar(day)))
    table = pa.concat_tables([kept, _day_rows(fs, root, dataset, day)])
    changed = write_rollup(fs, path, table, days, dataset, before=before)
    return RollupReport(path, day.year, len(days), table.num_rows, changed)


def write_rollup(
    fs: Any,
    path: str,
    table: pa.Table,
    days: set[date],
    dataset: Dataset,
    *,
    before: bytes | None = None,
) -> bool:
    """Write a year's rollup unless ``before`` (its current bytes) is the same; True if written.
    Also how a benchmark or a backfill builds a whole year at once."""
    encoded = _encode(table, days, dataset)
    if encoded == before:
        return False
    if isinstance(fs, pafs.LocalFileSystem):  # S3 has no folders: never make markers
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as out:  # one PUT: the old year or the new, never half
        out.write(encoded)
    return True
