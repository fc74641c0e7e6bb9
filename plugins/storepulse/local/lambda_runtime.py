"""Local Lambda runtime: the job of Lambda's Kinesis event source mapping, for the embedded AWS.

moto stores functions and event source mappings but never runs handler code without Docker, so
this runtime does what the mapping does on AWS: it lists the enabled Kinesis mappings, loads each
function's handler in-process, polls every shard and invokes the handler with the exact Lambda
event (``storepulse.stream.records.lambda_event``) and a ``LambdaContext``.

Semantics follow AWS's documentation for Kinesis event source mappings:

- one poller per shard, shards in parallel, records of a shard strictly in order; a child shard
  (split or merge) starts only once its parents are closed and fully processed;
- a batch holds up to BatchSize records and 6 MB of payload (the invocation limit), waiting up to
  MaximumBatchingWindowInSeconds to fill (0: invoke as soon as records exist);
- with ReportBatchItemFailures the shard resumes from the lowest reported sequence number (the rest
  of the batch is re-sent); an unknown, empty or null itemIdentifier fails the whole batch;
- a failed batch is retried, bisected first with BisectBatchOnFunctionError (a bisect is not a
  retry); past MaximumRetryAttempts or MaximumRecordAgeInSeconds its metadata goes to the OnFailure
  destination (SQS or SNS) and the shard moves on;
- the starting position applies while a shard has no checkpoint. LATEST is pinned, on first sight
  of the mapping, to that moment (an AT_TIMESTAMP iterator), so that a restart or a child shard
  never skips records (moto's LastModified is second-truncated and timezone-shifted: not usable).

Checkpoints (last processed sequence number per mapping and shard) are replaced atomically in
``<state dir>/lambda-runtime/checkpoints.json`` after every batch, so a restart resumes where the
last run stopped: nothing lost, nothing re-processed. Only a crash mid-batch re-delivers that
batch, exactly as Lambda would; the stream processor's exactly-once writes make that harmless.

Handlers: ``handlers={"function-name": callable}``, or else the file
``lambdas/<folder>/<module>.py`` for the function's Handler ``<module>.<function>``, where
``<folder>`` is the function's tag ``storepulse:lambda-folder`` or, without the tag, its name
without the ``storepulse-<env>-`` prefix, dashes as underscores (``storepulse-dev-stream-processor``
-> ``stream_processor``). The function's Environment variables are put in ``os.environ`` before its
handler is loaded and stay there (handlers cache clients built from them).

Not emulated: ParallelizationFactor (always 1), TumblingWindowInSeconds, FilterCriteria, enhanced
fan-out consumers, S3 on-failure destinations, and stopping a handler that outlives its Timeout
(logged as a warning; its result is kept).

CLI: ``python -m storepulse.local.lambda_runtime [--state-dir DIR] [--poll-interval 0.2]`` runs
until SIGTERM/SIGINT, waits for mappings while none exists, and logs per-shard stats every 10 s.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import importlib.util
import itertools
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Any, Final

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from storepulse import aws
from storepulse.config import REPO_ROOT, settings
from storepulse.local.lambda_context import LambdaContext
from storepulse.stream.records import StreamRecord, lambda_event

# Explicit name: under ``python -m`` this module's __name__ is "__main__".
log = logging.getLogger("storepulse.local.lambda_runtime")

Handler = Callable[[dict[str, Any], Any], Any]
ClientFactory = Callable[[str], Any]

MAX_PAYLOAD_BYTES: Final = 6 * 1024 * 1024  # synchronous invocation payload limit
EVENT_OVERHEAD_BYTES: Final = len('{"Records": []}')
MAX_GET_RECORDS: Final = 10_000
FOLDER_TAG: Final = "storepulse:lambda-folder"
LAMBDAS_DIR: Final = REPO_ROOT / "lambdas"
CHECKPOINT_FILE: Final = "checkpoints.json"
POLLED_STATES: Final = frozenset({"Enabled", "Enabling"})
TRANSITIONAL_STATES: Final = frozenset({"Creating", "Updating"})  # keep whatever we were doing
ERROR_PAUSE_SECONDS: Final = 1.0
DESTINATION_ATTEMPTS: Final = 3
WAITING_LOG_SECONDS: Final = 30.0
# One connection per shard poller plus the coordinator; botocore's default pool holds 10.
CLIENT_CONFIG: Final = aws.DEFAULT_CONFIG.merge(Config(max_pool_connections=64))


class LambdaRuntimeError(RuntimeError):
    """The runtime cannot do what it was asked (handler missing, state directory in use...)."""


# --- mappings and handlers -----------------------------------------------------------------


def is_kinesis_stream(arn: str) -> bool:
    parts = arn.split(":", 5)
    return len(parts) == 6 and parts[2] == "kinesis" and parts[5].startswith("stream/")


def wants_polling(state: str | None, running: bool) -> bool:
    """Poll Enabled/Enabling mappings; in a transition (Creating, Updating) keep the current
    decision; anything else (Disabled, Disabling, Deleting) is not polled."""
    if state in POLLED_STATES:
        return True
    return running and state in TRANSITIONAL_STATES


def _value(source: Mapping[str, Any], key: str, default: Any) -> Any:
    """``source[key]`` unless missing or null (0 and False are real values here)."""
    value = source.get(key)
    return default if value is None else value


@dataclass(frozen=True)
class RetryPolicy:
    """What to do with a failed batch; -1 means infinite, as in the mapping's API."""

    max_retry_attempts: int = -1
    max_record_age_seconds: int = -1
    bisect_on_error: bool = False
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0

    def exhausted(self, retries: int) -> bool:
        return 0 <= self.max_retry_attempts <= retries

    def expired_prefix(self, records: Sequence[StreamRecord], now: float) -> int:
        """How many leading records are older than the maximum age (arrival order = age order)."""
        if self.max_record_age_seconds < 0:
            return 0
        limit = now - self.max_record_age_seconds
        return next(
            (i for i, r in enumerate(records) if r.arrived_at.timestamp() >= limit), len(records)
        )

    def backoff(self, retry: int) -> float:
        return min(self.backoff_seconds * 2 ** (retry - 1), self.max_backoff_seconds)


@dataclass(frozen=True)
class MappingConfig:
    """One Kinesis event source mapping and its function, as the runtime uses them."""

    uuid: str
    stream_arn: str
    function_name: str
    function_arn: str
    handler: str
    role_arn: str
    environment: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    timeout: int = 3
    memory_size: int = 128
    starting_position: str = "TRIM_HORIZON"
    starting_timestamp: datetime | None = None
    batch_size: int = 100
    batching_window: float = 0.0
    report_item_failures: bool = False
    policy: RetryPolicy = RetryPolicy()
    on_failure: str | None = None
    ignored: tuple[str, ...] = ()  # settings present on the mapping that are not emulated

    @property
    def region(self) -> str:
        return self.stream_arn.split(":")[3]

    @property
    def stream_name(self) -> str:
        return self.stream_arn.split(":", 5)[5].split("/")[1]

    @property
    def account_id(self) -> str:
        return self.role_arn.split(":")[4] or self.stream_arn.split(":")[4]

    @classmethod
    def from_aws(
        cls, mapping: Mapping[str, Any], function: Mapping[str, Any], backoff: float = 0.5
    ) -> MappingConfig:
        """From ``list_event_source_mappings`` and ``get_function`` answers."""
        conf = function["Configuration"]
        return cls(
            uuid=mapping["UUID"],
            stream_arn=mapping["EventSourceArn"],
            function_name=conf["FunctionName"],
            function_arn=conf["FunctionArn"],
            handler=conf["Handler"],
            role_arn=conf["Role"],
            environment=dict(conf.get("Environment", {}).get("Variables") or {}),
            tags=dict(function.get("Tags") or {}),
            timeout=int(_value(conf, "Timeout", 3)),
            memory_size=int(_value(conf, "MemorySize", 128)),
            starting_position=_value(mapping, "StartingPosition", "TRIM_HORIZON"),
            starting_timestamp=mapping.get("StartingPositionTimestamp"),
            batch_size=int(_value(mapping, "BatchSize", 100)),
            batching_window=float(_value(mapping, "MaximumBatchingWindowInSeconds", 0)),
            report_item_failures="ReportBatchItemFailures"
            in (mapping.get("FunctionResponseTypes") or []),
            policy=RetryPolicy(
                max_retry_attempts=int(_value(mapping, "MaximumRetryAttempts", -1)),
                max_record_age_seconds=int(_value(mapping, "MaximumRecordAgeInSeconds", -1)),
                bisect_on_error=bool(_value(mapping, "BisectBatchOnFunctionError", False)),
                backoff_seconds=backoff,
            ),
            on_failure=(mapping.get("DestinationConfig") or {})
            .get("OnFailure", {})
            .get("Destination")
            or None,
            ignored=_ignored_settings(mapping),
        )


def _ignored_settings(mapping: Mapping[str, Any]) -> tuple[str, ...]:
    ignored = [k for k in ("FilterCriteria", "TumblingWindowInSeconds") if mapping.get(k)]
    if _value(mapping, "ParallelizationFactor", 1) != 1:
        ignored.append("ParallelizationFactor")
    return tuple(ignored)


def handler_folder(function_name: str, tags: Mapping[str, str]) -> str:
    """The ``lambdas/`` folder of a function: its tag, else its name after the project prefix."""
    if tags.get(FOLDER_TAG):
        return tags[FOLDER_TAG]
    return function_name.removeprefix(settings().resource_name("")).replace("-", "_")


_module_ids = itertools.count(1)


def load_handler(handler: str, folder: Path) -> Handler:
    """Import ``<folder>/<module>.py`` afresh (own module, own caches) and return the function."""
    module_name, _, function_name = handler.rpartition(".")
    path = folder / f"{module_name.replace('.', '/')}.py"
    if not module_name or not path.is_file():
        raise LambdaRuntimeError(f"handler {handler!r}: no file {path}")
    unique = f"storepulse_lambda_{folder.name}_{module_name.replace('.', '_')}_{next(_module_ids)}"
    spec = importlib.util.spec_from_file_location(unique, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a broken handler must not take the runtime down: retried later
        del sys.modules[unique]
        raise LambdaRuntimeError(f"handler {handler!r}: importing {path} failed: {exc!r}") from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        raise LambdaRuntimeError(f"handler {handler!r}: {path} has no function {function_name!r}")
    return function


# --- batching --------------------------------------------------------------------------------


def record_payload_bytes(record: StreamRecord, config: MappingConfig) -> int:
    """Bytes ``record`` adds to the invocation payload: its JSON entry plus a separator."""
    entry = lambda_event([record], config.stream_arn, config.region, config.role_arn)["Records"]
    return len(json.dumps(entry[0])) + 2


def take_batch(sizes: Sequence[int], batch_size: int, max_bytes: int = MAX_PAYLOAD_BYTES) -> int:
    """How many leading records form the next batch: at most ``batch_size`` records and
    ``max_bytes`` of payload, and at least one (a lone record always goes, as on AWS)."""
    total, count = EVENT_OVERHEAD_BYTES, 0
    for size in sizes[:batch_size]:
        if count and total + size > max_bytes:
            break
        total, count = total + size, count + 1
    return count


def batch_ready(
    *,
    buffered: int,
    buffered_bytes: int,
    batch_size: int,
    window: float,
    waited: float,
    shard_ended: bool = False,
) -> bool:
    """Invoke now? When the batch is full (records or payload), the batching window has passed
    since the first buffered record (a window of 0 has always passed), or no record can come."""
    if buffered == 0:
        return False
    full = buffered >= batch_size or buffered_bytes >= MAX_PAYLOAD_BYTES
    return full or shard_ended or waited >= window


# --- invocation results ----------------------------------------------------------------------


class Result(StrEnum):
    SUCCESS = "success"
    PARTIAL = "partial"  # ReportBatchItemFailures: resume from resume_index
    FAILED = "failed"  # the handler raised, or its response fails the whole batch


@dataclass(frozen=True)
class Outcome:
    result: Result
    resume_index: int = 0
    function_error: bool = False  # the handler raised (AWS: functionError "Unhandled")
    error: str | None = None
    request_id: str | None = None

    def describe(self, records: Sequence[StreamRecord]) -> str:
        if self.result is Result.PARTIAL:
            return f"partial: resume at {records[self.resume_index].sequence_number}"
        return self.result.value if self.error is None else f"{self.result.value}: {self.error}"


SUCCESS: Final = Outcome(Result.SUCCESS)


def _failed(error: str, function_error: bool = False) -> Outcome:
    return Outcome(Result.FAILED, function_error=function_error, error=error)


def interpret_response(
    response: Any, sequence_numbers: Sequence[str], report_item_failures: bool
) -> Outcome:
    """Lambda's reading of a handler's response (AWS "Success and failure conditions")."""
    if not report_item_failures or response is None:
        return SUCCESS  # without ReportBatchItemFailures the response is ignored
    if not isinstance(response, dict):
        return _failed(f"response is not an object: {type(response).__name__}")
    failures = response.get("batchItemFailures")
    if failures is None or failures == []:
        return SUCCESS
    if not isinstance(failures, list):
        return _failed("batchItemFailures is not a list")
    positions = {seq: i for i, seq in enumerate(sequence_numbers)}
    indexes = []
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in positions:
            return _failed(f"invalid itemIdentifier {identifier!r}")
        indexes.append(positions[identifier])
    return Outcome(Result.PARTIAL, resume_index=min(indexes))


def call_handler(
    handler: Handler,
    event: dict[str, Any],
    context: LambdaContext,
    sequence_numbers: Sequence[str],
    report_item_failures: bool,
) -> Outcome:
    """Invoke in-process; the response goes through JSON as it would between Lambda and the
    mapping, so an unserialisable response fails like AWS's Runtime.MarshalError."""
    try:
        response = handler(event, context)
    except Exception as exc:
        log.warning("%s raised", context.function_name, exc_info=True)
        outcome = _failed(f"{type(exc).__name__}: {exc}", function_error=True)
    else:
        outcome = _interpret_json(response, sequence_numbers, report_item_failures)
    return dataclasses.replace(outcome, request_id=context.aws_request_id)


def _interpret_json(
    response: Any, sequence_numbers: Sequence[str], report_item_failures: bool
) -> Outcome:
    try:
        response = json.loads(json.dumps(response))
    except (TypeError, ValueError) as exc:
        return _failed(f"Runtime.MarshalError: {exc}", function_error=True)
    return interpret_response(response, sequence_numbers, report_item_failures)


# --- retries, bisection, on-failure ----------------------------------------------------------


class Condition(StrEnum):
    RETRIES_EXHAUSTED = "RetryAttemptsExhausted"
    RECORD_AGE_EXCEEDED = "RecordAgeExceeded"


@dataclass(frozen=True)
class FailedBatch:
    """Records given up on, with what an on-failure record says about them."""

    records: list[StreamRecord]
    condition: Condition
    invoke_count: int
    last_outcome: Outcome | None


@dataclass
class _Attempt:
    records: list[StreamRecord]
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
        invoke: Callable[[list[StreamRecord]], Outcome],
        policy: RetryPolicy,
        *,
        commit: Callable[[list[StreamRecord]], None],
        discard: Callable[[FailedBatch], None],
        should_stop: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], Any] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._invoke, self._policy = invoke, policy
        self._commit, self._discard = commit, discard
        self._should_stop, self._sleep, self._clock = should_stop, sleep, clock

    def process(self, records: list[StreamRecord]) -> bool:
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


def on_failure_record(
    failed: FailedBatch, *, function_arn: str, stream_arn: str, now: datetime
) -> dict[str, Any]:
    """The document Lambda sends to a Kinesis mapping's OnFailure destination. Without any
    invocation (records too old on arrival) there is no response to describe."""
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
        "KinesisBatchInfo": {
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


# --- checkpoints -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardCheckpoint:
    sequence_number: str | None = None  # last record processed (or discarded)
    finished: bool = False  # closed shard, fully processed: its children may start


def write_json_atomic(path: Path, data: Any) -> None:
    """Readers (and a crash) see the old file or the new one, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)  # os.replace: atomic on POSIX
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise


class CheckpointStore:
    """Positions per (mapping UUID, shard id) in one JSON file, rewritten on every change.

    Layout: ``{"version": 1, "mappings": {uuid: {"latest_pin": epoch, "shards": {shard:
    {"sequence_number": str, "finished": bool}}}}}``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data = self._load()

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"version": 1, "mappings": {}}
        except ValueError as exc:  # never guess a position: that would lose or repeat records
            raise LambdaRuntimeError(f"unreadable checkpoint file {self.path}: {exc}") from exc
        if data.get("version") != 1:
            raise LambdaRuntimeError(f"{self.path}: unknown version {data.get('version')!r}")
        return data

    def _mapping(self, mapping_uuid: str) -> dict[str, Any]:
        return self._data["mappings"].setdefault(mapping_uuid, {"shards": {}})

    def shard(self, mapping_uuid: str, shard_id: str) -> ShardCheckpoint:
        with self._lock:
            raw = self._data["mappings"].get(mapping_uuid, {}).get("shards", {}).get(shard_id)
        return ShardCheckpoint(**raw) if raw else ShardCheckpoint()

    def set_shard(self, mapping_uuid: str, shard_id: str, checkpoint: ShardCheckpoint) -> None:
        with self._lock:
            self._mapping(mapping_uuid)["shards"][shard_id] = dataclasses.asdict(checkpoint)
            write_json_atomic(self.path, self._data)

    def latest_pin(self, mapping_uuid: str, now: float) -> float:
        """The moment LATEST means for this mapping: set once, at first sight, then kept."""
        with self._lock:
            mapping = self._mapping(mapping_uuid)
            if "latest_pin" not in mapping:
                mapping["latest_pin"] = now
                write_json_atomic(self.path, self._data)
            return float(mapping["latest_pin"])


class StateDirLock:
    """One runtime per state directory: two would each deliver every record."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LambdaRuntimeError(f"another Lambda runtime uses {self.path.parent}") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def iterator_position(
    checkpoint: ShardCheckpoint,
    starting_position: str,
    starting_timestamp: datetime | None = None,
    latest_pin: float | None = None,
) -> dict[str, Any]:
    """GetShardIterator arguments for a shard: after its checkpoint, else the mapping's start."""
    if checkpoint.sequence_number:
        return {
            "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
            "StartingSequenceNumber": checkpoint.sequence_number,
        }
    if starting_position == "AT_TIMESTAMP" and starting_timestamp is not None:
        return {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": starting_timestamp}
    if starting_position == "LATEST" and latest_pin is not None:
        return {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": latest_pin}
    return {"ShardIteratorType": starting_position}


def ready_shards(
    shards: Iterable[Mapping[str, Any]], finished: set[str], started: set[str]
) -> list[str]:
    """Shards to start now: not started nor finished, every parent finished (a parent no longer
    listed has expired: nothing left to read from it)."""
    listed = {s["ShardId"] for s in shards}
    ready = []
    for shard in shards:
        shard_id = shard["ShardId"]
        parents = [shard.get("ParentShardId"), shard.get("AdjacentParentShardId")]
        if shard_id in started or shard_id in finished:
            continue
        if all(p is None or p not in listed or p in finished for p in parents):
            ready.append(shard_id)
    return ready


# --- shard workers ---------------------------------------------------------------------------


@dataclass
class ShardStats:
    mapping_uuid: str
    function_name: str
    shard_id: str
    state: str = "starting"  # polling | finished | stopped
    iterator_age_ms: int | None = None  # MillisBehindLatest of the last GetRecords
    invocations: int = 0
    errors: int = 0  # invocations that did not fully succeed, and AWS call errors
    records_processed: int = 0
    records_discarded: int = 0
    checkpoint: str | None = None
    last_error: str | None = None


def _stream_record(shard_id: str, raw: Mapping[str, Any]) -> StreamRecord:
    return StreamRecord(
        shard_id=shard_id,
        sequence_number=raw["SequenceNumber"],
        partition_key=raw["PartitionKey"],
        data=bytes(raw["Data"]),
        arrived_at=raw["ApproximateArrivalTimestamp"].astimezone(UTC),
    )


class ShardWorker:
    """Polls one shard and takes its batches through the handler, strictly in order."""

    def __init__(self, runner: MappingRunner, shard_id: str, closed: bool) -> None:
        self.runner, self.shard_id = runner, shard_id
        config = runner.config
        self.stats = ShardStats(config.uuid, config.function_name, shard_id)
        self.finished = False
        self.polls_started = 0  # run_until_idle: a poll that began after its call and found
        self.idle_poll = 0  # nothing, with nothing buffered, proves the shard caught up
        self._closed = closed
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._buffer: list[StreamRecord] = []
        self._sizes: list[int] = []
        self._window_start = 0.0  # when the oldest buffered record was read
        self._iterator: str | None = None
        self._ended = False
        self._driver = BatchDriver(
            self._invoke,
            config.policy,
            commit=self._commit,
            discard=self._discard,
            should_stop=self._stop.is_set,
            sleep=self._stop.wait,
        )
        self._thread = threading.Thread(
            target=self._run, name=f"lambda-{config.function_name}-{shard_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def signal_stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def mark_closed(self) -> None:
        self._closed = True

    def snapshot(self) -> ShardStats:
        with self._lock:
            return dataclasses.replace(self.stats)

    def _update(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self.stats, name, value)

    def _run(self) -> None:
        self._update(state="polling")
        while not self._stop.is_set() and not self.finished:
            try:
                self._step()
            except Exception as exc:  # AWS errors mostly; the thread must outlive any of them
                log.warning(
                    "shard %s: %s; re-reading from the checkpoint",
                    self.shard_id,
                    exc,
                    exc_info=not isinstance(exc, BotoCoreError | ClientError),
                )
                self._update(errors=self.stats.errors + 1, last_error=str(exc))
                self._buffer, self._sizes, self._iterator = [], [], None
                self._stop.wait(ERROR_PAUSE_SECONDS)
        if not self.finished:
            self._update(state="stopped")

    def _step(self) -> None:
        if self._iterator is None and not self._ended:
            self._open()
        self._fill()
        if self._stop.is_set():
            return
        if not self._buffer:
            if self._ended:
                self._finish()
            return
        count = take_batch(self._sizes, self.runner.config.batch_size)
        if self._driver.process(self._buffer[:count]):
            del self._buffer[:count], self._sizes[:count]

    def _open(self) -> None:
        runner = self.runner
        position = iterator_position(
            runner.store.shard(runner.config.uuid, self.shard_id),
            runner.config.starting_position,
            runner.config.starting_timestamp,
            runner.latest_pin,
        )
        self._iterator = runner.kinesis.get_shard_iterator(
            StreamName=runner.config.stream_name, ShardId=self.shard_id, **position
        )["ShardIterator"]

    def _fill(self) -> None:
        """Read until a batch is ready (size, payload, window) or the shard has ended."""
        config = self.runner.config
        while not self._stop.is_set():
            waited = time.monotonic() - self._window_start if self._buffer else 0.0
            ready = batch_ready(
                buffered=len(self._buffer),
                buffered_bytes=sum(self._sizes),
                batch_size=config.batch_size,
                window=config.batching_window,
                waited=waited,
                shard_ended=self._ended,
            )
            if ready or (self._ended and not self._buffer):
                return
            if self._poll():
                continue
            pause = self.runner.poll_interval
            if self._buffer:
                pause = min(pause, max(config.batching_window - waited, 0.0))
            self._stop.wait(pause)

    def _poll(self) -> int:
        closed = self._closed  # read first: a shard known closed gets no new records
        self.polls_started += 1
        poll = self.polls_started
        limit = max(1, min(MAX_GET_RECORDS, self.runner.config.batch_size - len(self._buffer)))
        try:
            response = self.runner.kinesis.get_records(ShardIterator=self._iterator, Limit=limit)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ExpiredIteratorException":
                raise
            self._buffer, self._sizes, self._iterator = [], [], None
            self._open()
            return 0
        records = [_stream_record(self.shard_id, r) for r in response["Records"]]
        if records and not self._buffer:
            self._window_start = time.monotonic()
        self._buffer += records
        self._sizes += [record_payload_bytes(r, self.runner.config) for r in records]
        self._iterator = response.get("NextShardIterator")
        behind = response.get("MillisBehindLatest")
        self._update(iterator_age_ms=behind)
        # AWS ends a closed shard with a null iterator; moto never does, so a closed shard that
        # answers nothing and is not behind has ended too.
        if self._iterator is None or (closed and not records and not behind):
            self._ended = True
        if not records and not self._buffer and not self._ended:
            self.idle_poll = poll  # an ended shard is idle once finished: its children may start
        return len(records)

    def _invoke(self, records: list[StreamRecord]) -> Outcome:
        config = self.runner.config
        context = LambdaContext(
            function_name=config.function_name,
            memory_limit_in_mb=config.memory_size,
            timeout_seconds=config.timeout,
            region=config.region,
            account_id=config.account_id,
        )
        event = lambda_event(records, config.stream_arn, config.region, config.role_arn)
        started = time.perf_counter()
        outcome = call_handler(
            self.runner.handler,
            event,
            context,
            [r.sequence_number for r in records],
            config.report_item_failures,
        )
        duration_ms = (time.perf_counter() - started) * 1000
        self._log_invocation(records, outcome, duration_ms)
        return outcome

    def _log_invocation(
        self, records: list[StreamRecord], outcome: Outcome, duration_ms: float
    ) -> None:
        config = self.runner.config
        result = outcome.describe(records)
        log.info(
            "invoke %s shard=%s records=%d duration_ms=%.1f result=%s",
            config.function_name,
            self.shard_id,
            len(records),
            duration_ms,
            result,
        )
        if duration_ms > config.timeout * 1000:
            log.warning(
                "%s ran %.0f ms, past its %d s timeout",
                config.function_name,
                duration_ms,
                config.timeout,
            )
        failed = outcome.result is not Result.SUCCESS
        with self._lock:
            self.stats.invocations += 1
            self.stats.errors += int(failed)
            if failed:
                self.stats.last_error = result

    def _checkpoint(self, record: StreamRecord, **counts: int) -> None:
        runner = self.runner
        runner.store.set_shard(
            runner.config.uuid, self.shard_id, ShardCheckpoint(record.sequence_number)
        )
        with self._lock:
            self.stats.checkpoint = record.sequence_number
            for name, count in counts.items():
                setattr(self.stats, name, getattr(self.stats, name) + count)

    def _commit(self, records: list[StreamRecord]) -> None:
        self._checkpoint(records[-1], records_processed=len(records))

    def _discard(self, failed: FailedBatch) -> None:
        self.runner.report_failure(failed)
        self._checkpoint(failed.records[-1], records_discarded=len(failed.records))

    def _finish(self) -> None:
        runner = self.runner
        done = dataclasses.replace(
            runner.store.shard(runner.config.uuid, self.shard_id), finished=True
        )
        runner.store.set_shard(runner.config.uuid, self.shard_id, done)
        self.finished = True
        self._update(state="finished")
        log.info(
            "shard %s of %s finished (closed, fully processed)",
            self.shard_id,
            runner.config.stream_name,
        )
        runner.on_shard_finished()


# --- mappings --------------------------------------------------------------------------------


def list_shards(kinesis: Any, stream_name: str) -> list[dict[str, Any]]:
    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamName": stream_name}
    while True:
        page = kinesis.list_shards(**kwargs)
        shards += page["Shards"]
        if not page.get("NextToken"):
            return shards
        kwargs = {"NextToken": page["NextToken"]}


class MappingRunner:
    """One polled mapping: its handler and one worker per shard that is ready to be read."""

    def __init__(
        self,
        config: MappingConfig,
        handler: Handler,
        *,
        client: ClientFactory,
        store: CheckpointStore,
        sender: OnFailureSender,
        poll_interval: float,
        on_shard_finished: Callable[[], None],
    ) -> None:
        self.config, self.handler, self.store = config, handler, store
        self.kinesis = client("kinesis")
        self.poll_interval = poll_interval
        self.on_shard_finished = on_shard_finished
        self._sender = sender
        self.latest_pin = (
            store.latest_pin(config.uuid, time.time())
            if config.starting_position == "LATEST"
            else None
        )
        self.workers: dict[str, ShardWorker] = {}

    def refresh_shards(self) -> int:
        """Start workers for shards that became ready; return how many started."""
        shards = list_shards(self.kinesis, self.config.stream_name)
        closed = {
            s["ShardId"] for s in shards if "EndingSequenceNumber" in s["SequenceNumberRange"]
        }
        for shard_id in closed & self.workers.keys():
            self.workers[shard_id].mark_closed()
        finished = {
            s["ShardId"]
            for s in shards
            if self.store.shard(self.config.uuid, s["ShardId"]).finished
        }
        ready = ready_shards(shards, finished, set(self.workers))
        for shard_id in ready:
            self.workers[shard_id] = ShardWorker(self, shard_id, closed=shard_id in closed)
            self.workers[shard_id].start()
        return len(ready)

    def report_failure(self, failed: FailedBatch) -> None:
        """Send the on-failure record (a few attempts, then the log keeps it) and move on."""
        config = self.config
        record = on_failure_record(
            failed,
            function_arn=config.function_arn,
            stream_arn=config.stream_arn,
            now=datetime.now(UTC),
        )
        info = record["KinesisBatchInfo"]
        log.error(
            "%s: discarding %d records of %s (%s)",
            config.function_name,
            info["batchSize"],
            info["shardId"],
            failed.condition.value,
        )
        if not config.on_failure:
            return
        for attempt in range(1, DESTINATION_ATTEMPTS + 1):
            try:
                self._sender.send(config.on_failure, record)
                return
            except LambdaRuntimeError as exc:  # unsupported destination: no point retrying
                log.error("%s", exc)
                break
            except (BotoCoreError, ClientError) as exc:
                log.warning(
                    "on-failure destination %s, attempt %d: %s", config.on_failure, attempt, exc
                )
                time.sleep(min(attempt * 0.5, 2.0))
        log.error("on-failure record not delivered: %s", json.dumps(record))

    def signal_stop(self) -> None:
        for worker in self.workers.values():
            worker.signal_stop()

    def join(self, timeout: float | None = None) -> None:
        for worker in self.workers.values():
            worker.join(timeout)

    def is_idle_since(self, marks: Mapping[str, int]) -> bool:
        return all(
            w.finished or w.idle_poll > marks.get(shard_id, 0)
            for shard_id, w in self.workers.items()
        )


# --- the runtime -----------------------------------------------------------------------------


def default_client(service: str) -> Any:
    """A client on the embedded AWS: ``AWS_ENDPOINT_URL``, else the embedded AWS's own port."""
    current = settings()
    endpoint = current.aws_endpoint_url or (
        current.embedded_aws_url if current.embedded_aws else None
    )
    return aws.client(service, config=CLIENT_CONFIG, endpoint_url=endpoint)


class LocalLambdaRuntime:
    """Runs every enabled Kinesis event source mapping of the embedded AWS in this process.

    ``start()`` polls in background threads; ``stop()`` lets each shard finish its invocation in
    flight (checkpoints are saved after every batch); ``run_until_idle()`` waits until every
    shard is caught up. Usable as a context manager.
    """

    def __init__(
        self,
        *,
        handlers: Mapping[str, Handler] | None = None,
        state_dir: Path | None = None,
        poll_interval: float = 0.2,
        discovery_interval: float = 5.0,
        retry_backoff: float = 0.5,
        lambdas_dir: Path = LAMBDAS_DIR,
        client: ClientFactory = default_client,
    ) -> None:
        self.state_dir = state_dir or settings().state_dir / "lambda-runtime"
        self.poll_interval = poll_interval
        self.discovery_interval = discovery_interval
        self.retry_backoff = retry_backoff
        self._handlers = dict(handlers or {})
        self._lambdas_dir = lambdas_dir
        self._client_factory = client
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._sender = OnFailureSender(self._client)
        self._loaded: dict[tuple[str, str], Handler] = {}
        self._environment: dict[str, tuple[str, str]] = {}  # variable -> (function, value)
        self._runners: dict[str, MappingRunner] = {}
        self._discover_lock = threading.RLock()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._lock = StateDirLock(self.state_dir)
        self._store: CheckpointStore | None = None
        self._thread: threading.Thread | None = None
        self._last_waiting_log = 0.0

    def __enter__(self) -> LocalLambdaRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _client(self, service: str) -> Any:
        with self._clients_lock:  # creating boto3 clients is not thread-safe; using them is
            if service not in self._clients:
                self._clients[service] = self._client_factory(service)
            return self._clients[service]

    # lifecycle

    def start(self) -> LocalLambdaRuntime:
        self._lock.acquire()
        try:
            self._store = CheckpointStore(self.state_dir / CHECKPOINT_FILE)
        except LambdaRuntimeError:
            self._lock.release()
            raise
        self._thread = threading.Thread(target=self._coordinate, name="lambda-runtime", daemon=True)
        self._thread.start()
        log.info("Lambda runtime started (state in %s)", self.state_dir)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Graceful: every shard ends its invocation in flight; checkpoints are already saved."""
        self._stopping.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        with self._discover_lock:
            for runner in self._runners.values():
                runner.signal_stop()
            for runner in self._runners.values():
                runner.join(timeout)
        self._lock.release()
        log.info("Lambda runtime stopped")

    def _coordinate(self) -> None:
        while not self._stopping.is_set():
            try:
                self.discover()
            except (BotoCoreError, ClientError) as exc:
                log.warning("cannot list event source mappings: %s", exc)
            except Exception:  # the coordinator must outlive anything; the next pass retries
                log.exception("discovery pass failed")
            self._wake.wait(self.discovery_interval)
            self._wake.clear()

    # discovery

    def discover(self) -> int:
        """One pass: start and stop mappings as their state says, start shards that became
        ready. Returns how many mappings and shards were started or stopped."""
        with self._discover_lock:
            if self._stopping.is_set():
                return 0
            wanted = self._wanted_mappings()
            changes = self._stop_unwanted(wanted)
            for mapping_uuid, mapping in wanted.items():
                changes += self._refresh_mapping(mapping_uuid, mapping)
            self._log_waiting()
            return changes

    def _wanted_mappings(self) -> dict[str, dict[str, Any]]:
        pages = self._client("lambda").get_paginator("list_event_source_mappings").paginate()
        return {
            m["UUID"]: m
            for page in pages
            for m in page["EventSourceMappings"]
            if is_kinesis_stream(m.get("EventSourceArn", ""))
            and wants_polling(m.get("State"), m["UUID"] in self._runners)
        }

    def _stop_unwanted(self, wanted: Mapping[str, Any]) -> int:
        gone = [u for u in self._runners if u not in wanted]
        for mapping_uuid in gone:
            runner = self._runners.pop(mapping_uuid)
            runner.signal_stop()
            runner.join()
            log.info("mapping %s disabled or deleted: stopped polling", mapping_uuid)
        return len(gone)

    def _refresh_mapping(self, mapping_uuid: str, mapping: dict[str, Any]) -> int:
        try:
            started = 0
            if mapping_uuid not in self._runners:
                self._runners[mapping_uuid] = self._start_mapping(mapping)
                started = 1
            return started + self._runners[mapping_uuid].refresh_shards()
        except (BotoCoreError, ClientError, LambdaRuntimeError) as exc:
            log.error("mapping %s (%s): %s", mapping_uuid, mapping.get("EventSourceArn"), exc)
            return 0

    def _start_mapping(self, mapping: dict[str, Any]) -> MappingRunner:
        function = self._client("lambda").get_function(FunctionName=mapping["FunctionArn"])
        config = MappingConfig.from_aws(mapping, function, backoff=self.retry_backoff)
        self._apply_environment(config)
        handler = self._handler_for(config)
        assert self._store is not None
        runner = MappingRunner(
            config,
            handler,
            client=self._client,
            store=self._store,
            sender=self._sender,
            poll_interval=self.poll_interval,
            on_shard_finished=self._wake.set,
        )
        log.info(
            "polling %s for %s (mapping %s, batch size %d, window %.1f s)",
            config.stream_name,
            config.function_name,
            config.uuid,
            config.batch_size,
            config.batching_window,
        )
        if config.ignored:
            log.warning(
                "mapping %s: not emulated, ignored: %s", config.uuid, ", ".join(config.ignored)
            )
        return runner

    def _apply_environment(self, config: MappingConfig) -> None:
        """Set before the first call and kept: handlers build cached clients from them. One
        process serves every function, so a variable two functions set differently is reported."""
        for name, value in config.environment.items():
            owner = self._environment.get(name)
            if owner and owner[0] != config.function_name and owner[1] != value:
                log.warning(
                    "%s=%r of %s overrides %r of %s",
                    name,
                    value,
                    config.function_name,
                    owner[1],
                    owner[0],
                )
            self._environment[name] = (config.function_name, value)
            os.environ[name] = value

    def _handler_for(self, config: MappingConfig) -> Handler:
        if config.function_name in self._handlers:
            return self._handlers[config.function_name]
        folder = handler_folder(config.function_name, config.tags)
        key = (folder, config.handler)
        if key not in self._loaded:
            self._loaded[key] = load_handler(config.handler, self._lambdas_dir / folder)
        return self._loaded[key]

    def _log_waiting(self) -> None:
        now = time.monotonic()
        if self._runners or now - self._last_waiting_log < WAITING_LOG_SECONDS:
            return
        self._last_waiting_log = now
        log.info(
            "waiting for an enabled Kinesis event source mapping (checking every %.0f s)",
            self.discovery_interval,
        )

    # observation

    def stats(self) -> list[ShardStats]:
        with self._discover_lock:
            return [
                worker.snapshot()
                for runner in self._runners.values()
                for worker in runner.workers.values()
            ]

    def run_until_idle(self, timeout: float = 30.0) -> None:
        """Return once every shard is caught up with no batch in flight (for tests: call it
        after the writes). Raises TimeoutError otherwise."""
        if self._thread is None:
            raise LambdaRuntimeError("start() the runtime first")
        deadline = time.monotonic() + timeout
        with self._discover_lock:
            marks = {
                (u, s): w.polls_started
                for u, r in self._runners.items()
                for s, w in r.workers.items()
            }
        while True:
            with self._discover_lock:  # idle first: a parent finishing now starts a child below
                idle = self._idle_since(marks)
                if self.discover() == 0 and idle:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"still busy after {timeout} s: {self.stats()}")
            time.sleep(min(self.poll_interval, 0.05))

    def _idle_since(self, marks: Mapping[tuple[str, str], int]) -> bool:
        with self._discover_lock:
            return all(
                runner.is_idle_since({s: n for (u, s), n in marks.items() if u == mapping_uuid})
                for mapping_uuid, runner in self._runners.items()
            )


# --- CLI -------------------------------------------------------------------------------------


def format_stats(stats: Sequence[ShardStats]) -> list[str]:
    return [
        f"{s.function_name} {s.shard_id} [{s.state}] behind={s.iterator_age_ms}ms "
        f"invocations={s.invocations} errors={s.errors} records={s.records_processed} "
        f"discarded={s.records_discarded} checkpoint={s.checkpoint} last_error={s.last_error}"
        for s in stats
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m storepulse.local.lambda_runtime", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--state-dir", type=Path, help="default: <STOREPULSE_STATE_DIR>/lambda-runtime"
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.2,
        help="seconds between polls of a caught-up shard",
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
    # The handlers run here: their own boto3 clients must reach the embedded AWS too.
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
