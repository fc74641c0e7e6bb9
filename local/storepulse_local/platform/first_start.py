"""The first start exports the demo's yesterday once its history is counted.

On a first start, the nightly export's scheduled run (the latest day, no catch-up) waits for the
stack, then exports yesterday. The demo's history (yesterday among it) is sent right after the
deploy and takes the local stream processor 20-30 s to count: an export in between would
publish a partial day, or stage the orders and the metrics at two different moments of that
load and fail its revenue reconciliation (a red run, and a false data-quality alert). So on a
first start ``make up`` pauses that DAG before the deploy and unpauses it once the runtime has
counted every record put so far. A marker file makes the release survive a stop in between: the
next start releases what an earlier one held, and never touches a DAG the user paused."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from storepulse_local.lambda_runtime.checkpoints import CHECKPOINT_FILE

HELD_DAGS = ("nightly_export",)  # the DAGs that read a day the demo's history is still filling
MARKER = "held_dags.json"
CATCH_UP_TIMEOUT = 1800.0  # 20-30 s on a quiet machine; minutes on a loaded one


class DagSwitch(Protocol):
    """What this needs of ``airflow_local.AirflowClient``."""

    def wait_for_dag(self, dag_id: str) -> None: ...

    def set_paused(self, dag_id: str, paused: bool) -> None: ...


def _marker(state_dir: Path) -> Path:
    return state_dir / MARKER


def hold(client: DagSwitch, state_dir: Path) -> list[str]:
    """Pause the held DAGs (marker first, so a stop right after still releases them)."""
    _marker(state_dir).write_text(json.dumps(list(HELD_DAGS)))
    for dag_id in HELD_DAGS:
        client.wait_for_dag(dag_id)
        client.set_paused(dag_id, True)
    return list(HELD_DAGS)


def held(state_dir: Path) -> list[str]:
    try:
        return list(json.loads(_marker(state_dir).read_text()))
    except FileNotFoundError:
        return []


def release(client: DagSwitch, state_dir: Path) -> list[str]:
    """Unpause what a start held, then forget it."""
    dags = held(state_dir)
    for dag_id in dags:
        client.set_paused(dag_id, False)
    _marker(state_dir).unlink(missing_ok=True)
    return dags


def stream_caught_up(
    kinesis: Any, stream: str, runtime_state_dir: Path, sent_by: datetime | None = None
) -> bool:
    """True when the local runtime has processed every record on every shard of ``stream``:
    nothing follows its checkpoint (or the shard is empty when it has none yet). With
    ``sent_by``, only records that arrived by then count: the live traffic after the history
    always has a record or two in flight, which a loaded machine never lets the runtime catch."""
    checkpoints = _shard_checkpoints(runtime_state_dir / CHECKPOINT_FILE)
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        shard_id = shard["ShardId"]
        position: dict[str, str] = {"ShardIteratorType": "TRIM_HORIZON"}
        if sequence := checkpoints.get(shard_id):
            position = {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "StartingSequenceNumber": sequence,
            }
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, **position)
        records = kinesis.get_records(ShardIterator=iterator["ShardIterator"], Limit=1)["Records"]
        if records and (sent_by is None or records[0]["ApproximateArrivalTimestamp"] <= sent_by):
            return False
    return True


def _shard_checkpoints(path: Path) -> dict[str, str]:
    try:
        mappings = json.loads(path.read_text()).get("mappings", {})
    except FileNotFoundError:
        return {}
    return {
        shard_id: checkpoint["sequence_number"]
        for mapping in mappings.values()
        for shard_id, checkpoint in mapping.get("shards", {}).items()
        if checkpoint.get("sequence_number")
    }


def wait_until(
    done: Callable[[], bool], timeout: float, interval: float = 2.0, settle: int = 2
) -> bool:
    """True once ``done()`` held ``settle`` times in a row (a batch may be between polls)."""
    deadline, streak = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        streak = streak + 1 if done() else 0
        if streak >= settle:
            return True
        time.sleep(interval)
    return False
