"""Benchmark: the stream processor against a naive per-record handler, same simulated events.

    .venv/bin/python -m benchmarks.stream_handler [--events 3000] [--rate 3] [--small]

Each handler runs on a fresh embedded AWS (moto) with the same seeded catalogue and the same
records, in Lambda-sized batches of 100. Printed: events per second through the handler and
DynamoDB write requests per 1,000 events, and the ratios between the two (targets: >= 10x fewer
writes, >= 5x the throughput). ``--rate`` is the simulated business's peak events per second:
what one 100-record batch spans in event time, and so how much there is to aggregate.
``--small``: 200 events (two batches), for ``make test``.
"""

from __future__ import annotations

import argparse
import resource
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from benchmarks.harness import RequestCounter, embedded_aws, parse_args, print_table, timed
from benchmarks.naive_stream_handler import NaiveHandler
from storepulse.layout import Table, table_name
from storepulse.settings import SettingsStore, load_catalog
from storepulse.simulator.engine import Simulator
from storepulse.simulator.model import BusinessModel
from storepulse.simulator.seed import seed_settings
from storepulse.stream.records import StreamRecord, lambda_event, records_from_event
from storepulse_local.lambda_context import LambdaContext
from storepulse_local.provision import create_tables

START = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # a Saturday morning: the busiest day
BATCH = 100
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/storepulse-bench-events"
ROLE_ARN = "arn:aws:iam::123456789012:role/storepulse-bench"


def simulated_records(count: int, rate: float) -> tuple[BusinessModel, list[StreamRecord]]:
    model = BusinessModel.generate(seed=5, stores=2)
    simulator = Simulator(model, seed=5, start=START, rate=rate)
    records: list[StreamRecord] = []
    end = START + timedelta(days=7)
    # They arrive when the span ends: no event in the future, none older than the default
    # plausibility window (7 days), so the handler counts them all as the naive one does.
    for data, key in simulator.raw_records_between(START, end):
        records.append(
            StreamRecord("shardId-000000000000", str(10**20 + len(records)), key, data, end)
        )
        if len(records) == count:
            break
    return model, records


def provision(model: BusinessModel) -> None:
    create_tables(boto3.client("dynamodb"))
    boto3.client("s3").create_bucket(Bucket="storepulse-bench-lake")
    seed_settings(
        SettingsStore(boto3.resource("dynamodb").Table(table_name(Table.SETTINGS))), model
    )


def run(handler: Any, records: list[StreamRecord]) -> tuple[float, RequestCounter]:
    counter = RequestCounter()
    with counter.counting():
        _, seconds = timed(
            lambda: [
                handler(
                    lambda_event(records[i : i + BATCH], STREAM_ARN, "us-east-1", ROLE_ARN),
                    LambdaContext("bench"),
                )
                for i in range(0, len(records), BATCH)
            ]
        )
    return seconds, counter


def stream_processor_handler() -> Any:
    from storepulse.stream.processor import StreamProcessor, StreamResources

    resources = StreamResources.from_environment(
        {"STOREPULSE_LAKE_BUCKET": "storepulse-bench-lake"}
    )
    processor = StreamProcessor(
        dynamodb=boto3.resource("dynamodb"),
        s3=boto3.client("s3"),
        sns=boto3.client("sns"),
        resources=resources,
    )
    return lambda event, context: processor.process(records_from_event(event))


def naive_handler() -> Any:
    dynamodb = boto3.resource("dynamodb")
    catalog = load_catalog(dynamodb.Table(table_name(Table.SETTINGS)))
    return NaiveHandler(
        dynamodb.Table(table_name(Table.METRICS)),
        dynamodb.Table(table_name(Table.INVENTORY)),
        dynamodb.Table(table_name(Table.FACTS)),
        catalog,
    )


HANDLERS = {"naive (baseline)": naive_handler, "stream processor": stream_processor_handler}
SMALL = {"events": 200}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=3.0)
    args = parse_args(parser, argv, SMALL)
    model, records = simulated_records(args.events, args.rate)
    results = {}
    for name, make in HANDLERS.items():
        with embedded_aws():
            provision(model)
            results[name] = run(make(), records)
    summary = summarise(results, len(records))
    print_report(summary, args.rate)
    return summary


def summarise(results: dict[str, tuple[float, RequestCounter]], events: int) -> dict[str, Any]:
    handlers = {
        name: {
            "events": events,
            "seconds": seconds,
            "events_per_s": events / seconds,
            "dynamodb_writes": counter.dynamodb_writes,
            "writes_per_1k_events": 1000 * counter.dynamodb_writes / events,
        }
        for name, (seconds, counter) in results.items()
    }
    base, ours = handlers.values()
    return {
        "handlers": handlers,
        "fewer_writes": base["dynamodb_writes"] / ours["dynamodb_writes"],
        "throughput": base["seconds"] / ours["seconds"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def print_report(summary: dict[str, Any], rate: float) -> None:
    rows = [
        [
            name,
            row["events"],
            f"{row['seconds']:.1f}",
            f"{row['events_per_s']:.0f}",
            row["dynamodb_writes"],
            f"{row['writes_per_1k_events']:.0f}",
        ]
        for name, row in summary["handlers"].items()
    ]
    print(
        f"{rows[0][1]} simulated events (peak rate {rate}/s), batches of {BATCH}, "
        "embedded AWS (moto)"
    )
    print_table(
        ["handler", "events", "seconds", "events/s", "DynamoDB writes", "writes/1k events"], rows
    )
    print(
        f"write requests: {summary['fewer_writes']:.1f}x fewer (target >= 10x); "
        f"throughput: {summary['throughput']:.1f}x (target >= 5x); "
        f"peak RSS {summary['peak_rss_mib']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
