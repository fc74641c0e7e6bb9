"""``make up``'s first start holds the nightly export until the demo's history is counted: the
hold survives a stop (marker file), and "counted" means nothing on the stream follows the local
runtime's checkpoints."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from storepulse_local.lambda_runtime.checkpoints import CHECKPOINT_FILE
from storepulse_local.platform import first_start


class FakeAirflow:
    def __init__(self) -> None:
        self.paused: dict[str, bool] = {}

    def wait_for_dag(self, dag_id: str) -> None:
        """Parsed already."""

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.paused[dag_id] = paused


def test_a_hold_is_released_by_the_next_start_after_a_stop(tmp_path: Path) -> None:
    airflow = FakeAirflow()
    assert first_start.hold(airflow, tmp_path) == ["nightly_export"]
    assert airflow.paused == {"nightly_export": True}
    # stopped here: a new platform process finds the marker and releases what was held
    assert first_start.held(tmp_path) == ["nightly_export"]
    assert first_start.release(FakeAirflow(), tmp_path) == ["nightly_export"]
    assert first_start.held(tmp_path) == []
    assert first_start.release(airflow, tmp_path) == []  # a later start touches nothing
    assert airflow.paused == {"nightly_export": True}


def _checkpoint(state_dir: Path, shard_id: str, sequence: str) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    shards = {shard_id: {"sequence_number": sequence, "finished": False}}
    (state_dir / CHECKPOINT_FILE).write_text(
        json.dumps({"version": 1, "mappings": {"m-1": {"shards": shards}}})
    )


def test_the_stream_is_caught_up_once_the_checkpoint_is_its_last_record(
    aws_client: Any, tmp_path: Path
) -> None:
    kinesis = aws_client("kinesis")
    kinesis.create_stream(StreamName="events", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName="events")
    assert first_start.stream_caught_up(kinesis, "events", tmp_path)  # empty, no checkpoint

    first = kinesis.put_record(StreamName="events", Data=b"1", PartitionKey="k")
    last = kinesis.put_record(StreamName="events", Data=b"2", PartitionKey="k")
    assert not first_start.stream_caught_up(kinesis, "events", tmp_path)  # nothing counted
    _checkpoint(tmp_path, first["ShardId"], first["SequenceNumber"])
    assert not first_start.stream_caught_up(kinesis, "events", tmp_path)  # one left
    _checkpoint(tmp_path, last["ShardId"], last["SequenceNumber"])
    assert first_start.stream_caught_up(kinesis, "events", tmp_path)

    live = kinesis.put_record(StreamName="events", Data=b"3", PartitionKey="k")  # after history
    assert not first_start.stream_caught_up(kinesis, "events", tmp_path)
    (arrived,) = _records_after(kinesis, last)
    assert arrived["SequenceNumber"] == live["SequenceNumber"]
    sent_by = arrived["ApproximateArrivalTimestamp"] - timedelta(microseconds=1)
    assert first_start.stream_caught_up(kinesis, "events", tmp_path, sent_by)  # live: not waited
    assert not first_start.stream_caught_up(kinesis, "events", tmp_path, sent_by + timedelta(1))


def _records_after(kinesis: Any, record: dict[str, Any]) -> list[dict[str, Any]]:
    iterator = kinesis.get_shard_iterator(
        StreamName="events",
        ShardId=record["ShardId"],
        ShardIteratorType="AFTER_SEQUENCE_NUMBER",
        StartingSequenceNumber=record["SequenceNumber"],
    )["ShardIterator"]
    return kinesis.get_records(ShardIterator=iterator)["Records"]
