"""Staging, the first half of write-audit-publish: a table's items to the day's staged
partitions (``staging/<run>/<dataset>/dt=<day>/``, ``storepulse.lake.paths``), audited next.

**Staging** (:func:`stage_table`): one pass over a table's items writes the day's partition of
every data set the table feeds into a filesystem given by the caller (the task's connection, not
the process environment), and counts on the way what the source calls for (``source_rows``: the
audit's row-count expectation). When the strict writer refuses the rows (a duplicate or null key,
an item that cannot become a row) the table is staged again *as it is*: schema relaxed to
nullable, unsorted, unbuildable items counted as rejected, so that the audit can name the problem
with its expectations instead of the run dying in a writer error. Such a staging never passes
the audit (its nulls, duplicates or missing rows fail it) and ``publish.publish_partition``
refuses it anyway.

Nothing heavy at import time: staging imports pyarrow when it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from storepulse import stock_levels

if TYPE_CHECKING:
    from storepulse.export.datasets import Dataset
    from storepulse.export.sources import CompletedExport
    from storepulse.export.writer import WriterOptions

log = logging.getLogger(__name__)

Item = dict[str, Any]

_REJECTED_KEPT = 20  # reasons kept per data set (the count is always exact)


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
    as_of: str | None = None  # ISO instant the source reflects (a snapshot's, for the next day)

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
    one per order line for ``order_lines``, one per social channel of a day bucket for
    ``daily_social_metrics`` (``social#<channel>#<counter>`` attributes), one per level of a
    level item for ``inventory_snapshot``, one otherwise (summed data sets: see below)."""
    if dataset.name == "order_lines":
        lines = item.get("lines")
        return len(lines) if isinstance(lines, list) else 0
    if dataset.name == "daily_social_metrics":
        from storepulse.export.datasets import social_counter

        return len({parsed[0] for a in item if (parsed := social_counter(a))})
    if dataset.name == "inventory_snapshot":
        levels = item.get(stock_levels.LEVELS)
        return len(levels) if isinstance(levels, Mapping) else 0
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
        for items in columnar.export_batches(s3, export, columnar.parse_schema(datasets)):
            read += len(items)
            batch = columnar.Items(items)  # each attribute unwrapped once for all data sets
            for d in datasets:
                built = columnar.columnar_rows(d, batch, day)
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
