"""Send events to Kinesis: a batching, retrying producer library and a JSON-lines CLI.

Library::

    producer = KinesisProducer(stream_name=settings().resource_name("events"))
    report = producer.send(events)  # -> SendReport; raises ProducerError if records are lost

CLI (one event per line; invalid lines are reported on stderr and skipped, exit code 1)::

    python -m storepulse.producer --stream NAME --file events.jsonl   # or --file - for stdin

Each event is one record: ``Event.to_json()`` with ``partition_key(event)`` as partition key.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, NamedTuple

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from storepulse import aws
from storepulse.config import ConfigError, settings
from storepulse.events import Event, InvalidEvent, parse_event, partition_key

# Explicit name: under ``python -m`` this module's __name__ is "__main__".
log = logging.getLogger("storepulse.producer")

# PutRecords limits; sizes count data + partition key bytes, as AWS does.
MAX_RECORDS_PER_CALL: Final = 500
MAX_BYTES_PER_CALL: Final = 5 * 1024 * 1024
MAX_RECORD_BYTES: Final = 1024 * 1024
MAX_PARTITION_KEY_CHARS: Final = 256

# The producer's own loop owns retries (backoff, attempt counts, partial failures), so botocore
# makes exactly one request per call; otherwise a throttled call would be retried 5 x max_attempts.
CLIENT_CONFIG: Final = Config(retries={"mode": "standard", "total_max_attempts": 1})

# Whole-call errors worth retrying; anything else (missing stream, access denied, validation,
# disabled KMS key, ...) fails at once.
RETRYABLE_CODES: Final = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "KMSThrottlingException",
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


@dataclass(frozen=True)
class SendReport:
    """Outcome of one ``send``/``send_raw`` call; counts cover accepted records only.

    ``batches``: requests the input was split into; ``attempts``: PutRecords calls made
    (first tries and retries); ``retried_records``: entries re-sent after a partial failure;
    ``bytes_sent``: payload bytes accepted (data only, each record once); ``shards``: records
    accepted per shard id.
    """

    records_sent: int = 0
    batches: int = 0
    retried_records: int = 0
    attempts: int = 0
    bytes_sent: int = 0
    shards: dict[str, int] = field(default_factory=dict)


class ProducerError(RuntimeError):
    """Records were not delivered. ``report`` counts those that were (they stay on the stream)."""

    def __init__(
        self, message: str, *, report: SendReport, undelivered: int, error_codes: dict[str, int]
    ) -> None:
        super().__init__(message)
        self.report = report
        self.undelivered = undelivered
        self.error_codes = error_codes


class MalformedResponseError(RuntimeError):
    """PutRecords answered a different number of entries than records sent (never retried)."""


class _Record(NamedTuple):
    data: bytes
    key: str
    label: str  # names the record in errors: "event <event_id>" or "record #<index>"
    size: int  # data + partition key bytes


@dataclass
class _Tally:
    records_sent: int = 0
    batches: int = 0
    retried_records: int = 0
    attempts: int = 0
    bytes_sent: int = 0
    shards: Counter[str] = field(default_factory=Counter)

    def accept(self, record: _Record, shard_id: str) -> None:
        self.records_sent += 1
        self.bytes_sent += len(record.data)
        self.shards[shard_id] += 1

    def report(self) -> SendReport:
        values = dataclasses.asdict(self)
        return SendReport(**{**values, "shards": dict(sorted(self.shards.items()))})


class KinesisProducer:
    """Writes records to one Kinesis stream with PutRecords, in batches, retrying failures.

    Batches hold at most 500 records and 5 MiB (data + partition keys). Every record is checked
    before the first request: one over 1 MiB raises ``ValueError`` and nothing is sent.

    Retries: after a partial failure only the failed entries are re-sent (accepted ones never
    are); a retryable whole-call error (throttling, 5xx, connection) re-sends the whole request.
    Delays use exponential backoff with full jitter, ``uniform(0, min(max_delay, base_delay *
    2**n))``. A batch gets at most ``max_attempts`` calls; then ``ProducerError`` is raised with
    the undelivered count, the last error codes and the report of what was accepted.

    Ordering: Kinesis keeps per-partition-key order only among records accepted by one
    successful call. When an entry fails, later entries with the same key in that request may
    already be accepted, so the retried entry lands after them: a partial failure can reorder a
    key's records *within one batch*. Retried entries are always re-sent (in input order)
    before any record of the next batch, so a failure never reorders records across batches.

    Threads: one producer per thread; do not share an instance across threads (concurrent
    ``send`` calls raise ``RuntimeError``). Write to a stream from one thread only: the
    embedded AWS (moto) loses records under concurrent writers.
    """

    def __init__(
        self,
        *,
        stream_name: str,
        client: Any = None,
        max_attempts: int = 8,
        base_delay: float = 0.05,
        max_delay: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not stream_name:
            raise ValueError("stream_name must not be empty")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if base_delay < 0 or max_delay < 0:
            raise ValueError("base_delay and max_delay must be >= 0")
        self.stream_name = stream_name
        self._client = client if client is not None else aws.client("kinesis", config=CLIENT_CONFIG)
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._sleep = sleep
        # Unseeded by default so that producers in different processes do not retry in step.
        self._rng = rng if rng is not None else random.Random()
        self._busy = threading.Lock()

    def send(self, events: Iterable[Event]) -> SendReport:
        """Send events in order; returns the report or raises ``ProducerError``."""
        return self._send(
            [_record(e.to_json(), partition_key(e), f"event {e.event_id}") for e in events]
        )

    def send_raw(self, records: Iterable[tuple[bytes, str]]) -> SendReport:
        """Send (payload, partition key) pairs as is, e.g. deliberately malformed records."""
        return self._send(
            [_record(data, key, f"record #{index}") for index, (data, key) in enumerate(records)]
        )

    def _send(self, records: list[_Record]) -> SendReport:
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(
                "KinesisProducer used from two threads at once: use one producer per thread"
            )
        try:
            started = time.monotonic()
            tally = _Tally()
            batches = _split(records)
            tally.batches = len(batches)
            queued = len(records)
            for batch in batches:
                queued -= len(batch)
                self._deliver(batch, tally, queued)
            report = tally.report()
        finally:
            self._busy.release()
        log.info(
            "sent %d records to %s: %d batches, %d bytes, %d retried, %d attempts, %.3f s",
            report.records_sent,
            self.stream_name,
            report.batches,
            report.bytes_sent,
            report.retried_records,
            report.attempts,
            time.monotonic() - started,
        )
        return report

    def _deliver(self, batch: list[_Record], tally: _Tally, queued: int) -> None:
        """Send one batch until every entry is accepted; ``queued``: records of later batches."""
        pending = batch
        for attempt in range(1, self._max_attempts + 1):
            tally.attempts += 1
            failed, codes, error = self._put(pending, tally)
            if not failed:
                return
            if error is not None and not _retryable(error):
                raise self._error(tally, len(failed) + queued, codes, attempt) from error
            if attempt == self._max_attempts:
                break
            if error is None:  # a partial failure: only the failed entries go again
                tally.retried_records += len(failed)
            pending = failed
            delay = self._backoff(attempt)
            log.debug("retrying %d records in %.3f s: %s", len(pending), delay, codes)
            self._sleep(delay)
        raise self._error(tally, len(failed) + queued, codes, self._max_attempts) from error

    def _put(
        self, pending: list[_Record], tally: _Tally
    ) -> tuple[list[_Record], dict[str, int], Exception | None]:
        """One PutRecords call: (entries to send again, their error codes, a whole-call error)."""
        try:
            response = self._client.put_records(
                StreamName=self.stream_name,
                Records=[{"Data": r.data, "PartitionKey": r.key} for r in pending],
            )
        except (ClientError, BotoConnectionError, HTTPClientError) as exc:
            # The whole request goes again when retryable. That is safe even if it was applied
            # before the error (ambiguous failures such as timeouts): every event keeps its stable
            # event_id and the consumer deduplicates on it, so a sale order is counted once.
            return pending, {_code(exc): len(pending)}, exc
        entries = response.get("Records", [])
        if len(entries) != len(pending):  # cannot tell which records were accepted
            error = MalformedResponseError(f"{len(entries)} entries for {len(pending)} records")
            return pending, {_code(error): len(pending)}, error
        failed, codes = _accept(pending, entries, tally)
        return failed, codes, None

    def _backoff(self, retry: int) -> float:
        """Full jitter: a uniform delay below an exponentially growing, capped ceiling."""
        ceiling = min(self._max_delay, self._base_delay * 2 ** min(retry - 1, 64))
        return self._rng.uniform(0, ceiling)

    def _error(
        self, tally: _Tally, undelivered: int, codes: dict[str, int], attempts: int
    ) -> ProducerError:
        report = tally.report()
        total = report.records_sent + undelivered
        shown = ", ".join(f"{code} x{count}" for code, count in codes.items())
        return ProducerError(
            f"{undelivered} of {total} records not delivered to stream {self.stream_name!r} "
            f"(batch failed after {attempts} attempt(s); last errors: {shown})",
            report=report,
            undelivered=undelivered,
            error_codes=dict(codes),
        )


def _record(data: bytes, key: str, label: str) -> _Record:
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"{label}: data must be bytes, not {type(data).__name__}")
    if not 1 <= len(key) <= MAX_PARTITION_KEY_CHARS:
        raise ValueError(f"{label}: partition key must be 1-256 characters, got {len(key)}")
    size = len(data) + len(key.encode())
    if size > MAX_RECORD_BYTES:
        raise ValueError(
            f"{label} is {size:,} bytes (data + partition key), "
            f"over the Kinesis record limit of {MAX_RECORD_BYTES:,} bytes (1 MiB)"
        )
    return _Record(bytes(data), key, label, size)


def _split(records: list[_Record]) -> list[list[_Record]]:
    """Consecutive batches of at most 500 records and 5 MiB, in input order."""
    batches: list[list[_Record]] = []
    current: list[_Record] = []
    size = 0
    for record in records:
        if current and (
            len(current) == MAX_RECORDS_PER_CALL or size + record.size > MAX_BYTES_PER_CALL
        ):
            batches.append(current)
            current, size = [], 0
        current.append(record)
        size += record.size
    if current:
        batches.append(current)
    return batches


def _accept(
    pending: list[_Record], entries: list[dict[str, Any]], tally: _Tally
) -> tuple[list[_Record], dict[str, int]]:
    """Count accepted entries; return the failed ones (in order) and their error codes."""
    failed: list[_Record] = []
    codes: Counter[str] = Counter()
    for record, entry in zip(pending, entries, strict=True):
        if entry.get("ErrorCode"):
            failed.append(record)
            codes[entry["ErrorCode"]] += 1
        else:
            tally.accept(record, entry.get("ShardId", "unknown"))
    return failed, dict(codes)


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return True
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return _code(exc) in RETRYABLE_CODES or status == 429 or status >= 500


# --- CLI ---------------------------------------------------------------------------------------


EXIT_CODES: Final = (
    "Exit codes: 0 all events sent; 1 the valid lines were sent but some lines were invalid "
    "(reported on stderr); 2 error, nothing or not everything sent (the report of what was "
    "accepted is still printed)."
)


def read_events(lines: Iterable[bytes], errors: IO[str]) -> tuple[list[Event], int]:
    """Parse JSON lines; report each invalid line (number + reason) on ``errors`` and skip it.

    Returns the valid events and the number of invalid lines. Blank lines are ignored.
    """
    events: list[Event] = []
    invalid = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append(parse_event(line))
        except InvalidEvent as exc:
            invalid += 1
            print(f"line {number}: {exc.reason}", file=errors)
    return events, invalid


def _read_file(path: str) -> tuple[list[Event], int]:
    if path == "-":
        return read_events(sys.stdin.buffer, sys.stderr)
    with Path(path).open("rb") as lines:
        return read_events(lines, sys.stderr)


def _report_json(report: SendReport) -> str:
    return json.dumps(dataclasses.asdict(report), separators=(",", ":"))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see ``EXIT_CODES``)."""
    parser = argparse.ArgumentParser(
        prog="python -m storepulse.producer",
        description="Send JSON-lines events (one per line) to a Kinesis stream.",
        epilog=EXIT_CODES,
    )
    parser.add_argument("--stream", help="stream name (default: the environment's events stream)")
    parser.add_argument("--file", default="-", help="JSON lines file, or - for stdin (default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)  # our summary line, without botocore's INFO chatter
    try:
        stream = args.stream or settings().resource_name("events")
        events, invalid = _read_file(args.file)
    except ConfigError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc.strerror or exc}")
    if invalid:
        print(f"skipped {invalid} invalid line(s)", file=sys.stderr)
    return _send_cli(stream, events) or (1 if invalid else 0)


def _send_cli(stream: str, events: list[Event]) -> int:
    try:
        report = KinesisProducer(stream_name=stream).send(events)
    except ProducerError as exc:
        print(_report_json(exc.report))
        if "ResourceNotFoundException" in exc.error_codes:
            return _fail(f"stream {stream!r} does not exist in region {settings().region}")
        return _fail(str(exc))
    except (ValueError, BotoCoreError) as exc:  # an oversized event, credentials, endpoint
        return _fail(str(exc))
    print(_report_json(report))
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
