"""Benchmark: what an idle enhanced fan-out mapping costs the embedded AWS and the local runtime.

    .venv/bin/python -m benchmarks.idle_cost [--seconds 20] [--shards 1] [--small]

The deployed stack's mapping reads through an enhanced fan-out consumer (``EnhancedFanOut``
"true" in dev.json), so ``make up`` and every platform test run one while the stream is mostly
idle. On AWS the records are pushed; the local runtime emulates the push with a long poll on
the embedded AWS (``storepulse_local.lambda_runtime.push``). Measured in one process (the
embedded AWS's server threads and the runtime's; the function is an in-process stand-in that
never runs, the stream being idle): CPU time per second of wall time and GetRecords per second,
over ``--seconds`` with nothing put, for the embedded AWS alone (the floor), the runtime
reading idle shards every 0.07 s (how enhanced fan-out was emulated before: the baseline) and
the runtime waiting for a push. ``--shards``: the stream's shards (the stack's ON_DEMAND stream
has 1 in the embedded AWS, whose CloudFormation ignores StreamModeDetails; 4 on AWS).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3

from benchmarks.harness import RequestCounter, embedded_aws, parse_args, print_table
from storepulse_local.iam import LAMBDA_TRUST_POLICY
from storepulse_local.lambda_runtime import LocalLambdaRuntime
from storepulse_local.lambda_runtime.mappings import ENHANCED_FAN_OUT_POLL_SECONDS

FUNCTION = "storepulse-dev-idle"
FLOOR, POLLED, PUSHED = "embedded AWS alone", "polled every 0.07 s (before)", "pushed (now)"
SMALL = {"seconds": 0.3}


def consumer_mapping(shards: int) -> None:
    """A stream, its consumer and a function's mapping through it, as the stack deploys them."""
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="storepulse-dev-events", ShardCount=shards)
    arn = kinesis.describe_stream_summary(StreamName="storepulse-dev-events")[
        "StreamDescriptionSummary"
    ]["StreamARN"]
    consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="stream-processor")
    role = boto3.client("iam").create_role(
        RoleName=FUNCTION, AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY
    )["Role"]["Arn"]
    lambda_ = boto3.client("lambda")
    lambda_.create_function(
        FunctionName=FUNCTION,
        Runtime="python3.11",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},  # never run: a stand-in handles
    )
    lambda_.create_event_source_mapping(
        EventSourceArn=consumer["Consumer"]["ConsumerARN"],
        FunctionName=FUNCTION,
        StartingPosition="LATEST",
        BatchSize=100,
    )


def measure(seconds: float, poll_interval: float | None, state: Path | None) -> dict[str, Any]:
    """CPU and GetRecords per second of this process over ``seconds`` of an idle stream, with a
    runtime reading it (``state``: its state dir) or without one (None)."""
    runtime = None
    if state is not None:
        runtime = LocalLambdaRuntime(
            handlers={FUNCTION: lambda event, context: None},
            state_dir=state,
            poll_interval=poll_interval,
        ).start()
        runtime.run_until_idle(timeout=60)  # mapping found, every shard read once
    try:
        with RequestCounter().counting() as counter:
            cpu, wall = time.process_time(), time.monotonic()
            time.sleep(seconds)
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    finally:
        if runtime is not None:
            runtime.stop()
    return {
        "cpu_ms_per_s": cpu / wall * 1000,
        "get_records_per_s": counter.calls["GetRecords"] / wall,
        "requests_per_s": sum(counter.calls.values()) / wall,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="idle time measured per row")
    parser.add_argument("--shards", type=int, default=1)
    args = parse_args(parser, argv, SMALL)
    with embedded_aws(), tempfile.TemporaryDirectory() as state:
        consumer_mapping(args.shards)
        runs = {
            FLOOR: measure(args.seconds, None, None),
            POLLED: measure(args.seconds, ENHANCED_FAN_OUT_POLL_SECONDS, Path(state) / "polled"),
            PUSHED: measure(args.seconds, None, Path(state) / "pushed"),
        }
    polled, pushed = runs[POLLED], runs[PUSHED]
    summary = {
        "shards": args.shards,
        "seconds": args.seconds,
        "runs": runs,
        # 0 when the pushed runtime read nothing while idle
        "fewer_get_records": pushed["get_records_per_s"]
        and (polled["get_records_per_s"] / pushed["get_records_per_s"]),
        "less_cpu": polled["cpu_ms_per_s"] / max(pushed["cpu_ms_per_s"], 1e-9),
    }
    print_report(summary)
    return summary


def print_report(summary: dict[str, Any]) -> None:
    print(
        f"idle stream of {summary['shards']} shard(s), enhanced fan-out mapping, "
        f"{summary['seconds']:g} s per row; CPU of the embedded AWS and the runtime (one process)"
    )
    print_table(
        ["runtime", "GetRecords/s", "requests/s", "CPU ms/s"],
        [
            [
                name,
                f"{run['get_records_per_s']:.1f}",
                f"{run['requests_per_s']:.1f}",
                f"{run['cpu_ms_per_s']:.1f}",
            ]
            for name, run in summary["runs"].items()
        ],
    )
    fewer = summary["fewer_get_records"]
    print(
        "pushed against polled: "
        + (f"{fewer:.1f}x fewer GetRecords" if fewer else "no GetRecords while idle")
        + f", {summary['less_cpu']:.1f}x less CPU (the floor included in both)"
    )


if __name__ == "__main__":
    main()
