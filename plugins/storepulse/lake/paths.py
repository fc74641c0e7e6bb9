"""Zones and keys of the lake bucket::

    raw/events/dt=<day>/hour=<HH>/<shard>-<first>-<last>.jsonl.gz     the stream's valid records
    quarantine/events/dt=<day>/hour=<HH>/...jsonl.gz                  refused records, with reasons
    changes/<table>/dt=<day>/hour=<HH>/<dataset>/<shard>-<first>-<last>.parquet
                                                                      captured table changes (UTC)
    quarantine/changes/<table>/dt=<day>/hour=<HH>/...jsonl.gz         changes that made no row
    staging/<run>/<dataset>/dt=<day>/part-NNNNN.parquet               staged by the export, audited
    staging/<run>/_exports/<table>/try-<n>/AWSDynamoDB/...            point-in-time exports (raw)
    curated/<dataset>/dt=<day>/part-<token>-NNNNN.parquet             published files
    curated/<dataset>/dt=<day>/_manifest.json                         the partition's current files
    curated/_rollups/<dataset>/v<N>/year=<YYYY>/part-00000.parquet    yearly rollups (history)
    curated/_freshness.json                                           newest change per data set
    changes/_state/<dataset>/dt=<day>/state.parquet                   the compaction's item state
    reference/<table>/                                                reference tables (e.g. RLS)
    state/export/snapshots/<dataset>/dt=<day>.json                    when a published snapshot
                                                                      was taken (incremental export)

Names starting with ``_`` are hidden from Athena/Hive. Everything under ``staging/`` is temporary
(the lifecycle rules expire it).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Final

RAW: Final = "raw"
QUARANTINE: Final = "quarantine"
STAGING: Final = "staging"
CURATED: Final = "curated"
REFERENCE: Final = "reference"
SNAPSHOT_STATE: Final = "state/export/snapshots"
ROLLUPS: Final = "_rollups"  # under curated/
EXPORTS: Final = "_exports"  # under staging/<run>/
PARTITION_KEY: Final = "dt"
CHANGES: Final = "changes"
RAW_EVENTS: Final = f"{RAW}/events"
QUARANTINE_EVENTS: Final = f"{QUARANTINE}/events"
QUARANTINE_CHANGES: Final = f"{QUARANTINE}/changes"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def run_folder(run_id: str) -> str:
    """A run id as one safe key segment (``scheduled__2026-11-27T00:00:00+00:00`` has ``:`` and
    ``+``, which glob patterns and some tools mishandle)."""
    return _UNSAFE.sub("_", run_id).strip("_") or "run"


def staging_root(bucket: str, run_id: str) -> str:
    """``s3://<bucket>/staging/<run>``: the root a run's staged partitions go under."""
    return f"s3://{bucket}/{STAGING}/{run_folder(run_id)}"


def export_prefix(run_id: str, table: str, try_number: int) -> str:
    """Key prefix of one point-in-time export. One per try: without a manifest (the embedded
    AWS writes none) a prefix holding two exports is ambiguous, and a retried task starts a
    new export."""
    return f"{STAGING}/{run_folder(run_id)}/{EXPORTS}/{table}/try-{try_number}"


def partition_prefix(root: str, dataset: str, day: date) -> str:
    """``<root>/<dataset>/dt=<day>`` (hive style, what Athena, Glue and DuckDB expect; ``root``
    is a key prefix such as ``curated`` or a filesystem path)."""
    return f"{root.rstrip('/')}/{dataset}/{PARTITION_KEY}={day.isoformat()}"


def table_prefix(dataset: str) -> str:
    """``curated/<dataset>/``: the folder of a curated data set's partitions."""
    return f"{CURATED}/{dataset}/"


def rollup_path(root: str, dataset: str, version: int, year: int) -> str:
    """``<root>/_rollups/<dataset>/v<N>/year=<year>/part-00000.parquet`` (``root``: curated)."""
    return f"{root.rstrip('/')}/{ROLLUPS}/{dataset}/v{version}/year={year}/part-00000.parquet"


def changes_hour_prefix(table: str, day: date, hour: int) -> str:
    """``changes/<table>/dt=<day>/hour=<HH>``: one UTC hour of a table's captured changes."""
    return f"{partition_prefix(CHANGES, table, day)}/hour={hour:02d}"
