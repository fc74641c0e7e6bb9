"""History from the lake: daily trends and this period against the previous one.

Reads the curated Parquet that the nightly export publishes, first its yearly rollups of
``daily_store_metrics`` (``curated/_rollups/daily_store_metrics/v<N>/year=YYYY/``, see
``storepulse.export.rollup``: a 365-day trend reads two or three objects), then the day
partitions of the days no rollup covers (not rolled up yet, or another data set)::

    s3://<lake>/curated/daily_store_metrics/[v<N>/]dt=YYYY-MM-DD/*.parquet
        store_id, business_date, revenue, refund_amount (decimal), orders, units, ... (int)
    s3://<lake>/curated/daily_category_sales/[v<N>/]dt=YYYY-MM-DD/*.parquet
        store_id, business_date, category, revenue (decimal), units (int)

(the partition column may also be named ``business_date=``; with versioned ``v<N>`` folders the
newest version is read). Only the partitions in range are read: one listing that starts at the
first day's partition and stops after the last one, then those files with pyarrow. Each file's
rows are cached in-process under (key, ETag, LastModified), so a refresh reads nothing but the
listing unless the export rewrote a day. A missing lake, dataset or day gives empty series, not
an error: history appears once the export has run.

Periods end yesterday (the newest complete business day, in the business's time zone) unless
``end`` is given; the previous period is the same number of days just before.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final, Literal

from pydantic import BaseModel, Field

from storepulse import aws
from storepulse.cache import TtlCache
from storepulse.lake.manifest import MANIFEST_NAME, ManifestReader
from storepulse.lake.paths import CURATED, ROLLUPS
from storepulse.layout import COUNTERS, MONEY_COUNTERS

ROOT: Final = CURATED
STORE_METRICS: Final = "daily_store_metrics"
CATEGORY_SALES: Final = "daily_category_sales"
PERIODS: Final = (7, 30, 90, 365)
PARTITION_COLUMNS: Final = ("dt", "business_date")
LAYOUT_SECONDS: Final = 60.0  # how long the dataset's version folder and partition name are kept
_CENT, _RATIO, _CHANGE = Decimal("0.01"), Decimal("0.000001"), Decimal("0.0001")
_ZERO = Decimal(0)
_VERSION = re.compile(r"^v(\d+)/$")
_PARTITION = re.compile(r"^(dt|business_date)=(\d{4}-\d{2}-\d{2})/")
_ROLLUP = re.compile(r"^v(\d+)/year=(\d{4})/part-00000\.parquet$")

Row = dict[str, Any]
log = logging.getLogger(__name__)


def _days(first: date, last: date) -> Iterable[date]:
    return (first + timedelta(days=n) for n in range((last - first).days + 1))


def warm_up() -> None:
    """Pay pyarrow's one-off costs before the first history request: its import, and its first
    array, which imports pandas (seconds on a busy machine). Called at the app's start."""
    import pyarrow as pa
    import pyarrow.parquet

    pa.array([0]).to_pylist()


# --- reading partitions ------------------------------------------------------------------------


@dataclass(frozen=True)
class LakeFile:
    key: str
    etag: str
    last_modified: datetime
    day: date

    @property
    def signature(self) -> tuple[str, str, datetime]:
        return self.key, self.etag, self.last_modified


@dataclass(frozen=True)
class Slice:
    """Rows of a day range, and the days exported in it: an exported day without sales is a
    file without rows, so it has no row but counts as exported."""

    rows: list[Row]
    days: frozenset[date]


class Lake:
    """The curated datasets of one bucket, read by day range with a per-file cache."""

    def __init__(
        self,
        bucket: str,
        s3: Any = None,
        filesystem: Any = None,
        root: str = ROOT,
        max_cached_files: int = 4096,
        clock: Callable[[], float] = time.monotonic,
        rollups: bool = True,  # False: day partitions only (the benchmark's baseline)
    ) -> None:
        self.bucket, self.root, self.clock = bucket, root.strip("/"), clock
        self.use_rollups = rollups
        self.s3 = s3 or aws.client("s3")
        self._filesystem = filesystem
        self._max_cached = max_cached_files
        self._files: OrderedDict[tuple[str, str, datetime], list[Row]] = OrderedDict()
        self._layouts = TtlCache(LAYOUT_SECONDS, clock=self.clock)
        self._manifests = ManifestReader(self.s3, bucket)
        self._rollups: dict[str, tuple[str, list[Row], frozenset[date]]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dashboard-lake")

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.root}"

    def rows(self, dataset: str, first: date, last: date) -> list[Row]:
        """Every row of the partitions from ``first`` to ``last`` (inclusive)."""
        return self.read(dataset, first, last).rows

    def read(self, dataset: str, first: date, last: date) -> Slice:
        """The rows of ``first`` to ``last`` (inclusive) and the days exported: from the yearly
        rollups for the days they cover, from the day partitions for the others."""
        if not self.use_rollups:
            files = self.files(dataset, first, last)
            return Slice(self._file_rows(files), frozenset(f.day for f in files))
        rolled, covered = self._rollup_rows(dataset, first, last)
        start = next((d for d in _days(first, last) if d not in covered), None)
        if start is not None and covered:  # skip a gap without partitions (before the lake)
            found = self._first_partition_day(dataset, start)
            start = next((d for d in _days(found, last) if d not in covered), None)
        if start is None:
            return Slice(rolled, frozenset(covered))
        files = [f for f in self.files(dataset, start, last) if f.day not in covered]
        return Slice(rolled + self._file_rows(files), frozenset(covered | {f.day for f in files}))

    def latest(self, dataset: str, first: date, last: date) -> Slice:
        """The rows of the newest partition from ``first`` to ``last``: a snapshot data set
        (inventory, customers) holds the whole state in each day, so only the newest is read."""
        files = self.files(dataset, first, last)
        newest = max((f.day for f in files), default=None)
        files = [f for f in files if f.day == newest]
        return Slice(self._file_rows(files), frozenset({newest} if newest else ()))

    def _first_partition_day(self, dataset: str, day: date) -> date:
        """The first day from ``day`` on with a partition (a one-key listing); far in the future
        when there is none."""
        layout = self._layout(dataset)
        if layout is None:
            return date.max
        prefix = f"{layout[0]}{layout[1]}="
        page = self.s3.list_objects_v2(
            Bucket=self.bucket, Prefix=prefix, StartAfter=f"{prefix}{day.isoformat()}", MaxKeys=1
        )
        for entry in page.get("Contents", []):
            if match := _PARTITION.match(entry["Key"][len(layout[0]) :]):
                return date.fromisoformat(match.group(2))
        return date.max

    def _file_rows(self, files: list[LakeFile]) -> list[Row]:
        missing = [f for f in files if self._cached(f) is None]
        for file, rows in zip(missing, self._pool.map(self._read, missing), strict=True):
            self._remember(file, rows)
        return [row for f in files for row in (self._cached(f) or [])]

    def files(self, dataset: str, first: date, last: date) -> list[LakeFile]:
        layout = self._layout(dataset)
        if layout is None:
            return []
        base, column = layout
        prefix = f"{base}{column}="
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket,
            Prefix=prefix,
            StartAfter=f"{prefix}{first.isoformat()}",  # sorts before that day's files
        )
        found: list[LakeFile] = []
        manifests: dict[str, str] = {}  # partition folder -> its manifest's ETag
        for page in pages:
            for entry in page.get("Contents", []):
                key = entry["Key"]
                match = _PARTITION.match(key[len(base) :])
                if not match or date.fromisoformat(match.group(2)) > last:
                    continue
                if key.endswith("/" + MANIFEST_NAME):
                    manifests[key.rsplit("/", 1)[0]] = entry.get("ETag", "")
                elif key.endswith(".parquet"):
                    day = date.fromisoformat(match.group(2))
                    found.append(LakeFile(key, entry.get("ETag", ""), entry["LastModified"], day))
        # During a publish a folder briefly holds the previous files beside the new ones.
        return self._manifests.current(found, manifests, key=lambda f: f.key)

    def _rollup_rows(self, dataset: str, first: date, last: date) -> tuple[list[Row], set[date]]:
        """Rows of ``first``..``last`` from the rollups (newest version), and the days they
        cover: one listing, then only the years whose object changed are read."""
        years = self._rollup_objects(dataset)
        wanted = [years[y] for y in range(first.year, last.year + 1) if y in years]
        for entry, loaded in zip(wanted, self._pool.map(self._rollup, wanted), strict=True):
            with self._lock:
                self._rollups[entry["Key"]] = (entry.get("ETag", ""), *loaded)
        rows: list[Row] = []
        covered: set[date] = set()
        for entry in wanted:
            _, year_rows, days = self._rollups[entry["Key"]]
            covered |= {d for d in days if first <= d <= last}
            rows += [r for r in year_rows if first <= r["business_date"] <= last]
        return rows, covered

    def prefetch(self, dataset: str, first: date, last: date) -> None:
        """Read the rollups of ``first``..``last`` into the cache (at the app's start, so the
        first request after a start finds them: it then lists, and reads nothing unchanged)."""
        if self.use_rollups:
            self._rollup_rows(dataset, first, last)

    def _rollup_objects(self, dataset: str) -> dict[int, dict[str, Any]]:
        """Year -> listing entry of the newest version's rollups of ``dataset``."""
        prefix = f"{self.root}/{ROLLUPS}/{dataset}/"
        page = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1000)
        found: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
        for entry in page.get("Contents", []):
            if match := _ROLLUP.match(entry["Key"][len(prefix) :]):
                found[int(match.group(1))][int(match.group(2))] = entry
        return found[max(found)] if found else {}

    def _rollup(self, entry: dict[str, Any]) -> tuple[list[Row], frozenset[date]]:
        with self._lock:
            cached = self._rollups.get(entry["Key"])
        if cached and cached[0] == entry.get("ETag", ""):
            return cached[1], cached[2]
        import pyarrow as pa
        import pyarrow.parquet as pq

        from storepulse.export.rollup import covered_days

        # One small object: a GET on the client we have, not pyarrow's S3 filesystem (whose
        # first use initialises the AWS C++ SDK).
        body = self.s3.get_object(Bucket=self.bucket, Key=entry["Key"])["Body"].read()
        table = pq.read_table(pa.BufferReader(body))
        return table.to_pylist(), frozenset(covered_days(table.schema))

    def _layout(self, dataset: str) -> tuple[str, str] | None:
        """(folder holding the partitions, partition column), cached for a minute."""
        return self._layouts.get(dataset, lambda: self._discover(f"{self.root}/{dataset}/"))

    def _discover(self, base: str) -> tuple[str, str] | None:
        children = self._children(base)
        versions = [int(m.group(1)) for c in children if (m := _VERSION.match(c))]
        if versions:
            base = f"{base}v{max(versions)}/"
            children = self._children(base)
        for child in children:
            if match := _PARTITION.match(child):
                return base, match.group(1)
        return None

    def _children(self, prefix: str) -> list[str]:
        page = self.s3.list_objects_v2(
            Bucket=self.bucket, Prefix=prefix, Delimiter="/", MaxKeys=1000
        )
        return [p["Prefix"][len(prefix) :] for p in page.get("CommonPrefixes", [])]

    def _read(self, file: LakeFile) -> list[Row]:
        import pyarrow.parquet as pq

        table = pq.read_table(f"{self.bucket}/{file.key}", filesystem=self.filesystem)
        rows = table.to_pylist()
        for row in rows:
            row.setdefault("business_date", file.day)
        return rows

    @property
    def filesystem(self) -> Any:
        if self._filesystem is None:
            from storepulse.lake.filesystem import s3_filesystem

            self._filesystem = s3_filesystem()
        return self._filesystem

    def _cached(self, file: LakeFile) -> list[Row] | None:
        with self._lock:
            rows = self._files.get(file.signature)
            if rows is not None:
                self._files.move_to_end(file.signature)
            return rows

    def _remember(self, file: LakeFile, rows: list[Row]) -> None:
        with self._lock:
            self._files[file.signature] = rows
            while len(self._files) > self._max_cached:
                self._files.popitem(last=False)


# --- response models ---------------------------------------------------------------------------

Number = Decimal | int


class Period(BaseModel):
    first: date
    last: date
    days_with_data: int = Field(description="days with at least one row")
    days_exported: int = Field(description="days the nightly export published, empty ones too")
    totals: dict[str, Number] = Field(description="summed measures; money as decimal strings")
    average_order_value: Decimal | None
    conversion_rate: Decimal | None


class TrendPoint(BaseModel):
    date: date
    values: dict[str, Number]


class Trend(BaseModel):
    days: int
    store_id: str | None
    lake: str | None = Field(description="where the history was read; null: no lake found")
    current: Period
    previous: Period
    change: dict[str, Decimal | None] = Field(description="relative change per measure")
    series: list[TrendPoint] = Field(description="days of the current period that have data")
    previous_series: list[TrendPoint]


class Breakdown(BaseModel):
    key: str
    label: str
    current: dict[str, Number]
    previous: dict[str, Number]
    change: dict[str, Decimal | None]


class BreakdownReport(BaseModel):
    days: int
    by: Literal["store", "category"]
    store_id: str | None
    lake: str | None
    current_first: date
    current_last: date
    rows: list[Breakdown]


# --- aggregation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """The current period (``days`` days to ``last``) and the previous one."""

    days: int
    last: date

    @property
    def first(self) -> date:
        return self.last - timedelta(days=self.days - 1)

    @property
    def previous_last(self) -> date:
        return self.first - timedelta(days=1)

    @property
    def previous_first(self) -> date:
        return self.first - timedelta(days=self.days)

    def is_current(self, day: date) -> bool:
        return self.first <= day <= self.last

    @classmethod
    def ending(cls, days: int, end: date | None, timezone: str, now: datetime) -> Window:
        """``days`` days to ``end``; without an end, to yesterday (local), the last whole day."""
        if end is None:
            from storepulse.layout import local_date

            end = local_date(now, timezone) - timedelta(days=1)
        return cls(days, end)


def _day(row: Row) -> date:
    value = row["business_date"]
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _sum(rows: Iterable[Row], measures: tuple[str, ...]) -> dict[str, Number]:
    totals: dict[str, Number] = {m: _ZERO if m in MONEY_COUNTERS else 0 for m in measures}
    for row in rows:
        for m in measures:
            value = row.get(m)
            if value is not None:
                totals[m] += Decimal(value) if m in MONEY_COUNTERS else int(value)
    return {m: v.quantize(_CENT) if isinstance(v, Decimal) else v for m, v in totals.items()}


def _ratio(numerator: Number, denominator: Number, step: Decimal) -> Decimal | None:
    if not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(step, rounding=ROUND_HALF_EVEN)


def _change(current: Mapping[str, Number], previous: Mapping[str, Number]) -> dict[str, Any]:
    return {m: _ratio(current[m] - previous[m], previous[m], _CHANGE) for m in current}


def _period(rows: list[Row], first: date, last: date, exported: frozenset[date]) -> Period:
    totals = _sum(rows, COUNTERS)
    return Period(
        first=first,
        last=last,
        days_with_data=len({_day(r) for r in rows}),
        days_exported=sum(1 for d in exported if first <= d <= last),
        totals=totals,
        average_order_value=_ratio(totals["revenue"], totals["orders"], _CENT),
        conversion_rate=_ratio(totals["purchases"], totals["sessions"], _RATIO),
    )


def _series(rows: Iterable[Row]) -> list[TrendPoint]:
    by_day: dict[date, list[Row]] = defaultdict(list)
    for row in rows:
        by_day[_day(row)].append(row)
    return [TrendPoint(date=d, values=_sum(by_day[d], COUNTERS)) for d in sorted(by_day)]


def _visible(rows: Iterable[Row], store_ids: frozenset[str] | None) -> list[Row]:
    return [r for r in rows if store_ids is None or r.get("store_id") in store_ids]


def trend(
    lake: Lake | None, window: Window, store_ids: frozenset[str] | None, store_id: str | None
) -> Trend:
    """Daily totals of ``store_ids`` (None: every store); ``store_id`` names the selection."""
    found = Slice([], frozenset())
    if lake is not None:
        found = lake.read(STORE_METRICS, window.previous_first, window.last)
    rows = _visible(found.rows, store_ids)
    current = [r for r in rows if window.is_current(_day(r))]
    previous = [r for r in rows if not window.is_current(_day(r))]
    now = _period(current, window.first, window.last, found.days)
    before = _period(previous, window.previous_first, window.previous_last, found.days)
    return Trend(
        days=window.days,
        store_id=store_id,
        lake=lake.uri if lake else None,
        current=now,
        previous=before,
        change=_change(now.totals, before.totals),
        series=_series(current),
        previous_series=_series(previous),
    )


def breakdown(
    lake: Lake | None,
    window: Window,
    store_ids: frozenset[str] | None,
    store_id: str | None,
    by: Literal["store", "category"],
    labels: Mapping[str, str],
) -> BreakdownReport:
    """Per store (revenue, orders, ...) or per category (revenue, units): now and before."""
    dataset, column, measures = (
        (STORE_METRICS, "store_id", COUNTERS)
        if by == "store"
        else (CATEGORY_SALES, "category", ("revenue", "units"))
    )
    rows = [] if lake is None else lake.rows(dataset, window.previous_first, window.last)
    groups: dict[str, tuple[list[Row], list[Row]]] = defaultdict(lambda: ([], []))
    for row in _visible(rows, store_ids):
        groups[str(row[column])][0 if window.is_current(_day(row)) else 1].append(row)
    result = []
    for key, (current, previous) in groups.items():
        now, before = _sum(current, measures), _sum(previous, measures)
        result.append(
            Breakdown(
                key=key,
                label=labels.get(key, key),
                current=now,
                previous=before,
                change=_change(now, before),
            )
        )
    result.sort(key=lambda b: (-Decimal(b.current["revenue"]), b.key))
    return BreakdownReport(
        days=window.days,
        by=by,
        store_id=store_id,
        lake=lake.uri if lake else None,
        current_first=window.first,
        current_last=window.last,
        rows=result,
    )
