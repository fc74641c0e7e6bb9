"""Benchmark: billed DynamoDB write units per 1,000 events as a function of the batch size the
event source mapping delivers, stream processor against the per-record baseline, same events.

    .venv/bin/python -m benchmarks.write_cost [--rates 3,10,100] [--polls 0.2,1]
        [--events 200] [--small]

The stream benchmark (``benchmarks.stream_handler``) measures the bill through the local Lambda
runtime, where the batch sizes come out of the machine's speed: on a loaded machine the runtime
polls late and hands the handler bigger batches, which bills fewer units per event. This one
takes timing out: a batch holds what arrives in one poll interval at the rate (``rate * poll``
records, at least one), and the handler is called in-process on the embedded AWS, whose bill
(``billing``) is counted per item. No timing is reported, so the numbers are the same on a quiet
and on a loaded machine. Poll intervals: 0.2 s (the local runtime, ``make up``) and 1 s (a
shared-throughput mapping on AWS, batching window 0).

Printed per (rate, batch size): billed write units and items per 1,000 events for both handlers,
the ratio, and our units by item kind: what each part of the layout costs at that batch size,
with the units no counter layout can save (facts, dedupe memory, stock levels) and the best
ratio they leave: the ceiling of any change to the metrics items alone.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from benchmarks.billing import WriteBilling
from benchmarks.harness import NOW, embedded_aws, parse_args, print_table
from benchmarks.naive_stream_handler import NaiveHandler
from benchmarks.stream_handler import Traffic
from storepulse.layout import Table, table_name
from storepulse.settings import SettingsStore, load_catalog
from storepulse.simulator.model import BusinessModel
from storepulse.simulator.seed import seed_settings
from storepulse.stream.archive import LakeArchive
from storepulse.stream.processor import StreamProcessor, StreamResources
from storepulse.stream.records import StreamRecord, lambda_event
from storepulse_local.provision import create_tables

SHARD = "shardId-000000000000"
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/bench"
ROLE_ARN = "arn:aws:iam::123456789012:role/bench"
LAKE = "bench-lake"
SMALL = {"rates": "10", "polls": "0.2", "events": 10}
# One item per order, refund and profile, and per level item a batch changes (a store's stock
# levels are packed into ~1 KB items since 2026-12, ``storepulse.stock_levels``; sessions are
# remembered per shard and batch: ``facts SESSIONS``).
IDENTITY_KINDS = frozenset({"facts ORDER", "facts REFUND", "facts CUSTOMER", "inventory"})


def _provision(model: BusinessModel) -> dict[str, Any]:
    create_tables(boto3.client("dynamodb"))
    boto3.client("s3").create_bucket(Bucket=LAKE)
    dynamodb = boto3.resource("dynamodb")
    tables = {t.value: dynamodb.Table(table_name(t)) for t in Table}
    seed_settings(SettingsStore(tables["settings"]), model)
    return tables


def _records(events: list[bytes]) -> list[StreamRecord]:
    """The events as one shard delivers them, each arriving 100 ms after it happened."""
    return [
        StreamRecord(
            SHARD,
            str(10**20 + i),
            "bench",
            data,
            datetime.fromisoformat(json.loads(data)["occurred_at"]) + timedelta(seconds=0.1),
        )
        for i, data in enumerate(events)
    ]


def _ours(tables: dict[str, Any], batches: list[list[StreamRecord]]) -> None:
    resources = StreamResources(
        metrics_table=tables["metrics"].name,
        inventory_table=tables["inventory"].name,
        facts_table=tables["facts"].name,
        settings_table=tables["settings"].name,
        lake_bucket=LAKE,
        alert_topic_arn=None,
    )
    processor = StreamProcessor(
        dynamodb=boto3.resource("dynamodb"),
        s3=boto3.client("s3"),
        sns=boto3.client("sns"),
        resources=resources,
    )
    for batch in batches:
        if processor.process(batch).failed_sequence_numbers:
            raise RuntimeError("a batch failed: the bill would count its retry")


def _baseline(tables: dict[str, Any], batches: list[list[StreamRecord]]) -> None:
    archive = LakeArchive(boto3.client("s3"), LAKE)
    naive = NaiveHandler(tables, archive, load_catalog(tables["settings"]))
    for batch in batches:
        naive(lambda_event(batch, STREAM_ARN, "us-east-1", ROLE_ARN), None)


def measure(server: Any, model: BusinessModel, events: list[bytes], batch: int) -> dict[str, Any]:
    """Both handlers over the same events, each on fresh tables."""
    records = _records(events)
    batches = [records[i : i + batch] for i in range(0, len(records), batch)]
    per_1k = 1000 / len(events)
    result: dict[str, Any] = {}
    for name, run in (("baseline", _baseline), ("ours", _ours)):
        server.reset()
        tables = _provision(model)
        billing = WriteBilling()
        with billing.recording():
            run(tables, batches)
        result[name] = {
            "wcu_per_1k": billing.total_units * per_1k,
            "items_per_1k": billing.total_items * per_1k,
            "by_kind": {k: v * per_1k for k, v in billing.units.items()},
        }
    return result


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="3,10,100", help="events per second")
    parser.add_argument("--polls", default="0.2,1", help="seconds between polls of the shard")
    parser.add_argument("--events", type=int, default=200, help="events per run")
    args = parse_args(parser, argv, SMALL)
    scenarios = sorted(
        {
            (float(rate), max(1, round(float(rate) * float(poll))))
            for rate in args.rates.split(",")
            for poll in args.polls.split(",")
        }
    )
    rows = []
    with embedded_aws() as server:
        model = BusinessModel.generate()
        traffic = Traffic(model, NOW.astimezone(UTC))
        for rate, batch in scenarios:
            events = traffic.next_run(rate, args.events)
            rows.append({"rate": rate, "batch": batch, **measure(server, model, events, batch)})
    print_report(rows)
    return rows


def print_report(rows: list[dict[str, Any]]) -> None:
    print("billed DynamoDB write units per 1,000 events, by batch size (in-process, no timing)")
    print_table(
        ["ev/s", "batch", "baseline WCU/1k", "ours WCU/1k", "fewer", "ours items/1k"],
        [
            [
                f"{r['rate']:g}",
                r["batch"],
                f"{r['baseline']['wcu_per_1k']:.0f}",
                f"{r['ours']['wcu_per_1k']:.0f}",
                f"{r['baseline']['wcu_per_1k'] / r['ours']['wcu_per_1k']:.1f}x",
                f"{r['ours']['items_per_1k']:.0f}",
            ]
            for r in rows
        ],
    )
    for r in rows:
        kinds = sorted(r["ours"]["by_kind"].items(), key=lambda kv: -kv[1])
        print(
            f"ours at {r['rate']:g} ev/s, batch {r['batch']}: "
            + ", ".join(f"{k} {v:.0f}" for k, v in kinds)
        )
        # What no counter layout can save: facts, dedupe memory and stock levels.
        floor = sum(v for k, v in r["ours"]["by_kind"].items() if not k.startswith("metrics"))
        print(
            f"  without any counter write: {floor:.0f} WCU/1k, at most "
            f"{r['baseline']['wcu_per_1k'] / floor:.1f}x fewer than the baseline"
        )
        # One item per identity (an order, a refund, a profile) and per level item a batch
        # changes: what any layout that keys facts by identity pays.
        identity = sum(v for k, v in r["ours"]["by_kind"].items() if k in IDENTITY_KINDS)
        print(
            f"  one item per order, refund, profile and level item: {identity:.0f} "
            f"WCU/1k, at most {r['baseline']['wcu_per_1k'] / identity:.1f}x fewer"
        )


if __name__ == "__main__":
    main()
