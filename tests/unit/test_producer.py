"""KinesisProducer against a scripted fake client: batching, partial failures, backoff, limits."""

from __future__ import annotations

import io
import logging
import random
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from storepulse.events import (
    Event,
    InventoryAdjustmentV1,
    PosSaleV1,
    WebPageViewV1,
    partition_key,
)
from storepulse.producer import (
    MAX_BYTES_PER_CALL,
    MAX_RECORD_BYTES,
    KinesisProducer,
    ProducerError,
    read_events,
)

STREAM = "storepulse-test-events"
THROTTLED = "ProvisionedThroughputExceededException"
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)

# A scripted answer to one put_records call: the indexes of the entries that fail, or an
# exception to raise for the whole call.
Behaviour = Callable[[list[dict[str, Any]]], set[int]] | Exception


def accept_all(records: list[dict[str, Any]]) -> set[int]:
    return set()


def fail_every_third(records: list[dict[str, Any]]) -> set[int]:
    return {index for index in range(len(records)) if index % 3 == 2}


def client_error(code: str, status: int = 400) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PutRecords")


class FakeKinesis:
    """Records put_records calls; answers each with the next scripted behaviour (then accepts)."""

    def __init__(self, *script: Behaviour, repeat: Behaviour | None = None) -> None:
        self.script = list(script)
        self.repeat = repeat or accept_all
        self.calls: list[list[dict[str, Any]]] = []
        self.stored: list[tuple[bytes, str]] = []  # accepted (data, partition key), in order

    def put_records(self, *, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        assert StreamName == STREAM
        self.calls.append(list(Records))
        behaviour = self.script.pop(0) if self.script else self.repeat
        if isinstance(behaviour, Exception):
            raise behaviour
        failing = behaviour(Records)
        entries = [self._answer(record, index in failing) for index, record in enumerate(Records)]
        return {"FailedRecordCount": len(failing), "Records": entries}

    def _answer(self, record: dict[str, Any], fail: bool) -> dict[str, str]:
        if fail:
            return {"ErrorCode": THROTTLED, "ErrorMessage": "Rate exceeded for shard"}
        self.stored.append((record["Data"], record["PartitionKey"]))
        shard = zlib.crc32(record["PartitionKey"].encode()) % 2
        return {"ShardId": f"shardId-00000000000{shard}", "SequenceNumber": str(len(self.stored))}


class Sleeps(list[float]):
    """An injected ``sleep`` that records the delays instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class UpperBound(random.Random):
    """Jitter that always picks the ceiling, so the backoff schedule becomes visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


def make_events(count: int) -> list[Event]:
    return [_event(index) for index in range(count)]


def _event(index: int) -> Event:
    envelope: dict[str, Any] = {
        "event_id": uuid.UUID(int=index + 1),
        "store_id": f"s-{index % 4}",
        "occurred_at": T0 + timedelta(seconds=index),
    }
    if index % 2:
        return WebPageViewV1(
            **envelope, session_id=f"sess-{index % 7}", device="mobile", page=f"/p/{index}"
        )
    return InventoryAdjustmentV1(**envelope, sku=f"SKU-{index % 5}", delta=1, reason="restock")


def producer_for(client: FakeKinesis, **options: Any) -> tuple[KinesisProducer, Sleeps]:
    sleeps = Sleeps()
    options = {"rng": random.Random(7), **options}
    return KinesisProducer(stream_name=STREAM, client=client, sleep=sleeps, **options), sleeps


def wire(events: list[Event]) -> list[tuple[bytes, str]]:
    return [(event.to_json(), partition_key(event)) for event in events]


def sent(call: list[dict[str, Any]]) -> list[tuple[bytes, str]]:
    return [(record["Data"], record["PartitionKey"]) for record in call]


def test_events_are_sent_in_batches_of_at_most_500() -> None:
    events, fake = make_events(1234), FakeKinesis()
    producer, sleeps = producer_for(fake)

    report = producer.send(events)

    assert [len(call) for call in fake.calls] == [500, 500, 234]
    assert [record for call in fake.calls for record in sent(call)] == wire(events)
    assert (report.records_sent, report.batches, report.attempts) == (1234, 3, 3)
    assert (report.retried_records, sleeps) == (0, [])
    assert report.bytes_sent == sum(len(event.to_json()) for event in events)
    assert sum(report.shards.values()) == 1234
    assert set(report.shards) == {"shardId-000000000000", "shardId-000000000001"}


def test_batches_are_split_at_5_mib_counting_partition_keys() -> None:
    record = (b"x" * (MAX_RECORD_BYTES - 1), "k")  # exactly 1 MiB with its key: still allowed
    fake = FakeKinesis()
    producer, _ = producer_for(fake)

    report = producer.send_raw([record] * 11)

    assert [len(call) for call in fake.calls] == [5, 5, 1]  # 5 x 1 MiB is exactly the limit
    for call in fake.calls:
        assert sum(len(r["Data"]) + len(r["PartitionKey"]) for r in call) <= MAX_BYTES_PER_CALL
    assert (report.records_sent, report.batches) == (11, 3)
    assert report.bytes_sent == 11 * (MAX_RECORD_BYTES - 1)


def test_a_byte_over_5_mib_starts_a_new_batch() -> None:
    fake = FakeKinesis()
    producer, _ = producer_for(fake)
    big = (b"x" * (MAX_RECORD_BYTES - 1), "k")

    producer.send_raw([*[big] * 4, (b"x" * (MAX_RECORD_BYTES - 2), "kk"), (b"", "k")])

    assert [len(call) for call in fake.calls] == [5, 1]


def test_partial_failures_resend_only_the_failed_entries_before_the_next_batch() -> None:
    events = make_events(1234)
    script = [fail_every_third, accept_all] * 3
    fake = FakeKinesis(*script)
    producer, sleeps = producer_for(fake)

    report = producer.send(events)

    assert [len(call) for call in fake.calls] == [500, 166, 500, 166, 234, 78]
    for first, retry in zip(fake.calls[0::2], fake.calls[1::2], strict=True):
        assert retry == [first[index] for index in sorted(fail_every_third(first))]
    assert sent(fake.calls[2])[0] == wire(events)[500]  # next batch only after the retry
    assert Counter(fake.stored) == Counter(wire(events))  # every event exactly once
    assert (report.records_sent, report.batches, report.attempts) == (1234, 3, 6)
    assert report.retried_records == 166 + 166 + 78
    assert len(sleeps) == 3


def test_exhausted_attempts_raise_with_counts_and_keep_the_accepted_report() -> None:
    events = make_events(1234)
    fake = FakeKinesis(repeat=fail_every_third)
    producer, _ = producer_for(fake, max_attempts=3)

    with pytest.raises(ProducerError) as caught:
        producer.send(events)

    # 500 -> 166 fail -> 55 fail -> 18 fail; the two later batches are never sent.
    error = caught.value
    assert [len(call) for call in fake.calls] == [500, 166, 55]
    assert error.undelivered == 18 + 734
    assert error.error_codes == {THROTTLED: 18}
    assert "752 of 1234 records not delivered" in str(error)
    assert (error.report.records_sent, error.report.attempts) == (482, 3)
    assert error.report.retried_records == 166 + 55
    assert len(fake.stored) == len(set(fake.stored)) == 482


def test_whole_call_throttling_resends_the_batch() -> None:
    events = make_events(10)
    fake = FakeKinesis(client_error(THROTTLED), client_error("InternalFailure", 500))
    producer, sleeps = producer_for(fake)

    report = producer.send(events)

    assert fake.calls[0] == fake.calls[1] == fake.calls[2]
    assert fake.stored == wire(events)
    assert (report.records_sent, report.attempts, report.retried_records) == (10, 3, 0)
    assert len(sleeps) == 2


def test_connection_errors_are_retried() -> None:
    fake = FakeKinesis(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    producer, _ = producer_for(fake)

    assert producer.send(make_events(3)).records_sent == 3
    assert len(fake.calls) == 2


def test_missing_stream_fails_at_once() -> None:
    fake = FakeKinesis(repeat=client_error("ResourceNotFoundException"))
    producer, sleeps = producer_for(fake)

    with pytest.raises(ProducerError) as caught:
        producer.send(make_events(10))

    assert caught.value.error_codes == {"ResourceNotFoundException": 10}
    assert (caught.value.undelivered, len(fake.calls), sleeps) == (10, 1, [])


def test_response_with_wrong_entry_count_is_not_guessed() -> None:
    class Short(FakeKinesis):
        def put_records(self, **kwargs: Any) -> dict[str, Any]:
            return {"FailedRecordCount": 0, "Records": super().put_records(**kwargs)["Records"][1:]}

    producer, _ = producer_for(Short())

    with pytest.raises(ProducerError, match="MalformedResponseError"):
        producer.send(make_events(3))


def test_backoff_delays_grow_and_are_capped() -> None:
    fake = FakeKinesis(repeat=client_error(THROTTLED))
    producer, sleeps = producer_for(fake, rng=UpperBound(), base_delay=0.05, max_delay=0.5)

    with pytest.raises(ProducerError):
        producer.send(make_events(1))

    assert len(fake.calls) == 8  # max_attempts, no sleep after the last one
    assert sleeps == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5])


def test_backoff_jitter_stays_below_the_ceiling() -> None:
    fake = FakeKinesis(repeat=client_error(THROTTLED))
    producer, sleeps = producer_for(fake, max_attempts=40, base_delay=0.05, max_delay=2.0)

    with pytest.raises(ProducerError):
        producer.send(make_events(1))

    ceilings = [min(2.0, 0.05 * 2**n) for n in range(39)]
    assert all(0 <= delay <= cap for delay, cap in zip(sleeps, ceilings, strict=True))
    assert len(set(sleeps)) == len(sleeps)  # jittered, not a fixed schedule


def _huge_sale() -> PosSaleV1:
    # 1,000 lines of 4-byte characters: ~1.08 MB of valid JSON, over the 1 MiB record limit.
    line = {"sku": "😀" * 128, "category": "😀" * 128, "quantity": 1, "unit_price": "1"}
    return PosSaleV1(
        event_id=uuid.UUID(int=999_999),
        store_id="s-big",
        occurred_at=T0,
        order_id="o-big",
        channel="online",
        currency="EUR",
        lines=[line] * 1000,
    )


def test_oversized_event_is_rejected_before_anything_is_sent() -> None:
    fake = FakeKinesis()
    producer, _ = producer_for(fake)
    events = [*make_events(600), _huge_sale()]

    with pytest.raises(ValueError, match=r"event 00000000-0000-0000-0000-0000000f423f is 1,082,"):
        producer.send(events)

    assert fake.calls == []


def test_oversized_raw_record_is_rejected_before_anything_is_sent() -> None:
    fake = FakeKinesis()
    producer, _ = producer_for(fake)

    with pytest.raises(ValueError, match=r"record #1 is 1,048,577 bytes"):
        producer.send_raw([(b"ok", "k"), (b"x" * MAX_RECORD_BYTES, "k")])

    assert fake.calls == []


def test_partition_key_length_is_checked() -> None:
    producer, _ = producer_for(FakeKinesis())

    with pytest.raises(ValueError, match="partition key must be 1-256 characters"):
        producer.send_raw([(b"x", "")])


def test_concurrent_use_of_one_producer_is_refused() -> None:
    class Reentrant(FakeKinesis):
        def put_records(self, **kwargs: Any) -> dict[str, Any]:
            producer.send(make_events(1))  # as a second thread sharing the producer would
            return super().put_records(**kwargs)

    producer, _ = producer_for(Reentrant())

    with pytest.raises(RuntimeError, match="one producer per thread"):
        producer.send(make_events(1))

    producer._client = FakeKinesis()
    assert producer.send(make_events(2)).records_sent == 2  # the guard was released


def test_send_logs_one_info_line_with_numbers(caplog: pytest.LogCaptureFixture) -> None:
    producer, _ = producer_for(FakeKinesis(fail_every_third))

    with caplog.at_level(logging.INFO, logger="storepulse.producer"):
        producer.send(make_events(12))

    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1
    assert infos[0].name == "storepulse.producer"
    assert "sent 12 records" in infos[0].getMessage()
    assert "1 batches" in infos[0].getMessage()
    assert "4 retried" in infos[0].getMessage()


def test_empty_input_sends_nothing() -> None:
    fake = FakeKinesis()
    producer, _ = producer_for(fake)

    report = producer.send([])

    assert (report.records_sent, report.batches, report.attempts, fake.calls) == (0, 0, 0, [])


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        KinesisProducer(stream_name=STREAM, client=FakeKinesis(), max_attempts=0)


def test_read_events_reports_invalid_lines_by_number() -> None:
    valid = [event.to_json() + b"\n" for event in make_events(3)]
    lines: Iterator[bytes] = iter([valid[0], b"\n", b"{not json\n", valid[1], b"[]\n", valid[2]])
    errors = io.StringIO()

    events, invalid = read_events(lines, errors)

    assert events == make_events(3)
    assert invalid == 2
    assert errors.getvalue().splitlines() == [
        "line 3: not valid JSON: key must be a string at line 1 column 2",
        "line 5: event must be a JSON object, not array",
    ]
