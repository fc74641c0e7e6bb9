"""``python -m storepulse_local.lambda_runtime``: runs the mappings until SIGTERM/SIGINT and
logs per-shard stats."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from storepulse.config import settings
from storepulse_local import lambda_runtime
from storepulse_local.lambda_runtime.common import LambdaRuntimeError, log
from storepulse_local.lambda_runtime.runtime import LocalLambdaRuntime
from storepulse_local.lambda_runtime.shards import ShardStats


def format_stats(stats: Sequence[ShardStats]) -> list[str]:
    return [
        f"{s.function_name} {s.shard_id} [{s.state}] behind={s.iterator_age_ms}ms "
        f"invocations={s.invocations} errors={s.errors} records={s.records_processed} "
        f"discarded={s.records_discarded} pushes={s.pushes} checkpoint={s.checkpoint} "
        f"last_error={s.last_error}"
        for s in stats
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m storepulse_local.lambda_runtime",
        description=lambda_runtime.__doc__.splitlines()[0],
    )
    parser.add_argument(
        "--state-dir", type=Path, help="default: <STOREPULSE_STATE_DIR>/lambda-runtime"
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=None,
        help="seconds between polls of a caught-up shard (default: Lambda's for the mapping: "
        "1 s shared throughput, 0.25 s DynamoDB Streams, records pushed through an enhanced "
        "fan-out consumer); given, every mapping is polled at that interval",
    )
    parser.add_argument(
        "--discovery-interval",
        type=float,
        default=5.0,
        help="seconds between looks for mappings and shards",
    )
    parser.add_argument(
        "--retry-backoff", type=float, default=0.5, help="first retry pause (doubles, max 30 s)"
    )
    parser.add_argument("--stats-interval", type=float, default=10.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    current = settings()
    if not current.embedded_aws:
        raise SystemExit("lambda runtime: on real AWS, Lambda runs the event source mappings")
    # Passed to the function workers: their boto3 clients must reach the embedded AWS too.
    os.environ.setdefault("AWS_ENDPOINT_URL", current.embedded_aws_url)
    runtime = LocalLambdaRuntime(
        state_dir=args.state_dir,
        poll_interval=args.poll_interval,
        discovery_interval=args.discovery_interval,
        retry_backoff=args.retry_backoff,
    )
    stopped = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        runtime.start()
    except LambdaRuntimeError as exc:
        raise SystemExit(f"lambda runtime: {exc}") from None
    while not stopped.wait(args.stats_interval):
        for line in format_stats(runtime.stats()):
            log.info("stats %s", line)
    runtime.stop()


if __name__ == "__main__":
    main()
