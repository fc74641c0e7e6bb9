"""moto's DynamoDB Streams, made to keep what AWS keeps: a stream record lives 24 hours.

moto 5.2.5 keeps every stream record of a table for ever, each holding the item's old and new
image as JSON: after a week of the demo they were the largest part of the embedded AWS's memory
and snapshot after the tables themselves. Here a record past the retention period is dropped
(on the table's next write or the stream's next read), by its arrival time on the embedded AWS's
DynamoDB clock (``dynamodb_export.now``, which tests set). The shard's sequence numbers stay as
they were: moto numbers a record by its index, so the shard's first number moves with what is
dropped (the trim horizon), while its description keeps the first number it ever had, as AWS's.
A reader behind the trim horizon gets the oldest kept record on (the dropped ones are gone, as
Lambda's mapping skips records that expired).

A kept record is held packed (its JSON, as pickled and zlib'd bytes), and unpacked when read:
moto's nested dicts of both images took 4-5 KB of memory per event written (63 of 109 MiB per
10,000 demo events, ``benchmarks/persistence.py``), and pickled and unpickled slowly.

A caught-up reader need not read a stream 4 times a second to learn that nothing happened: it
can wait at ``WAIT_PATH`` (``storepulse_local.record_waits``) until a record is added after its
iterator; a record added wakes the waiters.
"""

from __future__ import annotations

import contextlib
import pickle
import threading
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC
from typing import Any, Final

from storepulse_local.cloudformation import patch_once
from storepulse_local.dynamodb_export import now
from storepulse_local.record_waits import RecordWaits, unlocked_backend

RETENTION_SECONDS: Final = 24 * 3600.0
_ARRIVED: Final = "_storepulse_arrived"
_FIRST: Final = "_storepulse_first_sequence_number"
_PACKED: Final = "_storepulse_packed"
# Who deleted the item, in a stream record of a TTL deletion as GetRecords answers it (a Lambda
# event says {"type": ..., "principalId": ...}: the local runtime converts it, as Lambda does).
SERVICE_IDENTITY: Final = {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}
# The long poll: POST {"StreamARN", "ShardIterator", "TimeoutSeconds"} ->
# {"RecordsAfterIterator": bool}. Not an AWS API (like /moto-api).
WAIT_PATH: Final = "/storepulse-local/dynamodb-streams/wait-for-records"
WAITS: Final = RecordWaits()
_deleting = threading.local()


@contextlib.contextmanager
def service_deletions() -> Iterator[None]:
    """Within: this thread's deletes are the service's (TTL), and their stream records say so."""
    _deleting.by_service = True
    try:
        yield
    finally:
        _deleting.by_service = False


def patch_dynamodb_streams() -> None:
    """Apply the patches (once per process, however many servers start)."""
    from moto.dynamodb.models.table import StreamRecord, StreamShard

    if not isinstance(vars(StreamRecord).get("record"), property):
        StreamRecord.record = property(_unpacked, _kept_unpacked)  # type: ignore[attr-defined]
    patch_once(StreamShard, "add", _stamping_and_expiring)
    patch_once(StreamShard, "get", _expiring_first)
    patch_once(StreamShard, "to_json", _first_number_kept)


def expire(shard: Any, at: float | None = None) -> int:
    """Drop the shard's records older than the retention period, as AWS does; how many."""
    cutoff = (now() if at is None else at) - RETENTION_SECONDS
    items = shard.items
    dropped = 0
    while dropped < len(items) and arrived(items[dropped]) < cutoff:
        dropped += 1
    if dropped:
        shard.__dict__.setdefault(_FIRST, shard.starting_sequence_number)
        del items[:dropped]
        shard.starting_sequence_number += dropped  # moto's number = index + first number
    return dropped


def arrived(record: Any) -> float:
    """When the record arrived (epoch seconds); moto's own time for records from before the
    stamp (a snapshot of an earlier version)."""
    stamp = record.__dict__.get(_ARRIVED)
    if stamp is not None:
        return float(stamp)
    created = record.record["dynamodb"]["ApproximateCreationDateTime"]
    return created.replace(tzinfo=created.tzinfo or UTC).timestamp()


def pack(record: Any) -> None:
    """Hold the record's JSON packed (moto has finished building it)."""
    state = record.__dict__
    if "record" in state:
        # Packed first, then dropped: a GetRecords reading the record meanwhile (another
        # thread) finds one or the other, never neither.
        state[_PACKED] = zlib.compress(pickle.dumps(state["record"], protocol=5), 1)
        state.pop("record", None)


def _unpacked(record: Any) -> dict[str, Any]:
    """The record's JSON: a new copy of the packed one (or, while moto builds it or in a
    record of an earlier snapshot, the dict itself)."""
    state = record.__dict__
    built = state.get("record")  # one look-up: ``pack`` may drop it between two
    if built is not None:
        return built
    return pickle.loads(zlib.decompress(state[_PACKED]))


def _kept_unpacked(record: Any, value: dict[str, Any]) -> None:
    record.__dict__["record"] = value


def _stamping_and_expiring(add: Callable[..., None]) -> Callable[..., None]:
    def stamped(self: Any, old: Any, new: Any) -> None:
        add(self, old, new)
        if self.items:
            record = self.items[-1]
            record.__dict__[_ARRIVED] = now()
            if new is None and getattr(_deleting, "by_service", False):
                record.record["userIdentity"] = dict(SERVICE_IDENTITY)
            pack(record)
        expire(self)
        WAITS.notify()

    return stamped


def _expiring_first(get: Callable[..., list]) -> Callable[..., list]:
    def retained(self: Any, start: int, quantity: int) -> list:
        expire(self)
        return get(self, max(start, self.starting_sequence_number), quantity)

    return retained


def _first_number_kept(to_json: Callable[..., dict]) -> Callable[..., dict]:
    def described(self: Any) -> dict:
        answer = to_json(self)
        if (first := self.__dict__.get(_FIRST)) is not None:
            answer["SequenceNumberRange"]["StartingSequenceNumber"] = str(first)
        return answer

    return described


def wait_for_records(body: dict[str, Any]) -> bool:
    """The long poll at ``WAIT_PATH``: True as soon as the iterator's shard has a record after
    it (or the iterator is unknown here: GetRecords will say why); False after the timeout."""
    iterator = _find_iterator(body["ShardIterator"])
    if iterator is None:
        return True
    shard, after = iterator.stream_shard, iterator.sequence_number
    # moto numbers a record by its index from the shard's first number, which expiry moves on
    # as it drops records: the next number to be given is their sum either way.
    return WAITS.wait_for(
        lambda: shard.starting_sequence_number + len(shard.items) > after,
        float(body["TimeoutSeconds"]),
    )


def _find_iterator(arn: str) -> Any:
    """moto's iterator for ``arn``, or None (``unlocked_backend``: a wait is outside the gate)."""
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    _, _, _, region, account, _ = arn.split(":", 5)
    backend = unlocked_backend(dynamodbstreams_backends, account, region)
    return backend.shard_iterators.get(arn) if backend is not None else None
