"""The hourly compaction's audit: the nightly export's Great Expectations suites
(``storepulse.export.quality``) on the compacted partitions before they are published.

Per data set, the same ``<dataset>.partition`` and ``<dataset>`` suites as the nightly export
(schema, non-null and unique keys, ranges, known stores and currencies, partition, rows as the
merged items call for). The ``reconciliation`` suite judges **closed hours** instead of the
whole day, since a day still under way has changes in flight: per store and UTC hour of the
day that ended before ``judged_until`` (now, less ``CAPTURE_GRACE`` for the last batches to be
captured), the compacted orders' count and revenue equal the real-time metrics' hour bucket
(``orders``, ``revenue`` of ``S#<store>#HOUR#<day>``, read from the metrics table now). The
hour still open is not judged; a closed past day (a late sale) has every hour judged.

A store-hour that moved while the compaction ran (changes written but not captured yet when it
listed them: a POS syncing, the demo's yesterday going on live) disagrees with the bucket read
after: it is read again from the tables, and judged on them when they agree at one moment, as
the nightly export does for a day (``settle_hours``); the next run publishes what it lacked,
and the nightly export reconciles the day. Tables that keep disagreeing fail it.

Results go where the nightly export's go (``_quality/<dataset>/dt=<day>/``, context
``strategy: compaction``): the latest audit of what the day's partition holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
from boto3.dynamodb.conditions import Key as KeyCondition

from storepulse.aws import query_items
from storepulse.clock import Clock, system_clock
from storepulse.export.datasets import Row
from storepulse.layout import hour_buckets, utc_hour

if TYPE_CHECKING:
    from storepulse.export.quality import AuditResult, Reference
    from storepulse.export.staging import StagedDataset

log = logging.getLogger(__name__)

CAPTURE_GRACE: Final = timedelta(minutes=2)  # table write -> row in changes/ (seconds, margin)
HOUR: Final = timedelta(hours=1)
_HOUR_FORMAT: Final = "%Y-%m-%dT%HZ"  # layout.utc_hour


@dataclass(frozen=True)
class HourMetrics:
    """A store's UTC hour as the real-time path counted it."""

    orders: int
    revenue: Decimal


HourlyMetrics = Callable[[str, date], Mapping[str, HourMetrics]]
"""(store, business day) -> the store's hour buckets of that day, by UTC hour (``utc_hour``)."""


def table_hours(metrics: Any) -> HourlyMetrics:
    """The hour buckets from the metrics table (a boto3 ``Table``), one query per store."""

    def read(store: str, day: date) -> dict[str, HourMetrics]:
        condition = KeyCondition("pk").eq(hour_buckets(store, day))
        return {
            item["sk"]: HourMetrics(
                int(item.get("orders", 0)),
                Decimal(item.get("revenue", 0)).quantize(Decimal("0.01")),
            )
            for item in query_items(metrics, KeyConditionExpression=condition, ConsistentRead=True)
        }

    return read


def hour_start(hour: str) -> datetime:
    return datetime.strptime(hour, _HOUR_FORMAT).replace(tzinfo=UTC)


def closed_hours_frame(
    orders: Iterable[Row],
    day: date,
    stores: Iterable[str],
    hourly: HourlyMetrics,
    judged_until: datetime,
) -> pa.Table:
    """Per store and closed UTC hour of ``day`` (ended by ``judged_until``): the compacted
    orders' count and revenue beside the hour bucket's (0 where a side has nothing)."""
    counted: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for order in orders:
        key = (order["store_id"], utc_hour(order["occurred_at"]))
        count, revenue = counted.get(key, (0, Decimal("0.00")))
        counted[key] = (count + 1, revenue + order["total"])
    metrics = {
        (store, hour): bucket
        for store in sorted(set(stores) | {s for s, _ in counted})
        for hour, bucket in hourly(store, day).items()
    }
    keys = sorted(k for k in set(counted) | set(metrics) if hour_start(k[1]) + HOUR <= judged_until)
    zero = (0, Decimal("0.00"))
    nothing = HourMetrics(0, Decimal("0.00"))
    money = pa.decimal128(38, 2)
    return pa.table(
        {
            "store_id": pa.array([s for s, _ in keys], pa.string()),
            "hour": pa.array([h for _, h in keys], pa.string()),
            "order_count": pa.array([counted.get(k, zero)[0] for k in keys], pa.int64()),
            "metric_orders": pa.array([metrics.get(k, nothing).orders for k in keys], pa.int64()),
            "order_revenue": pa.array([counted.get(k, zero)[1] for k in keys], money),
            "metric_revenue": pa.array([metrics.get(k, nothing).revenue for k in keys], money),
        }
    )


TableOrders = Callable[[date], Iterable[Mapping[str, Any]]]
"""business day -> its order facts as the facts table holds them now (``live.day_orders``)."""


def settle_hours(
    frame: pa.Table,
    day: date,
    hourly: HourlyMetrics,
    table_orders: TableOrders,
    *,
    attempts: int = 3,
    pause: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> pa.Table:
    """``frame`` with a ``compared`` column. A store-hour whose compacted orders disagree with
    its hour bucket is read again from the tables (facts and bucket): if they agree at one
    moment, the hour moved during the compaction (changes not captured yet when it listed them:
    a POS syncing, the demo's live yesterday) and it is judged on the tables (``tables``, logged;
    the next run publishes what it lacks); tables that keep disagreeing fail it."""
    rows = frame.to_pylist()
    moving = {(r["store_id"], r["hour"]) for r in rows if not _agrees(r)}
    settled: dict[tuple[str, str], HourMetrics] = {}
    for attempt in range(attempts):
        if not moving:
            break
        if attempt:
            sleep(pause)
        facts = _facts_by_hour(table_orders(day))
        for store, hour in sorted(moving):
            bucket = hourly(store, day).get(hour, HourMetrics(0, Decimal("0.00")))
            if facts.get((store, hour), HourMetrics(0, Decimal("0.00"))) == bucket:
                settled[(store, hour)] = bucket
                moving.discard((store, hour))
    for row in rows:
        tables = settled.get((row["store_id"], row["hour"]))
        row["compared"] = "snapshot" if tables is None else "tables"
        if tables is not None:
            log.warning(
                "%s %s: moved during the compaction (compacted %d orders, %s; tables now %d, "
                "%s): judged on the tables; the next run publishes the rest",
                row["store_id"],
                row["hour"],
                row["order_count"],
                row["order_revenue"],
                tables.orders,
                tables.revenue,
            )
            row |= {"order_count": tables.orders, "metric_orders": tables.orders}
            row |= {"order_revenue": tables.revenue, "metric_revenue": tables.revenue}
    schema = frame.schema.append(pa.field("compared", pa.string()))
    return pa.Table.from_pylist(rows, schema=schema)


def _agrees(row: Mapping[str, Any]) -> bool:
    return (row["order_count"], row["order_revenue"]) == (
        row["metric_orders"],
        row["metric_revenue"],
    )


def _facts_by_hour(items: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], HourMetrics]:
    counted: dict[tuple[str, str], HourMetrics] = {}
    for item in items:
        if item.get("type") != "order":
            continue
        key = (item["store_id"], utc_hour(datetime.fromisoformat(item["occurred_at"])))
        known = counted.get(key, HourMetrics(0, Decimal("0.00")))
        total = Decimal(item["total"]).quantize(Decimal("0.01"))
        counted[key] = HourMetrics(known.orders + 1, known.revenue + total)
    return counted


class CompactionAudit:
    """Audits one day's staged partitions (``__call__``), writes the results under ``root`` (the
    lake bucket as a path of the pyarrow filesystem ``fs``) and logs them; the compactor
    publishes nothing unless every audited day passes."""

    def __init__(
        self,
        fs: Any,
        root: str,
        reference: Reference,
        hourly: HourlyMetrics,
        table_orders: TableOrders,
        *,
        run_id: str,
        clock: Clock = system_clock,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.fs, self.root, self.reference, self.hourly = fs, root, reference, hourly
        self.table_orders, self.run_id, self.clock, self.sleep = table_orders, run_id, clock, sleep

    def __call__(
        self, day: date, staged: Mapping[str, StagedDataset], orders: Sequence[Row]
    ) -> AuditResult:
        from storepulse.export.quality import audit_day, read_staged, write_results

        judged_until = self.clock() - CAPTURE_GRACE
        tables = {name: read_staged(self.fs, report.files) for name, report in staged.items()}
        hours = closed_hours_frame(orders, day, self.reference.stores, self.hourly, judged_until)
        hours = settle_hours(hours, day, self.hourly, self.table_orders, sleep=self.sleep)
        result = audit_day(tables, day, self.reference, staged, closed_hours=hours)
        context = {
            "run_id": self.run_id,
            "strategy": "compaction",
            "judged_until": judged_until.isoformat(),
        }
        write_results(self.fs, self.root, result, context=context, staged=staged)
        _log(result, tables, hours, judged_until)
        return result


def _log(
    result: AuditResult, tables: Mapping[str, pa.Table], hours: pa.Table, judged_until: datetime
) -> None:
    revenue = sum(hours.column("order_revenue").to_pylist(), Decimal("0.00"))
    log.log(
        logging.INFO if result.success else logging.ERROR,
        "%s; %d rows in %d data sets; closed hours judged until %s: %d store-hours, %d orders, "
        "revenue %s",
        result.summary(),
        sum(t.num_rows for t in tables.values()),
        len(tables),
        judged_until.strftime("%H:%M UTC"),
        hours.num_rows,
        sum(hours.column("order_count").to_pylist()),
        revenue,
    )


__all__ = [
    "CAPTURE_GRACE",
    "CompactionAudit",
    "HourMetrics",
    "HourlyMetrics",
    "closed_hours_frame",
    "settle_hours",
    "table_hours",
]
