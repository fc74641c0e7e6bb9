"""Reading ``changes/``: the change rows of a data set, once each, and the latest image per item.

Objects of one hour may overlap (a bisected or partly failed batch wrote a range and then its
halves, ``storepulse.capture.sink``): a change is identified by its item and stream position,
and kept once. "Latest" is the highest stream position per DynamoDB item (``_pk``, ``_sk``):
its rows replace the item's earlier ones, and a REMOVE leaves none.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from storepulse.capture.changes import CHANGE_COLUMNS, REMOVE, change_schema
from storepulse.export.datasets import Dataset, Row, sum_rows
from storepulse.lake.paths import changes_hour_prefix


def change_keys(
    s3: Any, bucket: str, dataset: Dataset, hours: Iterable[tuple[date, int]]
) -> list[str]:
    """Object keys of ``dataset``'s changes in the given UTC hours, in key order."""
    keys: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    for day, hour in hours:
        prefix = f"{changes_hour_prefix(dataset.table.value, day, hour)}/{dataset.name}/"
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".parquet")]
    return sorted(keys)


def read_changes(s3: Any, bucket: str, dataset: Dataset, keys: Sequence[str]) -> pa.Table:
    """The change rows in ``keys``, each change once: a change already read from an earlier
    object (an overlapping range) is skipped; a change's rows are always in one object."""
    schema = change_schema(dataset)
    seen: set[tuple[Any, ...]] = set()
    tables = []
    for key in keys:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        table = pq.read_table(io.BytesIO(body)).select(schema.names).cast(schema)
        identities = [_identity(r) for r in table.select(list(IDENTITY)).to_pylist()]
        fresh = [i for i, identity in enumerate(identities) if identity not in seen]
        seen.update(identities)
        tables.append(table.take(pa.array(fresh, type=pa.int64())))
    return pa.concat_tables(tables) if tables else schema.empty_table()


IDENTITY = ("_pk", "_sk", "_stream", "_sequence_number")


def _identity(row: Row) -> tuple[Any, ...]:
    """A change: its item and its stream position."""
    return tuple(row[c] for c in IDENTITY)


def merge(dataset: Dataset, state: Iterable[Row], changes: Iterable[Row]) -> list[Row]:
    """Each item's rows at its highest position (a change's rows share its position), once."""
    rows = [*state, *changes]
    best: dict[tuple[str, str], tuple[str, str]] = {}
    for row in rows:
        item, position = (row["_pk"], row["_sk"]), (row["_stream"], row["_sequence_number"])
        best[item] = max(best.get(item, position), position)
    seen: set[tuple[Any, ...]] = set()
    merged = []
    for row in rows:
        if (row["_stream"], row["_sequence_number"]) != best[(row["_pk"], row["_sk"])]:
            continue
        identity = (*(row[c] for c in IDENTITY), *(row[c] for c in dataset.key))
        if identity not in seen:
            seen.add(identity)
            merged.append(row)
    return merged


def curated_rows(dataset: Dataset, state: Sequence[Row]) -> list[Row]:
    rows = [
        {k: v for k, v in row.items() if k not in CHANGE_COLUMNS}
        for row in state
        if row["_op"] != REMOVE
    ]
    if dataset.summed:
        return sum_rows(rows, dataset.key, dataset.summed)
    return sorted(rows, key=lambda r: tuple(r[c] for c in dataset.key))


def latest_rows(dataset: Dataset, changes: pa.Table) -> list[Row]:
    """The data set's rows as the items are now: each item's latest change, removes applied,
    change columns dropped, rows in key order (summed data sets added up)."""
    return curated_rows(dataset, merge(dataset, [], changes.to_pylist()))
