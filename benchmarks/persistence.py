"""Benchmark: what the embedded AWS's persistence costs (``storepulse_local.persistence``).

    .venv/bin/python -m benchmarks.persistence [--events 5000] [--sample 2000] [--small]
    make bench-persistence    # a simulated week (414,000 events) and a million

The state of that many events of the demo business (seed 7, 2 stores, the simulator's peak
rate of ``make up``: one simulated week is about 414,000 events) on an embedded AWS that keeps
its state in a temporary directory. Printed per size: the snapshot's size, the time a periodic
snapshot holds requests (the fork), the time to pickle it, write and fsync it (what the forked
writer does, and the final snapshot at a stop in-process), a new embedded AWS process's restore
(unpickle and install, from its log) and start until it answers, its resident and peak memory;
and the cost
of one Kinesis poll and put on the shard as it is, moto's walk against the embedded AWS's
look-up (``storepulse_local.kinesis``). ``--small``: 300 and 600 events, for ``make test``.

How the state is built: ``--sample`` events (2,000) are written into moto's Kinesis shard
in-process (the same ``Record`` objects PutRecords makes) and counted by the real stream
processor, one simulated day after another, in the deployed batches of 100: about 13 events/s
on this shared 2-core machine at a load of 20 (client-side botocore, moto's request handling),
so a week that way would take 9 hours and a million 21. The rest is built from that processed
sample, in moto's backends: copies of its stream records, of the items of every table but the
settings, of each table's recovery history (point-in-time recovery keeps 35 days) and stream
records, and of the lake's objects, under new keys, each copy made of new objects (a pickle
writes a shared object once). The sizes are multiples of the sample. The Kinesis stream and the
tables' streams keep one day of records at most (``DAY_EVENTS``), as their retention period
(24 h, enforced by the embedded AWS) does.

Each step runs in a process of its own, which exits before the next starts, so a week's
gigabytes are never held twice: the sample is built on an embedded AWS whose snapshot at stop is
the seed; per size, a builder restores the seed, grows it, writes the snapshot and exits (its
resident memory and peak are printed); then the restarted embedded AWS is measured alone.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import io
import multiprocessing
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
from base64 import b64decode, b64encode
from collections.abc import Callable, Iterator
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
from storepulse_local.dynamodb_export import change_log
from storepulse_local.embedded_aws import is_healthy
from storepulse_local.lambda_context import LambdaContext
from storepulse_local.persistence import (
    SNAPSHOT_FILE,
    Snapshot,
    _Pickler,
    dump_to,
    gc_paused,
    install_moto_state,
    load,
    moto_state,
    write_atomic_with,
)
from storepulse_local.provision import create_tables

SEED, STORES, RATE = 7, 2, 2.0  # the demo of `make up` (storepulse_local.platform.realtime)
STREAM, SHARD = "storepulse-bench-events", "shardId-000000000000"
LAKE = "storepulse-bench-lake"
BUILD_BATCH = 100  # the stack's BatchSize (infra/cloudformation/parameters/dev.json)
DAY = timedelta(days=1)
SAMPLE = 2000  # divides a week and a million
WEEK = 414_000
DAY_EVENTS = WEEK // 7  # what a stream with a 24 h retention period holds at most
SMALL = {"events": "300,600", "sample": "300"}
START = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # a Saturday morning: the busiest day
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/storepulse-bench-events"
ROLE_ARN = "arn:aws:iam::123456789012:role/storepulse-bench"


def provision(model: BusinessModel) -> None:
    create_tables(boto3.client("dynamodb"))
    boto3.client("s3").create_bucket(Bucket=LAKE)
    seed_settings(
        SettingsStore(boto3.resource("dynamodb").Table(table_name(Table.SETTINGS))), model
    )


def stream_processor_handler() -> Any:
    from storepulse.stream.processor import StreamProcessor, StreamResources

    resources = StreamResources.from_environment({"STOREPULSE_LAKE_BUCKET": LAKE})
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


def build_sample(sample: int) -> Any:
    """``sample`` events into the stream's shard and through the stream processor, day by day;
    returns the shard."""
    provision(BusinessModel.generate(seed=SEED, stores=STORES))
    boto3.client("kinesis").create_stream(StreamName=STREAM, ShardCount=1)
    shard = _the_shard()
    handler = stream_processor_handler()
    for arrival, records in demo_days(sample):
        first = len(shard.records) + 1
        batch = [
            StreamRecord(SHARD, str(first + n), key, data, arrival)
            for n, (data, key) in enumerate(records)
        ]
        _append(shard, batch)
        for i in range(0, len(batch), BUILD_BATCH):
            event = lambda_event(batch[i : i + BUILD_BATCH], STREAM_ARN, "us-east-1", ROLE_ARN)
            handler(event, LambdaContext("bench"))
    return shard


@dataclasses.dataclass
class Replicator:
    """Grows the processed sample's state, in moto's backends, by copies of it: its stream
    records, the items of every table but the settings, each table's recovery history (the
    change log of its writes, kept 35 days as AWS's point-in-time recovery) and stream records
    (DynamoDB Streams), and the lake's objects, under new keys (``#r<n>`` after the partition
    key, ``r<n>/`` before the object key). Every copy is made of new objects (a pickle writes a
    shared object once, which would understate the size). The sample's hour and day buckets
    are copied with the rest: a slight overstatement. ``record_copies``: at most that many
    copies of the Kinesis and DynamoDB stream records (a stream keeps only its retention
    period's, 24 h; the copies' sequence numbers repeat the sample's: nothing reads them)."""

    shards: list[Any]
    bucket: str = LAKE
    record_copies: int | None = None
    copies: int = 0

    def __post_init__(self) -> None:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends
        from moto.s3.models import s3_backends

        tables = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables
        self.tables = [t for name, t in tables.items() if name != table_name(Table.SETTINGS)]
        self.s3 = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        bucket = self.s3.get_bucket(self.bucket)
        self.objects = [(key.name, key.value) for key in bucket.keys.values()]
        self.records = [
            [(r.partition_key, b64decode(r.data)) for r in shard.records.values()]
            for shard in self.shards
        ]
        self.items = {table.name: _pickled_items(table) for table in self.tables}
        self.changes = {table.name: _pickled(change_log(table) or []) for table in tables.values()}
        self.stream_records = {
            table.name: _pickled(table.stream_shard.items if table.stream_shard else [])
            for table in tables.values()
        }
        self.all_tables = list(tables.values())

    @property
    def sample_records(self) -> int:
        return sum(len(records) for records in self.records)

    def grow_to(self, samples: int) -> None:
        """Until the state holds ``samples`` times the sample."""
        while self.copies + 1 < samples:
            self.copies += 1
            for table in self.tables:
                _copy_items(table, self.items[table.name], self.copies)
            for name, value in self.objects:
                self.s3.put_object(self.bucket, f"r{self.copies}/{name}", bytes(value))
            for table in self.all_tables:
                if (log := change_log(table)) is not None:
                    log += _unpickled(self.changes[table.name])
            if self.record_copies is None or self.copies <= self.record_copies:
                for shard, records in zip(self.shards, self.records, strict=True):
                    _copy_records(shard, records)
                for table in self.all_tables:
                    if table.stream_shard:
                        table.stream_shard.items += _unpickled(self.stream_records[table.name])


def _copy_records(shard: Any, records: list[tuple[str, bytes]]) -> None:
    number = next(reversed(shard.records), 0)
    for n, (key, data) in enumerate(records, start=number + 1):
        shard.records[n] = Record(key, b64encode(data).decode(), n, "")


def _pickled_items(table: Any) -> bytes:
    """The table's items, pickled as the snapshot pickles them (unpickled once per copy: new
    objects each time, at C speed)."""
    return _pickled([item for by_range in table.items.values() for item in by_range.values()])


def _pickled(objects: list[Any]) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(objects)
    return buffer.getvalue()


def _unpickled(pickled: bytes) -> list[Any]:
    with gc_paused():
        return pickle.loads(pickled)


def _copy_items(table: Any, pickled: bytes, copy: int) -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    for item in _unpickled(pickled):
        item.hash_key = DynamoType({"S": f"{item.hash_key.value}#r{copy}"})
        dict.__setitem__(item.attrs, table.hash_key_attr, item.hash_key)
        table.items[item.hash_key][item.range_key] = item


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


def build_seed(state_dir: Path, sample: int) -> dict[str, Any]:
    """In a process of its own: ``sample`` events through the stream processor on an embedded
    AWS that keeps its state in ``state_dir``; its snapshot at stop is the seed the sizes grow."""
    with embedded_aws(state_dir) as server:
        _, seconds = timed(lambda: build_sample(sample))
        mutations = server.persistence.gate.mutations
    return {"sample_s": seconds, "mutations": mutations}


def restore_here(state_dir: Path) -> Snapshot:
    """The snapshot of ``state_dir`` installed in this process's moto, with the embedded AWS's
    patches (Kinesis look-ups, retention, the stack's stream consumer, whose class the snapshot
    names) and without moto's tracking of every model object."""
    from storepulse_local.dynamodb_streams import patch_dynamodb_streams
    from storepulse_local.embedded_aws import _track_no_model_instances
    from storepulse_local.kinesis import patch_kinesis, patch_stream_consumers

    _track_no_model_instances()
    patch_kinesis()
    patch_stream_consumers()
    patch_dynamodb_streams()
    snapshot = load(state_dir / "aws" / SNAPSHOT_FILE, state_dir)
    assert snapshot is not None, f"no snapshot in {state_dir}"
    install_moto_state(snapshot.moto)
    return snapshot


def write_snapshot(state_dir: Path, snapshot: Snapshot) -> dict[str, float]:
    """This process's moto state written as the embedded AWS's snapshot (what its final one at
    a stop does, and its forked writer each time): wall and CPU seconds, MiB."""
    path = state_dir / "aws" / SNAPSHOT_FILE
    grown = dataclasses.replace(snapshot, moto=moto_state(), taken_at=time.time())
    started, cpu = time.perf_counter(), time.process_time()
    write_atomic_with(path, lambda out: dump_to(out, grown))
    return {
        "snapshot_s": time.perf_counter() - started,
        "snapshot_cpu_s": time.process_time() - cpu,
        "snapshot_mib": path.stat().st_size / 2**20,
    }


def fork_seconds() -> float:
    """How long a periodic snapshot holds requests: the fork of this process (its writer child
    here exits at once; the pickling it would do is ``write_snapshot``'s)."""
    started = time.perf_counter()
    if (child := os.fork()) == 0:
        os._exit(0)
    seconds = time.perf_counter() - started
    os.waitpid(child, 0)
    return seconds


def grow_and_snapshot(seed: Path, state_dir: Path, samples: int, sample: int) -> dict[str, Any]:
    """In a process of its own, which exits before the restore is measured: the seed's state
    grown to ``samples`` samples, snapshotted into ``state_dir``."""
    snapshot = restore_here(seed)
    shard = _the_shard()
    copies = max(0, round(DAY_EVENTS / sample) - 1)  # a day of stream records (retention)
    replicator = Replicator([shard], record_copies=copies)
    _, grow_seconds = timed(lambda: replicator.grow_to(samples))
    held = fork_seconds()
    written = write_snapshot(state_dir, snapshot)
    poll, put = shard_costs(shard)
    return {
        **written,
        "held_s": held,
        "grow_s": grow_seconds,
        "builder_mib": psutil.Process().memory_info().rss / 2**20,
        "builder_peak_mib": _peak_rss_kib(os.getpid()) / 1024,
        "poll_ms": poll,
        "put_ms": put,
    }


def apart(work: Callable[..., Any], *args: Any) -> Any:
    """``work(*args)`` in a new process that exits once it returns: what it built (gigabytes at
    a week) is not held beside what is measured next. Forked from this process, which holds no
    state of its own."""
    fork = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=fork) as pool:
        return pool.submit(work, *args).result()


def shard_costs(shard: Any) -> tuple[dict[str, float], dict[str, float]]:
    """On the shard as it is, in ms: a poll of the local runtime that finds the last batch
    (GetRecords after its checkpoint) and a put's finding of the last sequence number, as
    moto does them (walking the shard) and as the embedded AWS does (storepulse_local.kinesis).
    """
    from storepulse_local.kinesis import MOTO

    after = str(next(reversed(shard.records)) - BUILD_BATCH)
    poll = {
        "moto": _median_ms(lambda: MOTO["get_records"](shard, after, BUILD_BATCH)),
        "local": _median_ms(lambda: shard.get_records(after, BUILD_BATCH)),
    }
    put = {
        "moto": _median_ms(lambda: MOTO["last"](shard)),
        "local": _median_ms(shard.get_max_sequence_number),
    }
    return poll, put


def _median_ms(work: Callable[[], Any], runs: int = 5) -> float:
    return sorted(timed(work)[1] * 1000 for _ in range(runs))[runs // 2]


RESTORED = re.compile(rb"restored the state of .* in ([0-9.]+) s \(CPU ([0-9.]+) s\)")


def restart(state_dir: Path) -> dict[str, float]:
    """A new embedded AWS process on the snapshot: from its start until it answers, the restore
    it logs, its resident memory then and its peak (the unpickling's, MiB)."""
    port = _free_port()
    argv = [sys.executable, "-m", "storepulse_local.embedded_aws", "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            [*argv, "--state-dir", str(state_dir)], stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            while not is_healthy(f"http://{LOOPBACK}:{port}"):
                if process.poll() is not None:
                    raise RuntimeError(f"the embedded AWS exited ({process.returncode})")
                time.sleep(0.05)
            seconds = time.perf_counter() - started
            cpu = psutil.Process(process.pid).cpu_times()
            memory = psutil.Process(process.pid).memory_full_info()
            peak = _peak_rss_kib(process.pid) / 1024
        except urllib.error.URLError as exc:
            raise RuntimeError(f"the embedded AWS did not answer: {exc}") from exc
        finally:
            process.kill()
            process.wait()
        log.seek(0)
        restored = RESTORED.search(log.read())
    if restored is None:
        raise RuntimeError("the restarted embedded AWS restored no snapshot")
    return {
        "restore_s": float(restored.group(1)),
        "restore_cpu_s": float(restored.group(2)),
        "restart_s": seconds,
        "restart_cpu_s": cpu.user + cpu.system,
        "restart_mib": memory.rss / 2**20,
        "restart_peak_mib": peak,
    }


def _peak_rss_kib(pid: int) -> int:
    """The process's peak resident memory (Linux: VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="5000", help="sizes, comma-separated")
    parser.add_argument(
        "--sample", type=int, default=SAMPLE, help="events through the stream processor"
    )
    args = parse_args(parser, argv, SMALL)
    sizes = sorted(int(size) for size in args.events.split(","))
    sample = min(args.sample, sizes[0])
    results = []
    with tempfile.TemporaryDirectory(prefix="storepulse-bench-") as tmp:
        seed, state_dir = Path(tmp) / "seed", Path(tmp) / "grown"
        built = apart(build_seed, seed, sample)
        for events in sizes:
            samples = max(1, round(events / sample))
            grown = apart(grow_and_snapshot, seed, state_dir, samples, sample)
            results.append({"events": samples * sample, **grown, **restart(state_dir)})
            print(results[-1], file=sys.stderr, flush=True)  # progress: a large size takes long
    print_report(results, sample, built["sample_s"], built["mutations"])
    return {"sizes": results, "sample": sample, "sample_s": built["sample_s"]}


def print_report(
    results: list[dict[str, Any]], sample: int, sample_seconds: float, mutations: int
) -> None:
    print(
        f"demo business (seed {SEED}, {STORES} stores, peak {RATE}/s; a week ~{WEEK:,} events): "
        f"stream + tables + lake, one snapshot. Built: {sample:,} events through the stream "
        f"processor in {sample_seconds:.0f} s ({mutations:,} mutating requests: what a log "
        "would replay for them), the rest as copies of their state (stream records, items, "
        "objects) under new keys, in moto's backends"
    )
    rows = [
        [
            f"{r['events']:,}",
            f"{r['snapshot_mib']:.1f}",
            f"{r['held_s']:.3f}",
            f"{r['snapshot_s']:.1f} ({r['snapshot_cpu_s']:.1f})",
            f"{r['restore_s']:.1f} ({r['restore_cpu_s']:.1f})",
            f"{r['restart_s']:.1f} ({r['restart_cpu_s']:.1f})",
            f"{r['restart_mib']:.0f}",
            f"{r['restart_peak_mib']:.0f}",
            f"{r['builder_mib']:.0f} ({r['builder_peak_mib']:.0f})",
            f"{r['poll_ms']['moto']:.1f} / {r['poll_ms']['local']:.2f}",
            f"{r['put_ms']['moto']:.1f} / {r['put_ms']['local']:.3f}",
            f"{r['grow_s']:.0f}",
        ]
        for r in results
    ]
    headers = [
        "events",
        "snapshot MiB",
        "requests held s (fork)",
        "snapshot s (pickle, to disk; its CPU s)",
        "restore s (unpickle, install; its CPU s)",
        "restart s (to answering; its CPU s)",
        "restarted MiB (RSS)",
        "restart peak MiB (VmHWM)",
        "builder MiB (RSS; peak; exited before the restart)",
        "poll ms moto / local",
        "put's last number ms moto / local",
        "s to copy",
    ]
    print_table(headers, rows)


if __name__ == "__main__":
    main()
