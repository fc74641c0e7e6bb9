"""Benchmark: what idle stream mappings cost the embedded AWS and the local runtime.

    .venv/bin/python -m benchmarks.idle_cost [--seconds 20] [--shards 1] [--tables 3] [--small]

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

The same for the change capture's mappings on the streams of ``--tables`` tables (the stack's
three: facts, metrics, inventory), which Lambda polls 4 times a second: read every 0.25 s (how
the runtime read them before: the baseline) against waited on while caught up, then read at the
poll's ticks (``storepulse_local.lambda_runtime.push``, ``paced``).
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
from storepulse_local.lambda_runtime.mappings import (
    DYNAMODB_STREAMS_POLL_SECONDS,
    ENHANCED_FAN_OUT_POLL_SECONDS,
)

FUNCTION = "storepulse-dev-idle"
FLOOR, POLLED, PUSHED = "embedded AWS alone", "polled every 0.07 s (before)", "pushed (now)"
TABLES_POLLED, TABLES_WAITED = "read every 0.25 s (before)", "waited on (now)"
SMALL = {"seconds": 0.3, "tables": 1}


def _function() -> None:
    """The function every mapping invokes: a stand-in handles it in-process."""
    role = boto3.client("iam").create_role(
        RoleName=FUNCTION, AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY
    )["Role"]["Arn"]
    boto3.client("lambda").create_function(
        FunctionName=FUNCTION,
        Runtime="python3.11",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},  # never run: a stand-in handles
    )


def consumer_mapping(shards: int) -> None:
    """A stream, its consumer and a function's mapping through it, as the stack deploys them."""
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="storepulse-dev-events", ShardCount=shards)
    arn = kinesis.describe_stream_summary(StreamName="storepulse-dev-events")[
        "StreamDescriptionSummary"
    ]["StreamARN"]
    consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="stream-processor")
    _function()
    boto3.client("lambda").create_event_source_mapping(
        EventSourceArn=consumer["Consumer"]["ConsumerARN"],
        FunctionName=FUNCTION,
        StartingPosition="LATEST",
        BatchSize=100,
    )


def table_stream_mappings(tables: int) -> None:
    """``tables`` tables with streams and a function's mapping on each, as the stack's change
    capture has them."""
    _function()
    for number in range(tables):
        arn = boto3.client("dynamodb").create_table(
            TableName=f"storepulse-dev-idle-{number}",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )["TableDescription"]["LatestStreamArn"]
        boto3.client("lambda").create_event_source_mapping(
            EventSourceArn=arn, FunctionName=FUNCTION, StartingPosition="LATEST", BatchSize=100
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
    parser.add_argument("--tables", type=int, default=3, help="table streams (change capture)")
    args = parse_args(parser, argv, SMALL)
    with embedded_aws(), tempfile.TemporaryDirectory() as state:
        consumer_mapping(args.shards)
        runs = {
            FLOOR: measure(args.seconds, None, None),
            POLLED: measure(args.seconds, ENHANCED_FAN_OUT_POLL_SECONDS, Path(state) / "polled"),
            PUSHED: measure(args.seconds, None, Path(state) / "pushed"),
        }
    with embedded_aws(), tempfile.TemporaryDirectory() as state:
        table_stream_mappings(args.tables)
        table_runs = {
            FLOOR: measure(args.seconds, None, None),
            TABLES_POLLED: measure(
                args.seconds, DYNAMODB_STREAMS_POLL_SECONDS, Path(state) / "polled"
            ),
            TABLES_WAITED: measure(args.seconds, None, Path(state) / "waited"),
        }
    summary = {
        "shards": args.shards,
        "tables": args.tables,
        "seconds": args.seconds,
        "runs": runs,
        "table_runs": table_runs,
        **_savings(runs[POLLED], runs[PUSHED]),
        "tables_less_cpu": _savings(table_runs[TABLES_POLLED], table_runs[TABLES_WAITED])[
            "less_cpu"
        ],
    }
    print_report(summary)
    return summary


def _savings(before: dict[str, Any], now: dict[str, Any]) -> dict[str, float]:
    return {
        # 0 when the runtime read nothing while idle
        "fewer_get_records": now["get_records_per_s"]
        and (before["get_records_per_s"] / now["get_records_per_s"]),
        "less_cpu": before["cpu_ms_per_s"] / max(now["cpu_ms_per_s"], 1e-9),
    }


def print_report(summary: dict[str, Any]) -> None:
    print(
        f"idle stream of {summary['shards']} shard(s), enhanced fan-out mapping, "
        f"{summary['seconds']:g} s per row; CPU of the embedded AWS and the runtime (one process)"
    )
    _print_runs(summary["runs"])
    fewer = summary["fewer_get_records"]
    print(
        "pushed against polled: "
        + (f"{fewer:.1f}x fewer GetRecords" if fewer else "no GetRecords while idle")
        + f", {summary['less_cpu']:.1f}x less CPU (the floor included in both)"
    )
    print(
        f"\n{summary['tables']} idle table stream(s), a mapping on each (the change capture's), "
        f"{summary['seconds']:g} s per row"
    )
    _print_runs(summary["table_runs"])
    print(
        f"waited on against read every 0.25 s: {summary['tables_less_cpu']:.1f}x less CPU "
        "(the floor included in both)"
    )


def _print_runs(runs: dict[str, dict[str, Any]]) -> None:
    print_table(
        ["runtime", "GetRecords/s", "requests/s", "CPU ms/s"],
        [
            [
                name,
                f"{run['get_records_per_s']:.1f}",
                f"{run['requests_per_s']:.1f}",
                f"{run['cpu_ms_per_s']:.1f}",
            ]
            for name, run in runs.items()
        ],
    )


if __name__ == "__main__":
    main()
