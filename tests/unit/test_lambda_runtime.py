"""The local Lambda runtime's pure parts: batching, response reading, retries and bisection,
on-failure records, checkpoints, shard order and mapping settings. No server."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from storepulse.stream.records import StreamRecord, lambda_event
from storepulse_local.lambda_context import LambdaContext
from storepulse_local.lambda_runtime.batching import (
    EVENT_OVERHEAD_BYTES,
    MAX_PAYLOAD_BYTES,
    batch_ready,
    record_payload_bytes,
    take_batch,
)
from storepulse_local.lambda_runtime.checkpoints import (
    CheckpointStore,
    ShardCheckpoint,
    StateDirLock,
    iterator_position,
    ready_shards,
)
from storepulse_local.lambda_runtime.common import FunctionError, LambdaRuntimeError
from storepulse_local.lambda_runtime.failures import (
    MAX_MESSAGE_BYTES,
    BatchDriver,
    Condition,
    FailedBatch,
    OnFailureSender,
    on_failure_record,
)
from storepulse_local.lambda_runtime.invocation import (
    SUCCESS,
    Outcome,
    Result,
    call_handler,
    interpret_response,
)
from storepulse_local.lambda_runtime.mappings import (
    MappingConfig,
    RetryPolicy,
    is_kinesis_stream,
    wants_polling,
)
from storepulse_local.lambda_runtime.shards import MappingRunner

SHARD = "shardId-000000000001"
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/storepulse-dev-events"
ENDPOINT = "http://127.0.0.1:5055"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:storepulse-dev-stream-processor"
ROLE_ARN = "arn:aws:iam::210987654321:role/processor"
T0 = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)


def records(count: int, start: int = 1, arrived_at: datetime = T0) -> list[StreamRecord]:
    return [
        StreamRecord(SHARD, str(n), f"pk-{n}", f"data-{n}".encode(), arrived_at)
        for n in range(start, start + count)
    ]


def seqs(batch: list[StreamRecord]) -> list[str]:
    return [r.sequence_number for r in batch]


# --- batching ---------------------------------------------------------------------------------


def test_batch_takes_at_most_batch_size_records() -> None:
    assert take_batch([100] * 25, batch_size=10) == 10
    assert take_batch([100] * 3, batch_size=10) == 3


def test_batch_payload_stays_under_six_megabytes() -> None:
    mb = 1024 * 1024
    assert take_batch([2 * mb, 2 * mb, 2 * mb, 2 * mb], batch_size=100) == 2
    assert take_batch([7 * mb, 10], batch_size=100) == 1  # a lone record always goes


def test_record_payload_bytes_add_up_to_the_event_size() -> None:
    config = mapping_config()
    batch = records(5)
    event = lambda_event(batch, config.stream_arn, config.region, config.role_arn)
    estimated = EVENT_OVERHEAD_BYTES + sum(record_payload_bytes(r, config) for r in batch)
    assert estimated == len(json.dumps(event)) + 2  # one separator too many: errs on the safe side


@pytest.mark.parametrize(
    ("buffered", "window", "waited", "ended", "ready"),
    [
        (0, 0, 0.0, False, False),  # nothing to send
        (1, 0, 0.0, False, True),  # window 0: as soon as records exist
        (3, 5, 1.0, False, False),  # filling the window
        (3, 5, 5.0, False, True),  # window passed
        (10, 5, 0.0, False, True),  # batch full
        (3, 5, 0.0, True, True),  # closed shard ended: nothing more will come
    ],
)
def test_batch_ready(buffered: int, window: float, waited: float, ended: bool, ready: bool) -> None:
    assert (
        batch_ready(
            buffered=buffered,
            buffered_bytes=buffered * 100,
            batch_size=10,
            window=window,
            waited=waited,
            shard_ended=ended,
        )
        is ready
    )


def test_batch_ready_when_payload_is_full() -> None:
    full = MAX_PAYLOAD_BYTES
    assert batch_ready(buffered=2, buffered_bytes=full, batch_size=100, window=300, waited=0.0)


# --- responses --------------------------------------------------------------------------------

BATCH = ["11", "12", "13", "14"]


@pytest.mark.parametrize(
    "response",
    [None, {}, {"batchItemFailures": None}, {"batchItemFailures": []}, {"other": 1}],
)
def test_success_responses(response: Any) -> None:
    assert interpret_response(response, BATCH, True).result is Result.SUCCESS


def test_partial_failure_resumes_from_the_lowest_reported_sequence_number() -> None:
    response = {"batchItemFailures": [{"itemIdentifier": "14"}, {"itemIdentifier": "12"}]}
    outcome = interpret_response(response, BATCH, True)
    assert (outcome.result, outcome.resume_index) == (Result.PARTIAL, 1)


@pytest.mark.parametrize(
    "failures",
    [
        [{"itemIdentifier": "99"}],  # not in the batch
        [{"itemIdentifier": ""}],
        [{"itemIdentifier": None}],
        [{"ItemIdentifier": "12"}],  # bad key name
        [{"itemIdentifier": "12"}, {"itemIdentifier": "nope"}],  # one bad one spoils all
        ["12"],
        "12",
    ],
)
def test_invalid_identifiers_fail_the_whole_batch(failures: Any) -> None:
    outcome = interpret_response({"batchItemFailures": failures}, BATCH, True)
    assert outcome.result is Result.FAILED
    assert not outcome.function_error


def test_a_non_object_response_fails_the_batch() -> None:
    assert interpret_response("ok", BATCH, True).result is Result.FAILED


def test_without_report_batch_item_failures_the_response_is_ignored() -> None:
    response = {"batchItemFailures": [{"itemIdentifier": "12"}]}
    assert interpret_response(response, BATCH, False).result is Result.SUCCESS
    assert interpret_response("garbage", BATCH, False).result is Result.SUCCESS


def test_a_raising_handler_is_a_function_error() -> None:
    def handler(event: dict, context: Any) -> None:
        raise TypeError("boom")  # not to be mistaken for a marshalling error

    context = LambdaContext("f")
    outcome = call_handler(handler, {}, context, BATCH, True)
    assert (outcome.result, outcome.function_error) == (Result.FAILED, True)
    assert outcome.error == "TypeError: boom"
    assert outcome.request_id == context.aws_request_id


def test_a_deployed_functions_error_keeps_its_aws_error_type() -> None:
    def handler(event: dict, context: Any) -> None:
        raise FunctionError(
            {
                "errorMessage": "Unable to import module 'handler': No module named 'pydantic'",
                "errorType": "Runtime.ImportModuleError",
            }
        )

    outcome = call_handler(handler, {}, LambdaContext("f"), BATCH, True)
    assert (outcome.result, outcome.function_error) == (Result.FAILED, True)
    assert outcome.error == (
        "Runtime.ImportModuleError: Unable to import module 'handler': No module named 'pydantic'"
    )


def test_an_unserialisable_response_is_a_marshal_error() -> None:
    outcome = call_handler(lambda e, c: {"x": object()}, {}, LambdaContext("f"), BATCH, False)
    assert outcome.result is Result.FAILED
    assert outcome.error and outcome.error.startswith("Runtime.MarshalError")


# --- retries and bisection --------------------------------------------------------------------


class Harness:
    """A BatchDriver with a scripted handler; records what it was sent and what it did."""

    def __init__(self, policy: RetryPolicy, answer: Any, now: datetime = T0) -> None:
        self.sent: list[list[str]] = []
        self.committed: list[str] = []
        self.discarded: list[FailedBatch] = []
        self.sleeps: list[float] = []
        self.answer = answer
        self.stop_after: int | None = None
        self.driver = BatchDriver(
            self._invoke,
            policy,
            commit=lambda batch: self.committed.extend(seqs(batch)),
            discard=self.discarded.append,
            should_stop=lambda: self.stop_after is not None and len(self.sent) >= self.stop_after,
            sleep=self.sleeps.append,
            clock=lambda: now.timestamp(),
        )

    def _invoke(self, batch: list[StreamRecord]) -> Outcome:
        self.sent.append(seqs(batch))
        return self.answer(batch)


def poison(bad: str) -> Any:
    def answer(batch: list[StreamRecord]) -> Outcome:
        if bad in seqs(batch):
            return Outcome(Result.FAILED, function_error=True, error="boom")
        return SUCCESS

    return answer


def test_success_commits_the_whole_batch() -> None:
    harness = Harness(RetryPolicy(), lambda batch: SUCCESS)
    assert harness.driver.process(records(4))
    assert (harness.sent, harness.committed) == ([["1", "2", "3", "4"]], ["1", "2", "3", "4"])


def test_bisect_isolates_a_poison_record_then_retries_and_discards_it() -> None:
    policy = RetryPolicy(max_retry_attempts=2, bisect_on_error=True, backoff_seconds=0.5)
    harness = Harness(policy, poison("3"))
    assert harness.driver.process(records(8))

    assert harness.sent == [
        ["1", "2", "3", "4", "5", "6", "7", "8"],
        ["1", "2", "3", "4"],
        ["1", "2"],
        ["3", "4"],
        ["3"],
        ["3"],  # retry 1
        ["3"],  # retry 2
        ["4"],
        ["5", "6", "7", "8"],
    ]
    assert harness.committed == ["1", "2", "4", "5", "6", "7", "8"]
    [failed] = harness.discarded
    assert (seqs(failed.records), failed.condition) == (["3"], Condition.RETRIES_EXHAUSTED)
    assert failed.invoke_count == 3
    assert harness.sleeps == [0.5, 1.0]  # bisects do not back off: only retries


def test_without_bisect_the_whole_batch_is_retried_then_discarded() -> None:
    harness = Harness(RetryPolicy(max_retry_attempts=1, backoff_seconds=0), poison("2"))
    assert harness.driver.process(records(3))
    assert harness.sent == [["1", "2", "3"], ["1", "2", "3"]]
    assert harness.committed == []
    assert seqs(harness.discarded[0].records) == ["1", "2", "3"]
    assert harness.sleeps == []  # backoff 0: no pause at all


def test_zero_retries_discards_after_the_first_failure() -> None:
    harness = Harness(RetryPolicy(max_retry_attempts=0), poison("1"))
    harness.driver.process(records(1))
    assert (len(harness.sent), harness.discarded[0].invoke_count) == (1, 1)


def test_partial_failure_commits_the_prefix_and_resends_the_rest() -> None:
    answers = iter([Outcome(Result.PARTIAL, resume_index=2), SUCCESS])  # fails once, at "3"
    harness = Harness(RetryPolicy(max_retry_attempts=5), lambda batch: next(answers))
    assert harness.driver.process(records(5))
    assert harness.sent == [["1", "2", "3", "4", "5"], ["3", "4", "5"]]
    assert harness.committed == ["1", "2", "3", "4", "5"]


def test_partial_failures_count_as_retries() -> None:
    def answer(batch: list[StreamRecord]) -> Outcome:  # "2" always fails
        return Outcome(Result.PARTIAL, resume_index=seqs(batch).index("2"))

    harness = Harness(RetryPolicy(max_retry_attempts=2, bisect_on_error=True), answer)
    harness.driver.process(records(4))
    assert harness.sent == [["1", "2", "3", "4"], ["2", "3", "4"], ["2", "3", "4"]]
    assert harness.committed == ["1"]
    [failed] = harness.discarded
    assert seqs(failed.records) == ["2", "3", "4"]  # reported failures are not bisected
    assert (failed.condition, failed.invoke_count) == (Condition.RETRIES_EXHAUSTED, 3)
    assert failed.last_outcome and not failed.last_outcome.function_error


def test_an_invalid_response_is_bisected_like_an_error() -> None:
    def answer(batch: list[StreamRecord]) -> Outcome:
        return SUCCESS if len(batch) == 1 else Outcome(Result.FAILED, error="bad id")

    harness = Harness(RetryPolicy(bisect_on_error=True), answer)
    harness.driver.process(records(2))
    assert harness.sent == [["1", "2"], ["1"], ["2"]]


def test_records_past_the_maximum_age_are_discarded_without_invoking() -> None:
    old = records(2, arrived_at=T0 - timedelta(minutes=10))
    fresh = records(2, start=3, arrived_at=T0 - timedelta(seconds=5))
    harness = Harness(RetryPolicy(max_record_age_seconds=60), lambda batch: SUCCESS)
    harness.driver.process(old + fresh)
    [failed] = harness.discarded
    assert (seqs(failed.records), failed.condition) == (
        ["1", "2"],
        Condition.RECORD_AGE_EXCEEDED,
    )
    assert (failed.invoke_count, failed.last_outcome) == (0, None)
    assert harness.sent == [["3", "4"]]


def test_retries_stop_when_records_grow_too_old() -> None:
    now = {"t": T0}
    policy = RetryPolicy(max_record_age_seconds=60)  # infinite retries
    harness = Harness(policy, poison("1"))

    def later(seconds: float) -> None:
        now["t"] += timedelta(seconds=30)

    harness.driver._sleep = later
    harness.driver._clock = lambda: now["t"].timestamp()
    harness.driver.process(records(1, arrived_at=T0))
    assert len(harness.sent) == 3  # at 0 s, 30 s, 60 s; at 90 s the record is too old
    assert harness.discarded[0].condition is Condition.RECORD_AGE_EXCEEDED
    assert harness.discarded[0].invoke_count == 3


def test_stopping_between_retries_leaves_the_batch_uncommitted() -> None:
    harness = Harness(RetryPolicy(), poison("1"))  # infinite retries
    harness.stop_after = 2
    assert harness.driver.process(records(3)) is False
    assert (len(harness.sent), harness.committed, harness.discarded) == (2, [], [])


def test_backoff_doubles_up_to_a_cap() -> None:
    policy = RetryPolicy(backoff_seconds=1, max_backoff_seconds=5)
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]


# --- on-failure records -----------------------------------------------------------------------


def test_on_failure_record_has_the_kinesis_mapping_shape() -> None:
    batch = records(3, start=40)
    batch[-1] = StreamRecord(SHARD, "42", "pk", b"x", T0 + timedelta(seconds=2, milliseconds=5))
    outcome = Outcome(
        Result.FAILED, function_error=True, error="ClientError: throttled", request_id="req-1"
    )
    failed = FailedBatch(batch, Condition.RETRIES_EXHAUSTED, 3, outcome)
    record = on_failure_record(
        failed,
        function_arn=FUNCTION_ARN,
        stream_arn=STREAM_ARN,
        now=T0 + timedelta(minutes=1),
    )
    assert record == {
        "requestContext": {
            "requestId": "req-1",
            "functionArn": FUNCTION_ARN,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 3,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": "2026-11-26T11:01:00.000Z",
        "KinesisBatchInfo": {
            "shardId": SHARD,
            "startSequenceNumber": "40",
            "endSequenceNumber": "42",
            "approximateArrivalOfFirstRecord": "2026-11-26T11:00:00.000Z",
            "approximateArrivalOfLastRecord": "2026-11-26T11:00:02.005Z",
            "batchSize": 3,
            "streamArn": STREAM_ARN,
        },
        "replay": {  # ours, not AWS's: why, and the records to put back
            "reason": "ClientError: throttled",
            "records": [
                {
                    "sequenceNumber": r.sequence_number,
                    "partitionKey": r.partition_key,
                    "approximateArrivalTimestamp": r.arrived_at.isoformat(
                        timespec="milliseconds"
                    ).replace("+00:00", "Z"),
                    "data": base64.b64encode(r.data).decode(),
                }
                for r in batch
            ],
            "dataIncluded": True,
        },
    }
    json.dumps(record)  # goes out as a message body


def test_on_failure_record_keeps_sequence_numbers_when_the_data_is_too_large() -> None:
    big = [StreamRecord(SHARD, str(n), "pk", b"x" * 100_000, T0) for n in range(1, 4)]
    failed = FailedBatch(big, Condition.RETRIES_EXHAUSTED, 1, Outcome(Result.FAILED, error="E"))
    record = on_failure_record(failed, function_arn="f", stream_arn="s", now=T0)
    assert len(json.dumps(record)) < MAX_MESSAGE_BYTES
    assert record["replay"]["dataIncluded"] is False
    assert [r["sequenceNumber"] for r in record["replay"]["records"]] == ["1", "2", "3"]


def test_on_failure_record_without_function_error_or_invocation() -> None:
    bad_response = FailedBatch(records(1), Condition.RETRIES_EXHAUSTED, 1, Outcome(Result.FAILED))
    record = on_failure_record(bad_response, function_arn="f", stream_arn="s", now=T0)
    assert "functionError" not in record["responseContext"]
    assert record["requestContext"]["requestId"]  # generated when unknown

    too_old = FailedBatch(records(1), Condition.RECORD_AGE_EXCEEDED, 0, None)
    record = on_failure_record(too_old, function_arn="f", stream_arn="s", now=T0)
    assert "responseContext" not in record
    assert record["requestContext"]["condition"] == "RecordAgeExceeded"
    assert record["replay"]["reason"] == "records older than MaximumRecordAgeInSeconds"


class FakeClients:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict]] = []

    def __call__(self, service: str) -> Any:
        clients = self

        class Client:
            def __getattr__(self, name: str) -> Any:
                def call(**kwargs: Any) -> dict:
                    clients.calls.append((service, name, kwargs))
                    return {"QueueUrl": "http://q/dlq"}

                return call

        return Client()


def test_on_failure_sender_uses_sqs_and_sns() -> None:
    clients = FakeClients()
    sender = OnFailureSender(clients)
    sender.send("arn:aws:sqs:us-east-1:123456789012:dlq", {"a": 1})
    sender.send("arn:aws:sqs:us-east-1:123456789012:dlq", {"a": 2})
    sender.send("arn:aws:sns:us-east-1:123456789012:topic", {"b": 1})
    assert clients.calls == [
        ("sqs", "get_queue_url", {"QueueName": "dlq", "QueueOwnerAWSAccountId": "123456789012"}),
        ("sqs", "send_message", {"QueueUrl": "http://q/dlq", "MessageBody": '{"a": 1}'}),
        ("sqs", "send_message", {"QueueUrl": "http://q/dlq", "MessageBody": '{"a": 2}'}),
        (
            "sns",
            "publish",
            {"TopicArn": "arn:aws:sns:us-east-1:123456789012:topic", "Message": '{"b": 1}'},
        ),
    ]
    with pytest.raises(LambdaRuntimeError, match="unsupported"):
        sender.send("arn:aws:s3:::bucket", {})


# --- checkpoints and positions ----------------------------------------------------------------


def test_checkpoints_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "checkpoints.json"
    store = CheckpointStore(path)
    store.set_shard("m-1", "shardId-0", ShardCheckpoint("41"))
    store.set_shard("m-1", "shardId-0", ShardCheckpoint("42"))
    store.set_shard("m-1", "shardId-1", ShardCheckpoint("7", finished=True))
    pin = store.latest_pin("m-2", now=1000.0)

    again = CheckpointStore(path)
    assert again.shard("m-1", "shardId-0") == ShardCheckpoint("42")
    assert again.shard("m-1", "shardId-1") == ShardCheckpoint("7", finished=True)
    assert again.shard("m-1", "shardId-9") == ShardCheckpoint()
    assert again.latest_pin("m-2", now=2000.0) == pin == 1000.0  # pinned once, kept
    assert [p.name for p in path.parent.iterdir()] == ["checkpoints.json"]  # no temp files


def test_a_failed_write_leaves_the_previous_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "checkpoints.json"
    store = CheckpointStore(path)
    store.set_shard("m-1", "shardId-0", ShardCheckpoint("10"))

    def crash(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        store.set_shard("m-1", "shardId-0", ShardCheckpoint("11"))
    monkeypatch.undo()

    assert CheckpointStore(path).shard("m-1", "shardId-0").sequence_number == "10"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoints.json"]


def test_an_unreadable_checkpoint_file_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.json"
    path.write_text('{"version": 1, "mappi')
    with pytest.raises(LambdaRuntimeError, match="unreadable"):
        CheckpointStore(path)


def test_one_runtime_per_state_directory(tmp_path: Path) -> None:
    first, second = StateDirLock(tmp_path), StateDirLock(tmp_path)
    first.acquire()
    with pytest.raises(LambdaRuntimeError, match="another Lambda runtime"):
        second.acquire()
    first.release()
    second.acquire()
    second.release()


def test_iterator_position() -> None:
    none = ShardCheckpoint()
    assert iterator_position(ShardCheckpoint("42"), "LATEST", None, 5.0) == {
        "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
        "StartingSequenceNumber": "42",
    }
    assert iterator_position(none, "TRIM_HORIZON") == {"ShardIteratorType": "TRIM_HORIZON"}
    assert iterator_position(none, "AT_TIMESTAMP", T0) == {
        "ShardIteratorType": "AT_TIMESTAMP",
        "Timestamp": T0,
    }
    assert iterator_position(none, "LATEST", None, 5.0) == {
        "ShardIteratorType": "AT_TIMESTAMP",
        "Timestamp": 5.0,
    }


def shard(shard_id: str, parent: str | None = None, adjacent: str | None = None) -> dict:
    out: dict[str, Any] = {"ShardId": shard_id}
    if parent:
        out["ParentShardId"] = parent
    if adjacent:
        out["AdjacentParentShardId"] = adjacent
    return out


def test_children_start_only_after_their_parents_finish() -> None:
    listing = [shard("s0"), shard("s1"), shard("s2", "s0"), shard("s3", "s0"), shard("s4", "s1")]
    assert ready_shards(listing, finished=set(), started=set()) == ["s0", "s1"]
    assert ready_shards(listing, finished=set(), started={"s0", "s1"}) == []
    assert ready_shards(listing, finished={"s0"}, started={"s0", "s1"}) == ["s2", "s3"]


def test_a_merged_shard_waits_for_both_parents() -> None:
    listing = [shard("s0"), shard("s1"), shard("s2", "s0", "s1")]
    assert ready_shards(listing, finished={"s0"}, started={"s0", "s1"}) == []
    assert ready_shards(listing, finished={"s0", "s1"}, started={"s0", "s1"}) == ["s2"]


def test_a_parent_no_longer_listed_has_expired() -> None:
    assert ready_shards([shard("s5", "s1")], finished=set(), started=set()) == ["s5"]


# --- mappings and handlers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "running", "polled"),
    [
        ("Enabled", False, True),
        ("Enabling", False, True),
        ("Creating", False, False),  # not yet: it may still end up Disabled
        ("Updating", True, True),
        ("Updating", False, False),
        ("Disabled", True, False),
        ("Disabling", True, False),
        (None, False, False),
    ],
)
def test_which_mappings_are_polled(state: str | None, running: bool, polled: bool) -> None:
    assert wants_polling(state, running) is polled


def test_only_kinesis_streams_are_event_sources() -> None:
    assert is_kinesis_stream(STREAM_ARN)
    assert not is_kinesis_stream("arn:aws:sqs:us-east-1:123456789012:queue")
    assert not is_kinesis_stream(
        "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-11-26T00:00:00.000"
    )


def mapping_config(**mapping: Any) -> MappingConfig:
    base = {"UUID": "m-1", "EventSourceArn": STREAM_ARN, "FunctionArn": FUNCTION_ARN}
    function = {
        "Configuration": {
            "FunctionName": "storepulse-dev-stream-processor",
            "FunctionArn": FUNCTION_ARN,
            "Handler": "handler.handler",
            "Role": ROLE_ARN,
            "Timeout": 30,
            "MemorySize": 256,
            "Environment": {"Variables": {"A": "1"}},
            "CodeSha256": "c2hh",
            "Version": "$LATEST",
        },
        "Tags": {"team": "data"},
    }
    return MappingConfig.from_aws({**base, **mapping}, function, backoff=0)


def test_mapping_defaults_follow_aws() -> None:
    config = mapping_config()
    assert (config.batch_size, config.batching_window, config.starting_position) == (
        100,
        0.0,
        "TRIM_HORIZON",
    )
    assert config.policy == RetryPolicy(-1, -1, False, backoff_seconds=0)
    assert (config.report_item_failures, config.on_failure, config.ignored) == (False, None, ())
    assert (config.region, config.account_id, config.stream_name) == (
        "us-east-1",
        "210987654321",
        "storepulse-dev-events",
    )
    assert (config.timeout, config.memory_size, dict(config.environment)) == (30, 256, {"A": "1"})
    assert (config.code_sha256, config.version) == ("c2hh", "$LATEST")


def test_an_idle_shard_is_read_at_lambdas_cadence_for_the_mapping() -> None:
    """Shared throughput about once a second, a DynamoDB stream 4 times a second (waited on
    while caught up), an enhanced fan-out consumer's records pushed (an idle shard read once a
    second, after the longest wait for a push); a given poll interval (tests) wins, and then
    nothing is waited on."""
    shared = mapping_config()
    consumer = mapping_config(EventSourceArn=f"{STREAM_ARN}/consumer/c:1700000000")
    table_stream = mapping_config(
        EventSourceArn="arn:aws:dynamodb:us-east-1:1:table/t/stream/2026-11-26T00:00:00.000"
    )
    assert (shared.enhanced_fan_out, consumer.enhanced_fan_out) == (False, True)
    assert consumer.stream_name == shared.stream_name
    assert [c.idle_poll_seconds for c in (shared, consumer, table_stream)] == [1.0, 1.0, 0.25]

    def runner(poll_interval: float | None, config: MappingConfig = consumer) -> MappingRunner:
        return MappingRunner(
            config,
            lambda event, context: None,
            client=lambda service: SimpleNamespace(meta=SimpleNamespace(endpoint_url=ENDPOINT)),
            store=CheckpointStore(Path("/nonexistent/checkpoints.json")),
            sender=OnFailureSender(lambda service: None),
            poll_interval=poll_interval,
            on_shard_finished=lambda: None,
        )

    assert (runner(None).poll_interval, runner(0.02).poll_interval) == (1.0, 0.02)
    pushed = runner(None).push
    assert (
        pushed is not None and pushed.url == f"{ENDPOINT}/storepulse-local/kinesis/wait-for-records"
    )
    assert runner(0.02).push is None
    waited = runner(None, table_stream).push  # a caught-up table stream: waited on, then paced
    assert waited is not None and waited.paced
    assert waited.url == f"{ENDPOINT}/storepulse-local/dynamodb-streams/wait-for-records"
    assert runner(None, shared).push is None


def test_function_variables_are_strings_as_lambda_hands_them_over() -> None:
    """moto's CloudFormation keeps a variable set from a Number parameter as a number."""
    function = {
        "Configuration": {
            "FunctionName": "f",
            "FunctionArn": FUNCTION_ARN,
            "Handler": "handler.handler",
            "Role": ROLE_ARN,
            "Environment": {"Variables": {"STOREPULSE_PLAUSIBLE_PAST_DAYS": 9, "A": "x"}},
        }
    }
    base = {"UUID": "m-1", "EventSourceArn": STREAM_ARN, "FunctionArn": FUNCTION_ARN}
    config = MappingConfig.from_aws(base, function, backoff=0)
    assert dict(config.environment) == {"STOREPULSE_PLAUSIBLE_PAST_DAYS": "9", "A": "x"}


def test_mapping_settings_are_read() -> None:
    config = mapping_config(
        BatchSize=10,
        MaximumBatchingWindowInSeconds=2,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        BisectBatchOnFunctionError=True,
        MaximumRetryAttempts=0,  # falsy, but a real value
        MaximumRecordAgeInSeconds=60,
        DestinationConfig={"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:1:dlq"}},
        ParallelizationFactor=2,
        FilterCriteria={"Filters": [{"Pattern": "{}"}]},
    )
    assert (config.batch_size, config.batching_window, config.report_item_failures) == (
        10,
        2.0,
        True,
    )
    assert config.policy == RetryPolicy(0, 60, True, backoff_seconds=0)
    assert config.on_failure == "arn:aws:sqs:us-east-1:1:dlq"
    assert config.ignored == ("FilterCriteria", "ParallelizationFactor")
