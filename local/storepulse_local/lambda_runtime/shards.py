"""Polling: one worker per shard, one runner per mapping with the workers of its shards."""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from storepulse_local.lambda_context import LambdaContext
from storepulse_local.lambda_runtime.batching import batch_ready, record_payload_bytes, take_batch
from storepulse_local.lambda_runtime.checkpoints import (
    CheckpointStore,
    ShardCheckpoint,
    iterator_position,
    ready_shards,
)
from storepulse_local.lambda_runtime.common import ClientFactory, LambdaRuntimeError, log
from storepulse_local.lambda_runtime.failures import (
    BatchDriver,
    FailedBatch,
    OnFailureSender,
    on_failure_record,
)
from storepulse_local.lambda_runtime.invocation import Outcome, Result, call_handler
from storepulse_local.lambda_runtime.mappings import (
    ENHANCED_FAN_OUT_POLL_SECONDS,
    RECORD_WAIT_SECONDS,
    Handler,
    MappingConfig,
)
from storepulse_local.lambda_runtime.push import RecordPush
from storepulse_local.lambda_runtime.sources import PolledRecord

MAX_GET_RECORDS: Final = 10_000
ERROR_PAUSE_SECONDS: Final = 1.0
DESTINATION_ATTEMPTS: Final = 3


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
    pushes: int = 0  # waits for records (``push``) that ended with records to read


@dataclass(frozen=True)
class BatchTiming:
    """When a committed batch went through each step, in ``time.monotonic()`` seconds (one
    clock for every process of the machine, the function's workers included): for latency
    breakdowns. ``polled``/``read``: the GetRecords that found its first record."""

    shard_id: str
    enhanced_fan_out: bool
    sequence_numbers: tuple[str, ...]
    request_id: str | None  # the last invocation's
    polled: float
    read: float
    invoked: float  # the last invocation of the batch
    returned: float
    checkpointed: float


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
        self._buffer: list[PolledRecord] = []
        self._sizes: list[int] = []
        self._window_start = 0.0  # when the oldest buffered record was read
        self._first_poll = 0.0  # when the GetRecords that read it began
        self._invoked: tuple[str | None, float, float] = (None, 0.0, 0.0)  # the last invocation
        self._iterator: str | None = None
        self._ended = False
        self._started = time.monotonic()  # the poll's ticks count from here (``_pause``)
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
        self._iterator = runner.config.source.iterator(
            runner.client, runner.config.stream_arn, self.shard_id, position
        )

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
            self._pause(pause)

    def _pause(self, pause: float) -> None:
        """Until the next read: ``pause``, or on the embedded AWS until a record is added to the
        shard. A wait that ends without one is as good as an empty GetRecords (nothing after
        the iterator), so an open, caught-up shard is not read again until a put. A polled
        source (``push.paced``) is read at its poll's next tick once records exist, and polled
        as before while a batch fills."""
        push = self.runner.push
        if push is None or self._iterator is None or (push.paced and self._buffer):
            self._stop.wait(pause)
            return
        wait = max(pause, RECORD_WAIT_SECONDS) if push.paced else pause
        while not self._stop.is_set():
            self.polls_started += 1
            poll = self.polls_started
            pushed = push.wait(self._iterator, wait)
            if pushed is None:  # no wait here: poll
                self._stop.wait(pause if push.paced else min(pause, ENHANCED_FAN_OUT_POLL_SECONDS))
                return
            if pushed:
                self._update(pushes=self.stats.pushes + 1)
                if push.paced:
                    self._stop.wait(self._until_next_tick(pause))
                return
            if self._buffer or self._closed:  # the batching window is over; a closed shard's
                return  # end is seen by GetRecords
            self.idle_poll = poll  # caught up (run_until_idle)

    def _until_next_tick(self, interval: float) -> float:
        """Seconds to the next of the reads a poller every ``interval`` since this worker's
        start would make."""
        return (self._started - time.monotonic()) % interval

    def _poll(self) -> int:
        closed = self._closed  # read first: a shard known closed gets no new records
        self.polls_started += 1
        poll, started = self.polls_started, time.monotonic()
        limit = max(1, min(MAX_GET_RECORDS, self.runner.config.batch_size - len(self._buffer)))
        try:
            response = self.runner.client.get_records(ShardIterator=self._iterator, Limit=limit)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ExpiredIteratorException":
                raise
            self._buffer, self._sizes, self._iterator = [], [], None
            self._open()
            return 0
        records = self.runner.config.source.records(self.shard_id, response["Records"])
        if records and not self._buffer:
            self._first_poll, self._window_start = started, time.monotonic()
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

    def _invoke(self, records: list[PolledRecord]) -> Outcome:
        config = self.runner.config
        context = LambdaContext(
            function_name=config.function_name,
            memory_limit_in_mb=config.memory_size,
            timeout_seconds=config.timeout,
            region=config.region,
            account_id=config.account_id,
        )
        event = config.source.event(records, config.stream_arn, config.region, config.role_arn)
        started = time.monotonic()
        outcome = call_handler(
            self.runner.handler,
            event,
            context,
            [r.sequence_number for r in records],
            config.report_item_failures,
        )
        self._invoked = (outcome.request_id, started, time.monotonic())
        duration_ms = (self._invoked[2] - started) * 1000
        self._log_invocation(records, outcome, duration_ms)
        return outcome

    def _log_invocation(
        self, records: list[PolledRecord], outcome: Outcome, duration_ms: float
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

    def _checkpoint(self, record: PolledRecord, **counts: int) -> None:
        runner = self.runner
        runner.store.set_shard(
            runner.config.uuid, self.shard_id, ShardCheckpoint(record.sequence_number)
        )
        with self._lock:
            self.stats.checkpoint = record.sequence_number
            for name, count in counts.items():
                setattr(self.stats, name, getattr(self.stats, name) + count)

    def _commit(self, records: list[PolledRecord]) -> None:
        self._checkpoint(records[-1], records_processed=len(records))
        if self.runner.on_batch is not None:
            self.runner.on_batch(
                BatchTiming(
                    self.shard_id,
                    self.runner.config.enhanced_fan_out,
                    tuple(r.sequence_number for r in records),
                    self._invoked[0],
                    self._first_poll,
                    self._window_start,
                    *self._invoked[1:],
                    time.monotonic(),
                )
            )

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
        poll_interval: float | None,
        on_shard_finished: Callable[[], None],
        on_batch: Callable[[BatchTiming], None] | None = None,
    ) -> None:
        self.config, self.handler, self.store = config, handler, store
        self.on_batch = on_batch
        self.client = client(config.source.service)  # kinesis or dynamodbstreams
        self._poll_interval = poll_interval
        self.on_shard_finished = on_shard_finished
        self._sender = sender
        self.latest_pin = (
            store.latest_pin(config.uuid, time.time())
            if config.starting_position == "LATEST"
            else None
        )
        self.workers: dict[str, ShardWorker] = {}

    @property
    def poll_interval(self) -> float:
        """The runtime's interval if it was given one (tests), else Lambda's for the mapping."""
        if self._poll_interval is not None:
            return self._poll_interval
        return self.config.idle_poll_seconds

    @functools.cached_property
    def push(self) -> RecordPush | None:
        """Waits for records on the embedded AWS instead of reads of a caught-up shard, at
        Lambda's cadence (not at a poll interval given to the runtime), else None: polled.
        Through an enhanced fan-out consumer records are pushed; a table's stream is read at
        its poll's ticks once records exist."""
        if self._poll_interval is not None:
            return None
        endpoint = self.client.meta.endpoint_url
        if self.config.enhanced_fan_out:
            return RecordPush(endpoint, self.config.stream_arn)
        if self.config.source.service == "dynamodbstreams":
            return RecordPush(endpoint, self.config.stream_arn, paced=True)
        return None

    def refresh_shards(self) -> int:
        """Start workers for shards that became ready; return how many started."""
        shards = self.config.source.list_shards(self.client, self.config.stream_arn)
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
            source=config.source,
        )
        info = record[config.source.batch_info_key]
        log.error(
            "%s: discarding %d records of %s (%s: %s)",
            config.function_name,
            info["batchSize"],
            info["shardId"],
            failed.condition.value,
            record["replay"]["reason"],
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
