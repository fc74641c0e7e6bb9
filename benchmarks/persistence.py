"""Benchmark: what the embedded AWS's persistence costs (``storepulse_local.persistence``).

    .venv/bin/python -m benchmarks.persistence [--events 5000] [--small]
    make bench-persistence    # a simulated week (414,000 events) and a million: hours

For each size: that many events of the demo business (seed 7, 2 stores, the simulator's peak
rate of ``make up``: one simulated week is about 414,000 events) on an embedded AWS that keeps
its state in a temporary directory. Printed: the snapshot's size, the time requests are held (the
fork), the time until the forked child has it on disk (pickle, write, fsync), the pickle's time
in-process (what requests would wait without the fork), the time to read it back (unpickle and
install), the restart of a new embedded AWS process on it (until it answers) and its memory.
Beside them, the mutating requests that built the state: what a log of requests would replay at
every start. ``--small``: 2,000 events, for ``make test``.

How the state is built: the records are written into moto's Kinesis shard in-process (the same
``Record`` objects PutRecords makes, without its scan of the whole shard at every put: 1.3 s a
put of 500 at 100,000 records, growing with the shard), and the real stream processor counts
them, one simulated day after another (each day arriving at its end, inside the plausibility
window), in the deployed batches of 100. The processor is the slow part and is not shortcut:
about 35-50 events/s on this shared 2-core machine (client-side botocore validation and
serialization, moto's request handling; batches of 10,000 were no faster), so a week takes hours.
Snapshot, restore and restart are measured as they run.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import subprocess
import sys
import tempfile
import time
import urllib.error
from base64 import b64encode
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import boto3
import psutil
from moto.kinesis.models import Record

from benchmarks.harness import embedded_aws, parse_args, print_table, timed
from storepulse.config import LOOPBACK
from storepulse.layout import Table, table_name
from storepulse.settings import SettingsStore
from storepulse.simulator.engine import Simulator
from storepulse.simulator.model import BusinessModel
from storepulse.simulator.seed import seed_settings
from storepulse.stream.records import StreamRecord, lambda_event, records_from_event
from storepulse_local.embedded_aws import is_healthy
from storepulse_local.lambda_context import LambdaContext
from storepulse_local.persistence import QUIET_TIMEOUT, install_moto_state, load
from storepulse_local.provision import create_tables

SEED, STORES, RATE = 7, 2, 2.0  # the demo of `make up` (storepulse_local.platform.realtime)
STREAM, SHARD = "storepulse-bench-events", "shardId-000000000000"
BUILD_BATCH = 100  # the stack's BatchSize (infra/cloudformation/parameters/dev.json)
DAY = timedelta(days=1)
SMALL = {"events": "2000"}
START = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # a Saturday morning: the busiest day
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/storepulse-bench-events"
ROLE_ARN = "arn:aws:iam::123456789012:role/storepulse-bench"


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


def demo_days(count: int) -> Iterator[tuple[datetime, list[tuple[bytes, str]]]]:
    """``count`` events of the demo business, one simulated day after another from START on:
    (the day's end, its (payload, partition key) records)."""
    model = BusinessModel.generate(seed=SEED, stores=STORES)
    simulator = Simulator(model, seed=SEED, start=START, rate=RATE)
    day, left = START, count
    while left > 0:
        records = list(islice(simulator.raw_records_between(day, day + DAY), left))
        left -= len(records)
        day += DAY
        yield day, records


def fill(events: int) -> None:
    """Into the stream's shard, then through the stream processor, day by day."""
    provision(BusinessModel.generate(seed=SEED, stores=STORES))
    boto3.client("kinesis").create_stream(StreamName=STREAM, ShardCount=1)
    shard = _the_shard()
    handler = stream_processor_handler()
    for arrival, records in demo_days(events):
        first = len(shard.records) + 1
        batch = [
            StreamRecord(SHARD, str(first + n), key, data, arrival)
            for n, (data, key) in enumerate(records)
        ]
        _append(shard, batch)
        for i in range(0, len(batch), BUILD_BATCH):
            event = lambda_event(batch[i : i + BUILD_BATCH], STREAM_ARN, "us-east-1", ROLE_ARN)
            handler(event, LambdaContext("bench"))


def _append(shard: Any, records: list[StreamRecord]) -> None:
    for record in records:
        number = int(record.sequence_number)
        data = b64encode(record.data).decode()  # as moto keeps what PutRecords received
        shard.records[number] = Record(record.partition_key, data, number, "")


def _the_shard() -> Any:
    """The stream's one shard in moto's backend (this process serves the embedded AWS)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.kinesis.models import kinesis_backends

    stream = kinesis_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].describe_stream(
        stream_arn=None, stream_name=STREAM
    )
    (shard,) = stream.shards.values()
    return shard


def measure(events: int, state_dir: Path) -> dict[str, Any]:
    with embedded_aws(state_dir) as server:
        _, fill_seconds = timed(lambda: fill(events))
        persistence = server.persistence
        runs = []
        for _ in range(3):  # the median of three: a shared machine is noisy
            persistence.snapshot(QUIET_TIMEOUT, force=True)  # forked, as the periodic ones
            runs.append(dataclasses.replace(persistence.stats))
        stats = sorted(runs, key=lambda run: run.last_seconds)[1]
        _, pickle_seconds = timed(persistence.take)  # what requests would wait without a fork
        mutations = persistence.gate.mutations
    restore = restore_seconds(persistence.path, state_dir)
    restart, restart_mib = restart_seconds(state_dir)
    return {
        "events": events,
        "snapshot_mib": stats.last_bytes / 2**20,
        "held_s": stats.held_seconds,
        "snapshot_s": stats.last_seconds,
        "pickle_s": pickle_seconds,
        "restore_s": restore,
        "restart_s": restart,
        "restart_mib": restart_mib,
        "bench_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "mutating_requests": mutations,
        "fill_s": fill_seconds,
    }


def restore_seconds(path: Path, state_dir: Path) -> float:
    """Read, unpickle and install the snapshot, in this process."""
    started = time.perf_counter()
    snapshot = load(path, state_dir)
    assert snapshot is not None
    install_moto_state(snapshot.moto)
    return time.perf_counter() - started


def restart_seconds(state_dir: Path) -> tuple[float, float]:
    """A new embedded AWS process on the snapshot, from its start until it answers; and its
    resident memory then (MiB)."""
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
        seconds = time.perf_counter() - started
        return seconds, psutil.Process(process.pid).memory_info().rss / 2**20
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
    parser.add_argument("--events", default="5000", help="sizes, comma-separated")
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
            f"{r['restart_mib']:.0f}",
            f"{r['bench_peak_mib']:.0f}",
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
        "restarted MiB (RSS)",
        "builder peak MiB",
        "mutating requests (a log)",
        "s to build",
    ]
    print_table(headers, rows)


if __name__ == "__main__":
    main()
