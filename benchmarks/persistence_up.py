"""Benchmark: ``make up`` until ready on a restored week of the demo (issue #14: under 60 s).

    .venv/bin/python -m benchmarks.persistence_up [--events 414000]
    make bench-persistence    # runs it after benchmarks.persistence

The platform (``python -m storepulse_local.platform up``, as ``make up``) on a state dir of its
own, three times, each run until it reports ready and then stopped with Ctrl-C: a first start
(it deploys the stack and sends the demo's history), a restart on that state (the baseline),
and a restart on the same state grown to ``--events`` events of the demo. The state is grown
with the platform stopped, in its snapshot, as ``benchmarks.persistence`` grows its own: copies
of the demo's processed events (every table but the settings, the lake's objects) under new
keys, and of its stream records up to one day's worth (the stream's retention period, which
the embedded AWS enforces); the runtime's checkpoints are moved to the end of the streams, the
Kinesis stream's and the tables' (the copies count as processed). Printed: each start's time to
ready and where it went (the time from one component's start to the next's), the snapshot's
size, and the week's restart against the baseline's.

    .venv/bin/python -m benchmarks.persistence_up --grown-state DIR [--restarts N]

keeps the grown state in DIR (grown there by the first such run, ~15 min) and restarts a copy of
it N times: every restart starts from the identical state, so two checkouts' restarts can be
compared run by run (alternately, under the same load) without growing a week each time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import parse_args, print_table, timed
from benchmarks.persistence import (
    DAY_EVENTS,
    WEEK,
    Replicator,
    apart,
    restore_here,
    write_snapshot,
)
from storepulse.config import LOOPBACK, REPO_ROOT
from storepulse_local.persistence import SNAPSHOT_FILE
from storepulse_local.platform.phases import LINE_PREFIX

READY = re.compile(r"StorePulse is up in")
STARTING = re.compile(r"starting (\S+) \.\.\.")
SERVING = re.compile(r"real-time path is serving after")
SETTLED = re.compile(r"Airflow's scheduler, dag-processor and triggerer healthy")
NOT_DEPLOYED = re.compile(r"not deployed: ")
READY_TIMEOUT = 1800  # a loaded 2-core machine: a first start took 10-17 minutes
# The UI right after ready: what a browser loads first (the page, the login page, the REST API
# the page calls), every half second for this long (the restart's background DAG run included).
UI_PAGES = ("/", "/auth/login", "/api/v2/version")
UI_PROBE_SECONDS = 45.0
SMALL = {"events": "20000"}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class Up:
    """One ``platform up`` until ready, its output timed line by line; then Ctrl-C."""

    def __init__(self, state_dir: Path, ports: tuple[int, int]) -> None:
        env = {
            **os.environ,
            "STOREPULSE_STATE_DIR": str(state_dir),
            "STOREPULSE_AWS_PORT": str(ports[0]),
            "STOREPULSE_AIRFLOW_PORT": str(ports[1]),
        }
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "storepulse_local.platform", "up"],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[tuple[float, str]] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic() - self.started, line))
            if READY.search(line):
                self.ready.set()

    def wait_ready(self) -> float:
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.ready.wait(1.0):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                output = "".join(line for _, line in self.lines[-40:])
                raise RuntimeError(f"the platform did not get ready:\n{output}")
        return next(at for at, line in self.lines if READY.search(line))

    def steps(self) -> dict[str, float]:
        """Seconds from each component's start to the next's (the last: to ready)."""
        marks = [(m.group(1), at) for at, line in self.lines if (m := STARTING.search(line))]
        ends = [at for _, at in marks[1:]] + [self.wait_ready()]
        return {name: end - at for (name, at), end in zip(marks, ends, strict=True)}

    def settled(self, timeout: float = READY_TIMEOUT) -> float | None:
        """Seconds until Airflow's scheduler, dag-processor and triggerer were healthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if found := [at for at, line in self.lines if SETTLED.search(line)]:
                return found[0]
            time.sleep(1.0)
        return None

    def phases(self, timeout: float = READY_TIMEOUT) -> str:
        """``make up``'s line of where the start's time went (after ready: the runtime's first
        batch ends its last phase)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if found := [line for _, line in self.lines if LINE_PREFIX in line]:
                return found[0].strip()
            time.sleep(1.0)
        return "(no phases line)"

    def serving(self) -> float:
        """Seconds until the real-time path served (ready, when Airflow answered first)."""
        found = [at for at, line in self.lines if SERVING.search(line)]
        return found[0] if found else self.wait_ready()

    def deployed(self) -> bool:
        return not any(NOT_DEPLOYED.search(line) for _, line in self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=600)


def start(state_dir: Path, ports: tuple[int, int]) -> dict[str, Any]:
    up = Up(state_dir, ports)
    try:
        ready = up.wait_ready()
        ui = ui_after_ready(f"http://{LOOPBACK}:{ports[1]}")
        peak = _peak_rss_mib(state_dir, "embedded-aws")
        return {
            "ready_s": ready,
            "ui_first_s": ui[0],
            "ui_max_s": max(ui),
            "serving_s": up.serving(),
            "steps": up.steps(),
            "mib": _snapshot_mib(state_dir),
            "settled_s": up.settled(),
            "deployed": up.deployed(),
            "aws_peak_mib": peak,
            "load": os.getloadavg()[0],
            "phases": up.phases(),
        }
    finally:
        up.stop()


def ui_after_ready(url: str) -> list[float]:
    """Seconds the UI's first pages took, together, every half second for UI_PROBE_SECONDS
    after ready (a page that does not answer within a minute counts as a minute)."""
    import urllib.error
    import urllib.request

    rounds: list[float] = []
    deadline = time.monotonic() + UI_PROBE_SECONDS
    while time.monotonic() < deadline:
        began = time.monotonic()
        for page in UI_PAGES:
            try:
                with urllib.request.urlopen(f"{url}{page}", timeout=60) as response:
                    response.read()
            except (urllib.error.URLError, OSError):
                pass  # an error status still answered: its time counts
        rounds.append(time.monotonic() - began)
        time.sleep(0.5)
    return rounds


def _peak_rss_mib(state_dir: Path, component: str) -> float:
    """The component's peak resident memory so far (Linux: VmHWM), by its pid in platform.json."""
    from benchmarks.persistence import _peak_rss_kib

    pid = json.loads((state_dir / "platform.json").read_text())["children"][component]
    return _peak_rss_kib(pid) / 1024


def _snapshot_mib(state_dir: Path) -> float:
    path = state_dir / "aws" / SNAPSHOT_FILE
    return path.stat().st_size / 2**20 if path.exists() else 0.0


def grow(state_dir: Path, events: int) -> dict[str, Any]:
    """The stopped platform's snapshot, grown to ``events`` events of the demo (module doc)."""
    snapshot = restore_here(state_dir)
    shards = _stream_shards()
    replicator = Replicator(shards, bucket=_lake_bucket())
    # The sample is what the tables and the lake hold the effects of: the records processed
    # (up to the checkpoints), not all in the stream (at ready most of the demo's history is
    # still unread: counting it made the copies a day of stream records and little else).
    sample = _processed(snapshot.checkpoints, shards)
    replicator.record_copies = max(0, round(DAY_EVENTS / replicator.sample_records) - 1)
    replicator.grow_to(max(1, round(events / sample)))
    checkpoints = _checkpoints_at_the_end(snapshot.checkpoints, shards)
    write_snapshot(state_dir, dataclasses.replace(snapshot, checkpoints=checkpoints))
    return {"sample": sample, "events": sample * (replicator.copies + 1)}


def _processed(checkpoints: Any, shards: list[Any]) -> int:
    """Records of the shards at or before the runtime's checkpoints (at least one)."""
    done: dict[str, int] = {}
    for mapping in (checkpoints or {}).get("mappings", {}).values():
        for shard, checkpoint in mapping.get("shards", {}).items():
            number = int(checkpoint.get("sequence_number") or 0)
            done[shard] = min(number, done.get(shard, number))  # the slowest mapping's
    count = sum(
        sum(1 for number in shard.records if number <= done.get(shard.shard_id, 0))
        for shard in shards
    )
    return max(1, count)


def _stream_shards() -> list[Any]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.kinesis.models import kinesis_backends

    streams = kinesis_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].streams.values()
    (stream,) = [s for s in streams if s.stream_name.endswith("-events")]
    return list(stream.shards.values())


def _lake_bucket() -> str:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    buckets = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets
    (name,) = [name for name in buckets if "-lake-" in name]
    return name


def _checkpoints_at_the_end(checkpoints: Any, shards: list[Any]) -> Any:
    """The runtime's checkpoints moved to each shard's last record: the copies count as
    processed (their effects are in the tables and the lake already). The tables' stream
    records too: left behind the copies, the change capture spent the week's restart on a day
    of copied changes that no real stop leaves unread (the embedded AWS's busiest work there)."""
    last = {shard.shard_id: str(next(reversed(shard.records), 0)) for shard in shards}
    table_streams = _table_stream_ends()
    for uuid, mapping in (checkpoints or {}).get("mappings", {}).items():
        for shard_id, checkpoint in mapping.get("shards", {}).items():
            if shard_id in last:
                checkpoint["sequence_number"] = last[shard_id]
            elif uuid in table_streams:
                checkpoint["sequence_number"] = table_streams[uuid]
    return checkpoints


def _table_stream_ends() -> dict[str, str]:
    """Event source mapping id -> the last sequence number of its table's stream (one shard)."""
    from moto.awslambda_simple.models import lambda_simple_backends
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    ends = {
        table.table_arn: str(table.stream_shard.starting_sequence_number + n - 1)
        for table in dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables.values()
        if table.stream_shard and (n := len(table.stream_shard.items))
    }
    # The embedded AWS runs moto's Lambda without Docker: its simple backend has the mappings.
    mappings = lambda_simple_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]._event_source_mappings
    return {
        uuid: ends[arn]
        for uuid, mapping in mappings.items()
        if (arn := mapping.event_source_arn.partition("/stream/")[0]) in ends
    }


GROWN_FILE = "grown.json"  # in --grown-state: what ``grow`` reported (written last)


def restart_grown(kept: Path, events: int, restarts: int) -> dict[str, Any]:
    """Restarts of a copy of the grown state kept in ``kept`` (grown there first if absent)."""
    ports = (_free_port(), _free_port())
    if not (kept / GROWN_FILE).exists():
        shutil.rmtree(kept, ignore_errors=True)
        kept.mkdir(parents=True)
        start(kept, ports)  # the first start, then the demo's restart, as main() grows it
        start(kept, ports)
        grown = apart(grow, kept, events)
        (kept / GROWN_FILE).write_text(json.dumps(grown))
    grown = json.loads((kept / GROWN_FILE).read_text())
    runs = {}
    for number in range(1, restarts + 1):
        with tempfile.TemporaryDirectory(prefix="storepulse-bench-up-") as state:
            copy = Path(state) / "state"
            shutil.copytree(kept, copy, symlinks=True)
            runs[f"restart {number}, {grown['events']:,} events"] = start(copy, ports)
    for name, run in runs.items():
        print(
            f"{name}: ready {run['ready_s']:.0f} s, serving {run['serving_s']:.0f} s, load "
            f"{run['load']:.1f}; the UI's first pages right after ready {run['ui_first_s']:.2f} s, "
            f"at most {run['ui_max_s']:.2f} s in the {UI_PROBE_SECONDS:.0f} s after\n  "
            f"{run['phases']}",
            flush=True,
        )
    return {"runs": runs, "grown": grown}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=WEEK, help="events in the grown state")
    parser.add_argument("--grown-state", type=Path, help="keep the grown state here (module doc)")
    parser.add_argument("--restarts", type=int, default=1, help="with --grown-state")
    args = parse_args(parser, argv, SMALL)
    if args.grown_state:
        return restart_grown(args.grown_state.resolve(), args.events, args.restarts)
    ports = (_free_port(), _free_port())
    with tempfile.TemporaryDirectory(prefix="storepulse-bench-up-") as state:
        state_dir = Path(state)
        first = start(state_dir, ports)
        again = start(state_dir, ports)
        grown, grow_seconds = timed(lambda: apart(grow, state_dir, args.events))
        week = start(state_dir, ports)
    runs = {"first start": first, "restart": again, f"restart, {grown['events']:,} events": week}
    print_report(runs, grown, grow_seconds)
    return {"runs": runs, "grown": grown}


def print_report(runs: dict[str, dict[str, Any]], grown: dict[str, Any], seconds: float) -> None:
    print(
        f"make up until ready (60 s wanted with a week): the demo's own state ({grown['sample']:,} "
        f"events processed), then grown to {grown['events']:,} in {seconds:.0f} s"
    )
    components = list(next(iter(runs.values()))["steps"])
    rows = [
        [
            name,
            f"{run['mib']:.1f}",
            f"{run['serving_s']:.0f}",
            f"{run['ready_s']:.0f}",
            f"{run['ui_first_s']:.2f} / {run['ui_max_s']:.2f}",
            "yes" if run["deployed"] else "no (current)",
            f"{run['settled_s']:.0f}" if run["settled_s"] is not None else "-",
            f"{run['aws_peak_mib']:.0f}",
            f"{run['load']:.1f}",
        ]
        + [f"{run['steps'].get(c, 0):.0f}" for c in components]
        for name, run in runs.items()
    ]
    headers = ["start", "snapshot MiB", "real-time path serving s", "ready s (UI too)"]
    headers += [f"UI pages s: right after ready / max in {UI_PROBE_SECONDS:.0f} s"]
    headers += ["deploy DAG waited for"]
    headers += ["Airflow healthy s", "embedded AWS peak MiB (VmHWM)", "load (1 min)"]
    print_table([*headers, *(f"{c} s" for c in components)], rows)
    for name, run in runs.items():
        print(f"{name}: {run['phases']}")
    baseline, week = list(runs.values())[1:]
    ratio = week["ready_s"] / baseline["ready_s"]
    print(f"the grown state's restart / the demo's restart: {ratio:.2f}x")


if __name__ == "__main__":
    main()
