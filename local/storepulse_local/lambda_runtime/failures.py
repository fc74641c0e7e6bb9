"""Failed batches: retries and bisection, then the on-failure record and its destination."""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from storepulse_local.lambda_runtime.common import ClientFactory, LambdaRuntimeError
from storepulse_local.lambda_runtime.invocation import Outcome, Result
from storepulse_local.lambda_runtime.mappings import RetryPolicy
from storepulse_local.lambda_runtime.sources import KINESIS, PolledRecord, Source


class Condition(StrEnum):
    RETRIES_EXHAUSTED = "RetryAttemptsExhausted"
    RECORD_AGE_EXCEEDED = "RecordAgeExceeded"


@dataclass(frozen=True)
class FailedBatch:
    """Records given up on, with what an on-failure record says about them."""

    records: list[PolledRecord]
    condition: Condition
    invoke_count: int
    last_outcome: Outcome | None


@dataclass
class _Attempt:
    records: list[PolledRecord]
    retries: int = 0
    invokes: int = 0
    last: Outcome | None = None


class BatchDriver:
    """Takes one batch to the end: every record committed (processed) or discarded, in order.

    ``invoke`` runs the handler; ``commit`` and ``discard`` checkpoint. Stopping is honoured
    between invocations, never during one: what was not committed is re-read after a restart.
    """

    def __init__(
        self,
        invoke: Callable[[list[PolledRecord]], Outcome],
        policy: RetryPolicy,
        *,
        commit: Callable[[list[PolledRecord]], None],
        discard: Callable[[FailedBatch], None],
        should_stop: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], Any] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._invoke, self._policy = invoke, policy
        self._commit, self._discard = commit, discard
        self._should_stop, self._sleep, self._clock = should_stop, sleep, clock

    def process(self, records: list[PolledRecord]) -> bool:
        """False when stopped before the batch was finished."""
        pending = deque([_Attempt(list(records))])
        first = True
        while pending:
            if not first and self._should_stop():
                return False
            first = False
            attempt = pending.popleft()
            if self._drop_expired(attempt):
                self._run(attempt, pending)
        return True

    def _drop_expired(self, attempt: _Attempt) -> bool:
        """Discard records past MaximumRecordAgeInSeconds; True if some records remain."""
        expired = self._policy.expired_prefix(attempt.records, self._clock())
        if expired:
            self._discard(
                FailedBatch(
                    attempt.records[:expired],
                    Condition.RECORD_AGE_EXCEEDED,
                    attempt.invokes,
                    attempt.last,
                )
            )
            attempt.records = attempt.records[expired:]
        return bool(attempt.records)

    def _run(self, attempt: _Attempt, pending: deque[_Attempt]) -> None:
        outcome = self._invoke(attempt.records)
        attempt.invokes, attempt.last = attempt.invokes + 1, outcome
        if outcome.result is Result.SUCCESS:
            self._commit(attempt.records)
            return
        if outcome.result is Result.PARTIAL:
            done, attempt.records = (
                attempt.records[: outcome.resume_index],
                attempt.records[outcome.resume_index :],
            )
            if done:
                self._commit(done)
        elif self._policy.bisect_on_error and len(attempt.records) > 1:
            middle = len(attempt.records) // 2  # a bisect is not a retry: halves keep the count
            pending.appendleft(_Attempt(attempt.records[middle:], attempt.retries))
            pending.appendleft(_Attempt(attempt.records[:middle], attempt.retries))
            return
        if self._policy.exhausted(attempt.retries):
            self._discard(
                FailedBatch(attempt.records, Condition.RETRIES_EXHAUSTED, attempt.invokes, outcome)
            )
            return
        attempt.retries += 1
        if pause := self._policy.backoff(attempt.retries):
            self._sleep(pause)
        pending.appendleft(attempt)


def _iso_millis(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# SQS's message size limit (SNS: the same); the records' data is left out beyond it.
MAX_MESSAGE_BYTES: Final = 256 * 1024
MAX_REASON_CHARS: Final = 1000


def failure_reason(failed: FailedBatch) -> str:
    """Why the batch was given up, from the last invocation's outcome."""
    outcome = failed.last_outcome
    if failed.condition is Condition.RECORD_AGE_EXCEEDED:
        return "records older than MaximumRecordAgeInSeconds"
    if outcome is None or outcome.result is Result.SUCCESS:
        return failed.condition.value
    if outcome.result is Result.PARTIAL:
        return "the handler kept reporting these records as failed (batchItemFailures)"
    return (outcome.error or "the handler failed")[:MAX_REASON_CHARS]


def _replay(failed: FailedBatch, with_data: bool, source: Source) -> dict[str, Any]:
    return {
        "reason": failure_reason(failed),
        "records": [source.replay_entry(r, with_data) for r in failed.records],
        "dataIncluded": with_data,
    }


def on_failure_record(
    failed: FailedBatch,
    *,
    function_arn: str,
    stream_arn: str,
    now: datetime,
    source: Source = KINESIS,
) -> dict[str, Any]:
    """The document Lambda sends to a Kinesis mapping's OnFailure destination. Without any
    invocation (records too old on arrival) there is no response to describe.

    Beyond AWS's fields, ``replay`` says why the batch was given up and lists its records
    (data base64, unless that would pass the message size limit: then only their sequence
    numbers, readable from the stream while it retains them), so an operator can put them back
    once the cause is fixed."""
    first, last = failed.records[0], failed.records[-1]
    outcome = failed.last_outcome
    record: dict[str, Any] = {
        "requestContext": {
            "requestId": (outcome and outcome.request_id) or str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": failed.condition.value,
            "approximateInvokeCount": failed.invoke_count,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        "version": "1.0",
        "timestamp": _iso_millis(now),
        source.batch_info_key: {
            "shardId": first.shard_id,
            "startSequenceNumber": first.sequence_number,
            "endSequenceNumber": last.sequence_number,
            "approximateArrivalOfFirstRecord": _iso_millis(first.arrived_at),
            "approximateArrivalOfLastRecord": _iso_millis(last.arrived_at),
            "batchSize": len(failed.records),
            "streamArn": stream_arn,
        },
    }
    if outcome is None:
        del record["responseContext"]
    elif outcome.function_error:
        record["responseContext"]["functionError"] = "Unhandled"
    record["replay"] = _replay(failed, True, source)
    if len(json.dumps(record)) > MAX_MESSAGE_BYTES:
        record["replay"] = _replay(failed, False, source)
    return record


class OnFailureSender:
    """Sends on-failure records to SQS queues (SendMessage) and SNS topics (Publish)."""

    def __init__(self, client: ClientFactory) -> None:
        self._client = client
        self._queue_urls: dict[str, str] = {}

    def send(self, destination: str, record: dict[str, Any]) -> None:
        service = destination.split(":")[2]
        body = json.dumps(record)
        if service == "sqs":
            self._client("sqs").send_message(
                QueueUrl=self._queue_url(destination), MessageBody=body
            )
        elif service == "sns":
            self._client("sns").publish(TopicArn=destination, Message=body)
        else:
            raise LambdaRuntimeError(f"unsupported on-failure destination {destination}")

    def _queue_url(self, arn: str) -> str:
        if arn not in self._queue_urls:
            _, _, _, _, account, name = arn.split(":", 5)
            self._queue_urls[arn] = self._client("sqs").get_queue_url(
                QueueName=name, QueueOwnerAWSAccountId=account
            )["QueueUrl"]
        return self._queue_urls[arn]
