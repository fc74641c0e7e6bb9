"""Benchmark: what the embedded AWS's persistence costs (``storepulse_local.persistence``).

    .venv/bin/python -m benchmarks.persistence [--events 414000,1000000] [--small]

For each size: that many events of the demo business (seed 7, 2 stores, the simulator's peak
rate of ``make up``: one simulated week is about 414,000 events) are put into a Kinesis stream
(PutRecords, 500 a call) and processed by the stream processor into the tables and the lake, on
an embedded AWS that keeps its state in a temporary directory. Printed: the snapshot's size, the
time requests are held (the fork), the time until the forked child has it on disk (pickle, write,
fsync), the pickle's time in-process (what requests would wait without the fork), the time to
read it back (unpickle and install), and the restart of a new embedded AWS process on it (until
it answers). Beside them, the mutating requests that built the state: what a log of requests
would replay at every start. ``--small``: 2,000 events, for ``make test``.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
import urllib.error
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from benchmarks.harness import embedded_aws, parse_args, print_table, timed
from storepulse.config import LOOPBACK
from storepulse.layout import Table, table_name
from storepulse.settings_store import SettingsStore
from storepulse.simulator.engine import Simulator
from storepulse.simulator.model import BusinessModel
from storepulse.simulator.seed import seed_settings
from storepulse.stream.records import StreamRecord, lambda_event, records_from_event
from storepulse_local.embedded_aws import is_healthy
from storepulse_local.lambda_context import LambdaContext
from storepulse_local.persistence import QUIET_TIMEOUT, install_moto_state, load
from storepulse_local.provision import create_tables

SEED, STORES, RATE = 7, 2, 2.0  # the demo of `make up` (storepulse_local.platform.realtime)
STREAM = "storepulse-bench-events"
START = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # a Saturday morning: the busiest day
BATCH = 100
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/storepulse-bench-events"
ROLE_ARN = "arn:aws:iam::123456789012:role/storepulse-bench"
PUT_BATCH = 500
SMALL = {"events": "2000"}


def provision(model: BusinessModel) -> None:
    create_tables(boto3.client("dynamodb"))
    boto3.client("s3").create_bucket(Bucket="storepulse-bench-lake")
    seed_settings(
        SettingsStore(boto3.resource("dynamodb").Table(table_name(Table.SETTINGS))), model
    )


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


def demo_records(count: int) -> list[tuple[bytes, str]]:
    """``count`` events of the demo business, a week after another from START on."""
    model = BusinessModel.generate(seed=SEED, stores=STORES)
    simulator = Simulator(model, seed=SEED, start=START, rate=RATE)
    records: list[tuple[bytes, str]] = []
    week = 0
    while len(records) < count:
        begin = START + timedelta(days=7 * week)
        for data, key in simulator.raw_records_between(begin, begin + timedelta(days=7)):
            records.append((data, key))
            if len(records) == count:
                break
        week += 1
    return records


def fill(records: list[tuple[bytes, str]]) -> None:
    """Into the stream, then through the stream processor (as the runtime would deliver it)."""
    provision(BusinessModel.generate(seed=SEED, stores=STORES))
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=STREAM, ShardCount=1)
    for i in range(0, len(records), PUT_BATCH):
        entries = [{"Data": d, "PartitionKey": k} for d, k in records[i : i + PUT_BATCH]]
        kinesis.put_records(StreamName=STREAM, Records=entries)
    handler = stream_processor_handler()
    arrival = START + timedelta(days=7)
    stream_records = [
        StreamRecord("shardId-000000000000", str(10**20 + n), key, data, arrival)
        for n, (data, key) in enumerate(records)
    ]
    for i in range(0, len(stream_records), BATCH):
        event = lambda_event(stream_records[i : i + BATCH], STREAM_ARN, "us-east-1", ROLE_ARN)
        handler(event, LambdaContext("bench"))


def measure(events: int, state_dir: Path) -> dict[str, Any]:
    records = demo_records(events)
    with embedded_aws(state_dir) as server:
        _, fill_seconds = timed(lambda: fill(records))
        persistence = server.persistence
        runs = []
        for _ in range(3):  # the median of three: a shared machine is noisy
            persistence.snapshot(QUIET_TIMEOUT, force=True)  # forked, as the periodic ones
            runs.append(dataclasses.replace(persistence.stats))
        stats = sorted(runs, key=lambda run: run.last_seconds)[1]
        _, pickle_seconds = timed(persistence.take)  # what requests would wait without a fork
        mutations = persistence.gate.mutations
    snapshot, load_seconds = timed(lambda: load(persistence.path, state_dir))
    _, install_seconds = timed(lambda: install_moto_state(snapshot.moto))
    return {
        "events": events,
        "snapshot_mib": stats.last_bytes / 2**20,
        "held_s": stats.held_seconds,
        "snapshot_s": stats.last_seconds,
        "pickle_s": pickle_seconds,
        "restore_s": load_seconds + install_seconds,
        "restart_s": restart_seconds(state_dir),
        "mutating_requests": mutations,
        "fill_s": fill_seconds,
    }


def restart_seconds(state_dir: Path) -> float:
    """A new embedded AWS process on the snapshot, from its start until it answers."""
    port = _free_port()
    argv = [sys.executable, "-m", "storepulse_local.embedded_aws", "--port", str(port)]
    started = time.perf_counter()
    process = subprocess.Popen(
        [*argv, "--state-dir", str(state_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not is_healthy(f"http://{LOOPBACK}:{port}"):
            if process.poll() is not None:
                raise RuntimeError(f"the embedded AWS exited ({process.returncode})")
            time.sleep(0.05)
        return time.perf_counter() - started
    except urllib.error.URLError as exc:
        raise RuntimeError(f"the embedded AWS did not answer: {exc}") from exc
    finally:
        process.kill()
        process.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="414000,1000000", help="sizes, comma-separated")
    args = parse_args(parser, argv, SMALL)
    sizes = [int(size) for size in args.events.split(",")]
    results = []
    for events in sizes:
        with tempfile.TemporaryDirectory(prefix="storepulse-bench-") as state_dir:
            results.append(measure(events, Path(state_dir)))
    print_report(results)
    return {"sizes": results}


def print_report(results: list[dict[str, Any]]) -> None:
    print(
        f"demo business (seed {SEED}, {STORES} stores, peak {RATE}/s; a week ~414,000 events): "
        "stream + tables + lake, one snapshot"
    )
    rows = [
        [
            r["events"],
            f"{r['snapshot_mib']:.1f}",
            f"{r['held_s']:.3f}",
            f"{r['snapshot_s']:.2f}",
            f"{r['pickle_s']:.2f}",
            f"{r['restore_s']:.2f}",
            f"{r['restart_s']:.1f}",
            r["mutating_requests"],
            f"{r['fill_s']:.0f}",
        ]
        for r in results
    ]
    headers = [
        "events",
        "snapshot MiB",
        "requests held s (fork)",
        "snapshot s (child)",
        "pickle s (in-process)",
        "restore s",
        "restart s",
        "mutating requests (a log)",
        "s to build",
    ]
    print_table(headers, rows)


if __name__ == "__main__":
    main()
