"""Change capture and hourly compaction: what the lake's freshness costs.

1. **Capture latency**: an order fact written to the facts table (PutItem) until its row is
   readable in ``changes/`` (a Parquet object listed and read back), through the table's stream,
   the local Lambda runtime (mapping window 0, poll interval 0.2 s, as ``make up`` runs it) and
   the change-capture handler (in-process). Beside it, the floor measured in the same run: the
   same row written as Parquet straight to S3 and read back (PutObject + GetObject).
2. **Compaction per hour of demo traffic**: the changes of one hour (orders of two stores at the
   demo's pace, and each order's day-metrics update) compacted into the curated partitions
   (``storepulse.capture.compaction``: read, merge, stage, audit, publish; the Great
   Expectations audit's share shown apart), against the floor of
   writing the same curated rows as Parquet once (``DatasetWriter``).

``python -m benchmarks.change_capture [--writes N] [--orders-per-hour N] [--small]``.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
import uuid
import zipfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq

from benchmarks.harness import (
    embedded_aws,
    latency_cells,
    latency_summary,
    parse_args,
    print_table,
    timed,
)

SMALL = {"writes": 5, "orders_per_hour": 60}
# The demo's two stores at about 2 events/s, of which about one in eight is a sale.
DEMO_ORDERS_PER_HOUR = 900
CAPTURE = "storepulse-dev-change-capture"


def order_item(order_id: str, day: date, at: datetime) -> dict[str, Any]:
    return {
        "pk": f"ORDER#{order_id}",
        "sk": "ORDER",
        "type": "order",
        "order_id": order_id,
        "store_id": "s-001",
        "business_date": day.isoformat(),
        "occurred_at": at.isoformat(),
        "channel": "in_store",
        "currency": "EUR",
        "total": Decimal("4.50"),
        "units": 1,
        "lines": [
            {"sku": "tea", "category": "grocery", "quantity": 1, "unit_price": Decimal("4.50")}
        ],
    }


def _setup() -> tuple[str, dict[str, str]]:
    """Tables with streams, the lake bucket, the capture function and its three mappings."""
    from storepulse.config import settings
    from storepulse_local.iam import LAMBDA_TRUST_POLICY
    from storepulse_local.provision import create_tables

    dynamodb = boto3.client("dynamodb")
    names = create_tables(dynamodb)
    bucket = settings().resource_name("lake")
    boto3.client("s3").create_bucket(Bucket=bucket)
    role = boto3.client("iam").create_role(
        RoleName="capture-bench",
        AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY,
    )["Role"]["Arn"]
    buffer = io.BytesIO()
    zipfile.ZipFile(buffer, "w").close()  # never run: the handler is in-process
    boto3.client("lambda").create_function(
        FunctionName=CAPTURE,
        Runtime="python3.12",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": buffer.getvalue()},
        Timeout=120,
    )
    for table in ("facts", "metrics", "inventory"):
        arn = dynamodb.describe_table(TableName=names[table])["Table"]["LatestStreamArn"]
        boto3.client("lambda").create_event_source_mapping(
            EventSourceArn=arn,
            FunctionName=CAPTURE,
            StartingPosition="TRIM_HORIZON",
            BatchSize=1000,
            MaximumBatchingWindowInSeconds=0,
            FunctionResponseTypes=["ReportBatchItemFailures"],
            BisectBatchOnFunctionError=True,
        )
    return bucket, names


def _capture_handler(bucket: str) -> Any:
    from storepulse.capture.changes import decode_record
    from storepulse.capture.sink import ChangeSink

    sink = ChangeSink(boto3.client("s3"), bucket)
    return lambda event, _context: {
        "batchItemFailures": [
            {"itemIdentifier": s}
            for s in sink.write(event["Records"], decode_record).failed_sequence_numbers
        ]
    }


def _row_visible(s3: Any, bucket: str, order_id: str, seen: set[str]) -> bool:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="changes/facts/")
    for entry in listing.get("Contents", []):
        key = entry["Key"]
        if "/orders/" not in key or key in seen:
            continue
        seen.add(key)
        table = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
        if order_id in table.column("order_id").to_pylist():
            return True
    return False


def measure_capture(bucket: str, facts: str, writes: int) -> list[float]:
    from storepulse_local.lambda_runtime import LocalLambdaRuntime

    table, s3 = boto3.resource("dynamodb").Table(facts), boto3.client("s3")
    latencies: list[float] = []
    seen: set[str] = set()
    with tempfile.TemporaryDirectory() as state:
        runtime = LocalLambdaRuntime(
            handlers={CAPTURE: _capture_handler(bucket)},
            state_dir=Path(state),
            discovery_interval=0.5,
        )
        with runtime:
            time.sleep(1.5)  # the runtime finds the mappings and their shards
            for _ in range(writes + 1):
                now = datetime.now(UTC)
                order_id = f"o-{uuid.uuid4().hex[:8]}"
                started = time.perf_counter()
                table.put_item(Item=order_item(order_id, now.date(), now))
                while not _row_visible(s3, bucket, order_id, seen):
                    time.sleep(0.02)
                latencies.append(time.perf_counter() - started)
    return latencies[1:]  # the first is the cold start (imports, first S3 connection)


def measure_floor(bucket: str, samples: int) -> list[float]:
    """One row as Parquet, PutObject then GetObject and read: the least a capture can cost."""
    from storepulse.capture.changes import changes_table
    from storepulse.export.datasets import DATASETS

    s3 = boto3.client("s3")
    dataset = DATASETS["orders"]
    now = datetime.now(UTC)
    row = {
        **_order_row(now),
        "_op": "INSERT",
        "_pk": "ORDER#x",
        "_sk": "ORDER",
        "_changed_at": now,
        "_stream": "floor",
        "_sequence_number": "1",
        "_event_id": "e",
    }
    latencies = []
    for number in range(samples):
        started = time.perf_counter()
        buffer = io.BytesIO()
        pq.write_table(changes_table(dataset, [row]), buffer)
        s3.put_object(Bucket=bucket, Key=f"floor/{number}.parquet", Body=buffer.getvalue())
        body = s3.get_object(Bucket=bucket, Key=f"floor/{number}.parquet")["Body"].read()
        pq.read_table(io.BytesIO(body))
        latencies.append(time.perf_counter() - started)
    return latencies


def _order_row(now: datetime) -> dict[str, Any]:
    from storepulse.export.datasets import order_row

    return order_row(order_item("x", now.date(), now))


def _hour_of_changes(bucket: str, orders: int, hour: datetime) -> None:
    """An hour of demo traffic as the capture writes it: each order's INSERT, batched as the
    runtime would (100 changes an object), straight through the sink."""
    from boto3.dynamodb.types import TypeSerializer

    from storepulse.capture.changes import decode_record
    from storepulse.capture.sink import ChangeSink

    serialize = TypeSerializer().serialize
    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/storepulse-dev-facts/stream/bench"
    sink = ChangeSink(boto3.client("s3"), bucket)
    records = []
    for number in range(orders):
        at = hour + timedelta(seconds=number * 3600 / orders)
        item = order_item(f"h-{number:06d}", at.date(), at)
        records.append(
            {
                "eventID": str(number),
                "eventName": "INSERT",
                "eventSourceARN": arn,
                "dynamodb": {
                    "ApproximateCreationDateTime": int(at.timestamp()),
                    "Keys": {"pk": {"S": item["pk"]}, "sk": {"S": "ORDER"}},
                    "NewImage": {k: serialize(v) for k, v in item.items()},
                    "SequenceNumber": str(10**20 + number),
                },
            }
        )
    for start in range(0, len(records), 100):
        sink.write(records[start : start + 100], decode_record)


def measure_compaction(bucket: str, orders: int) -> dict[str, float]:
    from storepulse.capture.audit import CompactionAudit, HourMetrics
    from storepulse.capture.compaction import Compactor
    from storepulse.export.datasets import DATASETS
    from storepulse.export.quality import Reference
    from storepulse.export.writer import DatasetWriter
    from storepulse.lake.filesystem import s3_filesystem
    from storepulse.layout import utc_hour

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    _hour_of_changes(bucket, orders, hour)
    fs = s3_filesystem()
    # The real-time hour bucket agrees with the orders (what a healthy stack reads).
    bucket_of_hour = {utc_hour(hour): HourMetrics(orders, Decimal("4.50") * orders)}
    audit = CompactionAudit(
        fs,
        bucket,
        Reference(frozenset({"s-001"}), frozenset({"EUR"})),
        lambda store, day: bucket_of_hour if store == "s-001" else {},
        lambda day: [],  # never read: the hour agrees
        run_id="bench",
    )
    audit_seconds: list[float] = []

    def timed_audit(*args: Any) -> Any:
        result, seconds = timed(lambda: audit(*args))
        audit_seconds.append(seconds)
        assert result.success, result.summary()
        return result

    # Great Expectations' import, paid once per task process, apart from the audit itself.
    _, import_seconds = timed(lambda: __import__("great_expectations"))
    compactor = Compactor(boto3.client("s3"), fs, bucket, run_id="bench", audit=timed_audit)
    compacted, seconds = timed(lambda: compactor.compact([(hour.date(), hour.hour)]))
    rows = [
        _order_row(hour + timedelta(seconds=n * 3600 / orders)) | {"order_id": f"h-{n:06d}"}
        for n in range(orders)
    ]
    orders_set = DATASETS["orders"]

    def write_once() -> None:
        with DatasetWriter(
            f"{bucket}/floor/orders", orders_set.schema, sort_by=orders_set.key, filesystem=fs
        ) as writer:
            writer.extend(rows)
            writer.close()

    _, floor = timed(write_once)
    return {
        "orders": float(orders),
        "partitions": float(len(compacted)),
        "compaction_s": seconds,
        "audit_s": sum(audit_seconds),
        "ge_import_s": import_seconds,
        "floor_s": floor,
        "over_floor": seconds / floor,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=30, help="table writes timed one by one")
    parser.add_argument("--orders-per-hour", type=int, default=DEMO_ORDERS_PER_HOUR)
    args = parse_args(parser, argv, SMALL)
    with embedded_aws():
        bucket, names = _setup()
        capture = latency_summary(measure_capture(bucket, names["facts"], args.writes))
        floor = latency_summary(measure_floor(bucket, max(args.writes, 5)))
        compaction = measure_compaction(bucket, args.orders_per_hour)
    result = {
        "capture": capture,
        "floor": floor,
        "capture_over_floor": capture["p50_ms"] / floor["p50_ms"],
        "compaction": compaction,
    }
    print_table(
        ["path", "samples", "p50 ms", "p95 ms"],
        [
            ["PutItem -> row readable in changes/", *latency_cells(capture)],
            ["floor: Parquet PutObject -> read", *latency_cells(floor)],
        ],
    )
    print(f"capture p50 is {result['capture_over_floor']:.1f}x the floor")
    print(f"Great Expectations' import (once per task process): {compaction['ge_import_s']:.2f} s")
    print_table(
        ["compaction", "orders", "partitions", "seconds", "of which audit", "floor s", "x floor"],
        [
            [
                "one hour of changes, audited",
                int(compaction["orders"]),
                int(compaction["partitions"]),
                f"{compaction['compaction_s']:.2f}",
                f"{compaction['audit_s']:.2f}",
                f"{compaction['floor_s']:.2f}",
                f"{compaction['over_floor']:.1f}",
            ]
        ],
    )
    return result


if __name__ == "__main__":
    main()
