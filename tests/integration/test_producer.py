"""KinesisProducer and its CLI against the embedded AWS: exactly once, in order, byte-identical."""

from __future__ import annotations

import io
import json
import sys
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storepulse.config import settings
from storepulse.events import (
    Event,
    InventoryAdjustmentV1,
    PosSaleV1,
    StoreFootTrafficV1,
    WebAddToCartV1,
    WebPageViewV1,
    parse_event,
    partition_key,
)
from storepulse.producer import KinesisProducer, main

STREAM = "storepulse-it-events"
T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
LINE = {"sku": "SKU-1", "category": "coffee", "quantity": 2, "unit_price": "3.50"}


def make_events(count: int) -> list[Event]:
    """Events of five types spread over 5 stores and 20 web sessions (25 partition keys)."""
    return [_event(index) for index in range(count)]


def _event(index: int) -> Event:
    envelope: dict[str, Any] = {
        "event_id": uuid.UUID(int=index + 1),
        "store_id": f"s-{index % 5}",
        "occurred_at": T0 + timedelta(milliseconds=index),
    }
    session: dict[str, Any] = {"session_id": f"sess-{index % 20}", "device": "mobile"}
    match index % 5:
        case 0:
            return PosSaleV1(
                **envelope, order_id=f"o-{index}", channel="in_store", currency="EUR", lines=[LINE]
            )
        case 1:
            return WebPageViewV1(**envelope, **session, page=f"/products/{index}")
        case 2:
            return WebAddToCartV1(**envelope, **session, sku="SKU-1", quantity=1, unit_price="3.50")
        case 3:
            return InventoryAdjustmentV1(**envelope, sku="SKU-1", delta=-1, reason="shrinkage")
        case _:
            return StoreFootTrafficV1(
                **envelope, sensor_id="door-1", entries=3, exits=2, interval_seconds=60
            )


def create_stream(kinesis: Any, name: str = STREAM) -> None:
    kinesis.create_stream(StreamName=name, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )


@pytest.fixture
def kinesis(aws_client) -> Any:
    client = aws_client("kinesis")
    create_stream(client)
    return client


def read_stream(kinesis: Any, name: str = STREAM) -> dict[str, list[bytes]]:
    """Every record's data per shard id, in shard (sequence number) order."""
    shards = kinesis.describe_stream(StreamName=name)["StreamDescription"]["Shards"]
    return {shard["ShardId"]: _read_shard(kinesis, name, shard["ShardId"]) for shard in shards}


def _read_shard(kinesis: Any, name: str, shard_id: str) -> list[bytes]:
    iterator = kinesis.get_shard_iterator(
        StreamName=name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    data: list[bytes] = []
    while iterator:
        page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        if not page["Records"]:
            break
        data.extend(record["Data"] for record in page["Records"])
        iterator = page.get("NextShardIterator")
    return data


def by_event_id(records: list[bytes]) -> dict[str, bytes]:
    ids = Counter(parse_event(data).event_id for data in records)
    duplicated = {event_id for event_id, count in ids.items() if count > 1}
    assert not duplicated, f"delivered more than once: {sorted(duplicated)[:5]}"
    return {parse_event(data).event_id: data for data in records}


def order_per_key(records: list[bytes] | list[Event]) -> dict[str, list[str]]:
    order: dict[str, list[str]] = defaultdict(list)
    for item in records:
        event = item if isinstance(item, Event) else parse_event(item)
        order[partition_key(event)].append(event.event_id)
    return dict(order)


def test_events_arrive_exactly_once_in_order_and_byte_identical(kinesis) -> None:
    events = make_events(1_200)

    report = KinesisProducer(stream_name=STREAM, client=kinesis).send(events)

    shards = read_stream(kinesis)
    records = [data for shard in shards.values() for data in shard]
    assert by_event_id(records) == {event.event_id: event.to_json() for event in events}
    # A key lives on one shard, so reading shard by shard gives each key's order.
    assert order_per_key(records) == order_per_key(events)
    assert (report.records_sent, report.batches, report.retried_records) == (1_200, 3, 0)
    assert report.shards == {shard_id: len(data) for shard_id, data in shards.items()}
    assert all(report.shards.values())  # both shards were used


class FirstCallPartlyFails:
    """The real client, except that the first put_records writes only two of every three entries
    and reports the third as throttled, in its position, as Kinesis does."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: list[int] = []

    def put_records(self, *, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.calls.append(len(Records))
        if len(self.calls) > 1:
            return self.real.put_records(StreamName=StreamName, Records=Records)
        failed = {index for index in range(len(Records)) if index % 3 == 2}
        kept = [record for index, record in enumerate(Records) if index not in failed]
        response = self.real.put_records(StreamName=StreamName, Records=kept)
        written = iter(response["Records"])
        throttled = {
            "ErrorCode": "ProvisionedThroughputExceededException",
            "ErrorMessage": "Rate exceeded for shard (injected)",
        }
        entries = [throttled if i in failed else next(written) for i in range(len(Records))]
        return {**response, "FailedRecordCount": len(failed), "Records": entries}


def test_partial_failure_delivers_every_event_exactly_once(kinesis) -> None:
    events = make_events(600)
    client = FirstCallPartlyFails(kinesis)

    report = KinesisProducer(stream_name=STREAM, client=client, base_delay=0.001).send(events)

    assert client.calls == [500, 166, 100]  # the failed entries go again before the next batch
    shards = read_stream(kinesis)
    records = [data for shard in shards.values() for data in shard]
    assert by_event_id(records) == {event.event_id: event.to_json() for event in events}
    assert (report.records_sent, report.retried_records, report.attempts) == (600, 166, 3)
    first_batch = {event.event_id for event in events[:500]}
    for data in shards.values():  # a retry may reorder within its batch, never across batches
        in_first = [parse_event(record).event_id in first_batch for record in data]
        assert in_first == sorted(in_first, reverse=True)


def test_cli_sends_valid_lines_and_names_the_invalid_one(
    kinesis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = make_events(10)
    lines = [event.to_json().decode() for event in events]
    lines.insert(6, '{"schema": "pos.sale", "version": 1, "event_id": "nope"}')  # line 7
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")

    code = main(["--stream", STREAM, "--file", str(path)])

    out, err = capsys.readouterr()
    assert code == 1
    assert "line 7: " in err
    assert "Traceback" not in err
    assert json.loads(out.strip())["records_sent"] == 10
    assert len(out.strip().splitlines()) == 1
    records = [data for shard in read_stream(kinesis).values() for data in shard]
    assert by_event_id(records) == {event.event_id: event.to_json() for event in events}


def test_cli_reads_stdin_into_the_default_stream(
    aws_client, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    kinesis, name = aws_client("kinesis"), settings().resource_name("events")
    create_stream(kinesis, name)
    events = make_events(3)
    data = b"".join(event.to_json() + b"\n" for event in events)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))

    assert main([]) == 0

    assert json.loads(capsys.readouterr().out)["records_sent"] == 3
    records = [record for shard in read_stream(kinesis, name).values() for record in shard]
    assert sorted(records) == sorted(event.to_json() for event in events)


def test_cli_missing_stream_is_a_clear_error(
    embedded_aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(make_events(1)[0].to_json() + b"\n")

    code = main(["--stream", "no-such-stream", "--file", str(path)])

    err = capsys.readouterr().err
    assert code == 2
    assert "error: stream 'no-such-stream' does not exist" in err
    assert "Traceback" not in err
