"""Benchmark: the nightly export's strategies against the Amazon provider's DynamoDBToS3Operator.

    .venv/bin/python -m benchmarks.export [--items 50000] [--sizes 50000,200000] [--small]
        [--conversion-items 200000] [--conversion-sizes 100000,1000000] [--check]

First the conversion alone (``benchmarks.export_conversion``): export data files on local disk
to the data sets' rows, per item vs vectorized in the same run, items/s per core (CPU time),
bytes read, peak RSS, identical Parquet; the vectorized path's peak RSS at each
``--conversion-sizes`` (target: flat up to 1M items). Last, a model of what each strategy would
cost on real AWS (``sources.TransferModel``: a native export's fixed minutes vs a scan's read
units) and what strategy ``auto`` picks, at this size and at 1M, 10M, 100M items. The targets
are printed; ``--check`` exits 1 when one is missed.

On a fresh embedded AWS (moto), the facts table is filled with ``--items`` synthetic orders of
one business day, 1-3 lines each (``batch_write_item``; about 1,000 items/s: nested items cost
moto more than the ~3,000/s of flat ones) and the metrics table with the day's store and
sales-mix items. Then, each in a subprocess of its own (moto serves from this process), the same
two tables are exported by:

- **pitr**: DynamoDB's point-in-time export, streamed from S3 and staged as the day's Parquet
  partitions of every data set (``publish.stage_export``: vectorized, zstd, sorted);
- **scan**: a parallel, consistent scan staged the same way (identical Parquet);
- **DynamoDBToS3Operator**: the provider's scan to JSON lines (``execute`` with an empty
  context, ``file_size`` 128 MB so it writes one file per table like our writer would).

Printed per strategy: wall time of the export (imports excluded, moto's own export work
included), the worker's peak RSS and its growth over the RSS after imports, bytes written to
S3; then the ratios against the operator (targets: pitr at least 3x faster, output at least 4x
smaller). Peak RSS is ``VmHWM``, not ``getrusage``: see :func:`peak_rss`. ``--sizes`` also runs
the default strategy on the table at each size (filled up incrementally, same day) and prints its
peak memory per size (target: no growth with table size). ``--strategies`` picks strategies.

Measured on this 2-core machine: the default invocation takes about 5.5 minutes (fill ~55 s,
pitr ~9 s, scan ~125 s, operator ~117 s: moto serialises Scan responses of nested items at
about 2.5 ms per item, which is what the two scan-based strategies pay);
``--strategies pitr --sizes 50000,200000`` about 5 minutes (most of it filling 200k items).
``--small``: 300 orders (3,000 for the conversion), for ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from benchmarks import export_conversion
from benchmarks.harness import embedded_aws, parse_args, print_table, timed
from storepulse.config import REPO_ROOT
from storepulse.export.dynamodb_json import serialize_item
from storepulse.layout import Table, orders_of_day, table_name
from storepulse_local.provision import create_tables

DAY = date(2026, 11, 27)
BUCKET = "storepulse-bench-lake"
TABLES = (Table.FACTS, Table.METRICS)
STORES = ("s-001", "s-002", "s-003")
CATALOGUE = [(f"sku-{n:03d}", ("grocery", "kitchen", "garden")[n % 3]) for n in range(60)]
WRITE_BATCH = 25  # DynamoDB's limit per BatchWriteItem
# moto takes seconds to answer one Scan page of nested items, minutes on a loaded machine:
# the workers' clients wait that long (botocore's default is 60 s), so load slows them down
# instead of failing the run.
READ_TIMEOUT = 900


# --- synthetic data ----------------------------------------------------------------------------


def order_item(number: int, rng: random.Random) -> dict[str, Any]:
    """An order fact of ``DAY`` as the stream processor writes it (``facts.order_fact``)."""
    store = STORES[number % len(STORES)]
    at = datetime(2026, 11, 27, 7, tzinfo=UTC) + timedelta(seconds=rng.randrange(14 * 3600))
    lines = []
    for sku, category in rng.sample(CATALOGUE, rng.randint(1, 3)):
        price = Decimal(rng.randrange(50, 5000)) / 100
        lines.append(
            {"sku": sku, "category": category, "quantity": rng.randint(1, 4), "unit_price": price}
        )
    order_id = f"o-{number:08d}"
    return {
        "pk": f"ORDER#{order_id}",
        "sk": "ORDER",
        "type": "order",
        "order_id": order_id,
        "event_id": f"e-{number:08d}",
        "store_id": store,
        "business_date": DAY.isoformat(),
        "occurred_at": at.isoformat(),
        "channel": "in_store" if number % 4 else "online",
        "currency": "EUR",
        "customer_id": f"c-{rng.randrange(5000):05d}" if number % 3 else None,
        "employee_id": f"emp-{number % 7}",
        "total": sum((ln["unit_price"] * ln["quantity"] for ln in lines), Decimal("0.00")),
        "units": sum(ln["quantity"] for ln in lines),
        "lines": lines,
        "gsi1pk": orders_of_day(DAY),
        "gsi1sk": f"{store}#ORDER#{order_id}",
        "expires_at": int(at.timestamp()) + 400 * 86400,
        "src": f"shardId-000000000000:{number:020d}",
    }


def metrics_items(rng: random.Random) -> list[dict[str, Any]]:
    """The day's bucket and sales mix per store (values need not add up: no audit here)."""
    items = []
    for store in STORES:
        items.append(
            {
                "pk": f"S#{store}#DAY#{DAY.year}",
                "sk": DAY.isoformat(),
                "revenue": Decimal(rng.randrange(10**6)) / 100,
                "orders": rng.randrange(10**4),
                "units": rng.randrange(10**4),
                "sessions": rng.randrange(10**4),
                "purchases": rng.randrange(10**3),
            }
        )
        mix = {"pk": f"S#{store}#MIX#{DAY.year}", "sk": DAY.isoformat()}
        for sku, category in CATALOGUE:
            mix[f"sku#{sku}#revenue"] = Decimal(rng.randrange(10**5)) / 100
            mix[f"sku#{sku}#units"] = rng.randrange(100)
            mix[f"cat#{category}#units"] = rng.randrange(1000)
        items.append(mix)
    return items


def batch_write(dynamodb: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), WRITE_BATCH):
        requests = [
            {"PutRequest": {"Item": serialize_item({k: v for k, v in i.items() if v is not None})}}
            for i in items[start : start + WRITE_BATCH]
        ]
        pending = {table: requests}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def fill(first: int, last: int) -> float:
    """Orders ``first`` to ``last - 1`` into the facts table; returns the seconds it took."""
    dynamodb = boto3.client("dynamodb")
    rng = random.Random(first)
    started = time.perf_counter()
    chunk = 5_000
    for start in range(first, last, chunk):
        items = [order_item(n, rng) for n in range(start, min(start + chunk, last))]
        batch_write(dynamodb, table_name(Table.FACTS), items)
    return time.perf_counter() - started


def provision() -> None:
    dynamodb = boto3.client("dynamodb")
    create_tables(dynamodb)
    for table in TABLES:
        dynamodb.update_continuous_backups(
            TableName=table_name(table),
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    batch_write(dynamodb, table_name(Table.METRICS), metrics_items(random.Random(1)))


# --- the strategies (run in a worker process each) ---------------------------------------------


def peak_rss() -> int:
    """This process's own peak RSS in bytes: ``VmHWM`` (Linux), which starts afresh at exec.

    Not ``getrusage``: Linux carries ``ru_maxrss`` across exec, so a worker forked from this
    parent (which holds the embedded AWS and the whole table) would report the parent's size,
    and ``RUSAGE_CHILDREN`` reports the same inflated figure."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _prefix_bytes(prefix: str) -> tuple[int, int]:
    s3 = boto3.client("s3")
    total = files = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for entry in page.get("Contents", []):
            total, files = total + entry["Size"], files + 1
    return total, files


def _stage(strategy: str, prefix: str) -> dict[str, int]:
    from storepulse.export.datasets import datasets_of
    from storepulse.export.sources import Backoff, PointInTimeExportSource, ScanSource
    from storepulse.export.staging import stage_export, stage_table
    from storepulse.lake.filesystem import open_filesystem

    config = Config(read_timeout=READ_TIMEOUT)
    dynamodb, s3 = boto3.client("dynamodb", config=config), boto3.client("s3", config=config)
    fs, root = open_filesystem(f"s3://{BUCKET}/{prefix}/staged")
    rows = items = 0
    for table in TABLES:
        name = table_name(table)
        if strategy == "pitr":
            source = PointInTimeExportSource(
                dynamodb,
                s3,
                name,
                BUCKET,
                f"{prefix}/exports/{table.value}",
                backoff=Backoff(first=0.1, maximum=0.5, timeout=300),
            )
            staged = stage_export(s3, source.run(), datasets_of(table), DAY, root, fs)
        else:
            staged = stage_table(
                ScanSource(dynamodb, name).items, datasets_of(table), DAY, root, fs
            )
        rows += sum(s.rows for s in staged.values())
        items += next(iter(staged.values())).items_read
    return {"rows": rows, "items": items}


def _operator(prefix: str) -> dict[str, int]:
    from airflow.providers.amazon.aws.transfers.dynamodb_to_s3 import DynamoDBToS3Operator

    for table in TABLES:
        DynamoDBToS3Operator(
            task_id=f"export_{table.value}",
            dynamodb_table_name=table_name(table),
            s3_bucket_name=BUCKET,
            s3_key_prefix=f"{prefix}/{table.value}/",
            file_size=128 * 1024 * 1024,
        ).execute({})
    return {"rows": 0, "items": 0}


def worker(strategy: str, prefix: str) -> None:
    """Run one strategy; print its numbers as JSON (the parent reads the last line)."""
    if strategy == "operator":
        import airflow.providers.amazon.aws.transfers.dynamodb_to_s3  # noqa: F401  (import cost)
    else:
        import storepulse.export.publish
        import storepulse.export.writer  # noqa: F401  (import cost)
    before = peak_rss()  # after the imports
    work = (
        (lambda: _operator(prefix)) if strategy == "operator" else lambda: _stage(strategy, prefix)
    )
    counts, seconds = timed(work)
    peak = peak_rss()
    output, files = _prefix_bytes(prefix if strategy == "operator" else f"{prefix}/staged")
    result = {
        "seconds": seconds,
        "peak_rss": peak,
        "growth": max(0, peak - before),
        "bytes": output,
        "files": files,
        **counts,
    }
    print(json.dumps(result))


def run_worker(strategy: str, prefix: str) -> dict[str, Any]:
    env = dict(os.environ)
    endpoint = env["AWS_ENDPOINT_URL"]
    env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
        {
            "conn_type": "aws",
            "login": env["AWS_ACCESS_KEY_ID"],
            "password": env["AWS_SECRET_ACCESS_KEY"],
            "extra": {
                "endpoint_url": endpoint,
                "region_name": env["AWS_DEFAULT_REGION"],
                "config_kwargs": {"read_timeout": READ_TIMEOUT},
            },
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.export", "--worker", strategy, "--prefix", prefix],
        env=env,
        cwd=REPO_ROOT,  # where ``-m benchmarks.export`` resolves, whatever the caller's folder
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{strategy} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the comparison ----------------------------------------------------------------------------


def _mib(value: float) -> str:
    return f"{value / 2**20:.0f}"


def _row(name: str, result: dict[str, Any]) -> list[Any]:
    return [
        name,
        f"{result['seconds']:.1f}",
        _mib(result["peak_rss"]),
        _mib(result["growth"]),
        f"{result['bytes']:,}",
        result["files"],
    ]


HEADERS = ["strategy", "seconds", "peak RSS MiB", "growth MiB", "output bytes", "files"]


NAMES = {"pitr": "pitr (vectorized)", "scan": "scan", "operator": "DynamoDBToS3Operator"}


def compare(items: int, strategies: list[str]) -> dict[str, Any]:
    """Each strategy on the table as it is; prints them and returns them with the ratios."""
    results = {s: run_worker(s, f"bench/{s}-{items}") for s in strategies}
    print(f"\n{items:,} orders (+{2 * len(STORES)} metrics items), one business day, embedded AWS")
    print_table(HEADERS, [_row(NAMES[s], r) for s, r in results.items()])
    summary: dict[str, Any] = {"strategies": results}
    ours, theirs, scan = (results.get(k) for k in ("pitr", "operator", "scan"))
    if ours and theirs:
        summary["pitr_vs_operator"] = {
            "faster": theirs["seconds"] / ours["seconds"],
            "smaller": theirs["bytes"] / ours["bytes"],
        }
        print(
            f"pitr vs operator: {summary['pitr_vs_operator']['faster']:.1f}x faster "
            f"(target >= 3x), output {summary['pitr_vs_operator']['smaller']:.1f}x smaller "
            f"(target >= 4x); {ours['rows']:,} Parquet rows in 8 data sets from "
            f"{ours['items']:,} items"
        )
    if ours and scan:
        summary["scan_same_as_pitr"] = (scan["rows"], scan["bytes"]) == (
            ours["rows"],
            ours["bytes"],
        )
        print(f"scan: the same rows and bytes as pitr: {summary['scan_same_as_pitr']}")
    return summary


def report_scaling(results: dict[int, dict[str, Any]]) -> dict[str, float]:
    """pitr's memory at the largest size over the smallest's, beside the ratio of the items."""
    sizes = sorted(results)
    print()
    print_table(HEADERS, [_row(f"pitr, {size:,} orders", results[size]) for size in sizes])
    small, large = results[sizes[0]], results[sizes[-1]]
    ratios = {
        "peak_rss": large["peak_rss"] / small["peak_rss"],
        "growth": large["growth"] / max(small["growth"], 1),
        "items": sizes[-1] / sizes[0],
    }
    print(
        f"pitr at {sizes[-1]:,} / at {sizes[0]:,} orders: peak RSS {ratios['peak_rss']:.2f}x, "
        f"growth during the export {ratios['growth']:.2f}x, for {ratios['items']:.0f}x the "
        "items (target: no growth with table size)"
    )
    return ratios


def measure(items: int, sizes: set[int], strategies: list[str]) -> dict[str, Any]:
    """One table, filled up step by step: the comparison at ``items``, pitr alone at ``sizes``."""
    compared: dict[str, Any] = {}
    scaled: dict[int, dict[str, Any]] = {}
    filled = 0
    for size in sorted(sizes | {items}):
        seconds = fill(filled, size)
        print(f"filled orders {filled:,} to {size:,} in {seconds:.0f} s")
        filled = size
        if size == items:
            compared = compare(size, strategies)
            if "pitr" in compared["strategies"]:
                scaled[size] = compared["strategies"]["pitr"]
        if size in sizes and size not in scaled:
            scaled[size] = run_worker("pitr", f"bench/pitr-{size}")
    if len(sizes) > 1:
        compared["scaling"] = report_scaling({size: scaled[size] for size in sizes})
    return compared


SMALL = {"items": 300, "conversion_items": 3_000, "conversion_sizes": "3000,6000"}


def cost_model(sizes: list[int], item_bytes: int) -> dict[str, Any]:
    """What the two strategies would cost on AWS (``sources.TransferModel``) at each size, and
    which one strategy ``auto`` picks: beside the embedded numbers, which model neither."""
    from storepulse.export.sources import TransferModel, choose_strategy

    model, rows, picked = TransferModel(), [], {}
    for items in sizes:
        size = items * item_bytes
        units = model.scan_read_units(items, size)
        table = {"ItemCount": items, "TableSizeBytes": size}
        picked[str(items)] = choose_strategy(table, pitr_enabled=True, model=model).strategy
        rows.append(
            [
                f"{items:,}",
                f"{size / 1e6:,.0f}",
                f"{model.export_seconds(size) / 60:.1f}",
                f"${model.export_usd(size)}",
                f"{model.scan_seconds(size) / 60:.1f}",
                f"{units:,}",
                f"${model.scan_usd(units)}",
                picked[str(items)],
            ]
        )
    print(
        f"\nmodel of real AWS ({item_bytes} bytes an item; fixed export cost "
        f"{model.export_fixed_seconds / 60:.0f} min, scan {model.scan_segments} segments)"
    )
    headers = ["items", "MB", "export min", "export $", "scan min", "read units", "scan $", "auto"]
    print_table(headers, rows)
    return picked


def check_targets(summary: dict[str, Any]) -> list[str]:
    """Every target missed by the run (empty: all met)."""
    missed = list(export_conversion.targets(summary["conversion"]))
    versus = summary.get("pitr_vs_operator")
    if versus and versus["faster"] < 3:
        missed.append(f"pitr only {versus['faster']:.1f}x faster than the operator (< 3x)")
    if versus and versus["smaller"] < 4:
        missed.append(f"output only {versus['smaller']:.1f}x smaller than the operator's (< 4x)")
    if summary.get("scan_same_as_pitr") is False:
        missed.append("scan and pitr staged different files")
    return missed


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """The comparison's numbers (None for a ``--worker``, which prints its own as JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000, help="orders in the facts table")
    parser.add_argument("--sizes", default="", help="e.g. 50000,200000: pitr memory per size")
    parser.add_argument(
        "--strategies", default="pitr,scan,operator", help="which to compare (default: all three)"
    )
    parser.add_argument("--conversion-items", type=int, default=200_000)
    parser.add_argument(
        "--conversion-sizes", default="100000,1000000", help="vectorized conversion memory"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parse_args(parser, argv, SMALL)
    if args.worker:
        worker(args.worker, args.prefix)
        return None
    sizes = {int(s) for s in args.sizes.split(",") if s.strip()}
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip() in NAMES]
    started = time.perf_counter()
    conversion_sizes = [int(s) for s in args.conversion_sizes.split(",") if s.strip()]
    conversion = export_conversion.measure(args.conversion_items, conversion_sizes)
    with embedded_aws():
        provision()
        summary = measure(args.items, sizes, strategies)
    summary["conversion"] = conversion
    item_bytes = conversion["json_bytes"] // conversion["items"]
    summary["cost_model"] = cost_model([args.items, 10**6, 10**7, 10**8], item_bytes)
    summary["missed"] = check_targets(summary)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    for miss in summary["missed"]:
        print(f"TARGET MISSED: {miss}")
    if args.check and summary["missed"]:
        raise SystemExit(1)
    return summary


if __name__ == "__main__":
    main()
