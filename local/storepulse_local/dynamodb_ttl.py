"""DynamoDB's Time to Live, which moto stores but never applies: expired items are deleted.

AWS deletes an item whose TTL attribute (a Number of epoch seconds) is before the current time
in the background, "typically within two days of expiration", as a delete whose stream record
names the service (``userIdentity`` ``{"type": "Service", "principalId":
"dynamodb.amazonaws.com"}``) and which point-in-time recovery logs like any other. Until then an
expired item is still read. moto 5.2.5 keeps every item for ever: a local platform run for weeks
kept a week of event-id memory, session openings and 35 days of minute buckets it would not have
on AWS. The embedded AWS of the platform sweeps every ``SWEEP_INTERVAL_SECONDS`` of its run, by
its DynamoDB clock (``dynamodb_export.now``); a test's in-process server sweeps only when asked
(``sweep``): within the minutes a test runs, AWS would not promise a deletion either.

The deletes go through moto's own ``Table.delete_item``, so the stream record, the recovery log
(``dynamodb_export``) and the indexes see them as AWS's would; the stream record is marked as the
service's (``dynamodb_streams.service_deletions``), which the change capture skips.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from storepulse_local.dynamodb_export import now
from storepulse_local.dynamodb_streams import service_deletions

log = logging.getLogger(__name__)

SWEEP_INTERVAL_SECONDS: Final = 900.0  # the platform's (embedded_aws --ttl-sweep-seconds)

Hold = Callable[[], AbstractContextManager[Any]]


Expired = list[tuple[Any, tuple[Any, Any]]]  # (table, (hash key, range key))


def sweep(at: float | None = None) -> int:
    """Delete every item of a TTL-enabled table whose TTL is before ``at`` (the DynamoDB clock
    by default), in every account and region; how many were deleted."""
    moment = now() if at is None else at
    return delete_expired(find_expired(moment), moment)


def find_expired(moment: float) -> Expired:
    """The keys of the items expired at ``moment``. Read without holding requests (a copy of
    each table's dict, atomic under the GIL): ``delete_expired`` checks each one again."""
    from moto.dynamodb.models import dynamodb_backends

    found: Expired = []
    for regions in list(dynamodb_backends.values()):
        for backend in list(regions.values()):
            for table in list(backend.tables.values()):
                if table.ttl.get("TimeToLiveStatus") != "ENABLED":
                    continue
                attribute = table.ttl["AttributeName"]
                found += [
                    (table, keys)
                    for keys, item in _items(table)
                    if _expired(item, attribute, moment)
                ]
    return found


def delete_expired(found: Expired, moment: float) -> int:
    """Delete what ``find_expired`` found that is still there and still expired (a write since
    may have given it a new TTL), as the service; how many."""
    deleted: dict[str, int] = {}
    with service_deletions():
        for table, (hash_key, range_key) in found:
            item = _item(table, hash_key, range_key)
            attribute = table.ttl.get("AttributeName", "")
            if item is None or not _expired(item, attribute, moment):
                continue
            table.delete_item(hash_key, range_key)
            deleted[table.name] = deleted.get(table.name, 0) + 1
    for name, count in deleted.items():
        log.info("TTL: deleted %d expired item(s) of %s", count, name)
    return sum(deleted.values())


def _items(table: Any) -> Iterator[tuple[tuple[Any, Any], Any]]:
    if table.range_key_attr is None:
        for hash_key, item in list(table.items.items()):
            yield (hash_key, None), item
        return
    for hash_key, by_range in list(table.items.items()):
        for range_key, item in list(by_range.items()):
            yield (hash_key, range_key), item


def _item(table: Any, hash_key: Any, range_key: Any) -> Any:
    if range_key is None:
        return table.items.get(hash_key)
    by_range = table.items.get(hash_key)  # .get: moto's defaultdict would add the partition
    return by_range.get(range_key) if by_range is not None else None


def _expired(item: Any, attribute: str, moment: float) -> bool:
    """AWS reads only a Number there; any other type, or none, never expires."""
    value = item.attrs.get(attribute)
    if value is None or value.type != "N":
        return False
    try:
        return Decimal(value.value) < Decimal(repr(moment))
    except InvalidOperation:
        return False


class TtlSweeper:
    """Sweeps every ``interval`` s in a thread, inside ``hold`` (the persistence's request gate:
    no request sees a table half-swept; it yields False when a request would not end), and
    reports how many items went to ``changed`` (a snapshot is then due)."""

    def __init__(
        self,
        interval: float = SWEEP_INTERVAL_SECONDS,
        hold: Hold = contextlib.nullcontext,
        changed: Callable[[int], None] = lambda _deleted: None,
    ) -> None:
        self.interval = interval
        self._hold = hold
        self._changed = changed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="dynamodb-ttl")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                moment = now()
                found = find_expired(moment)  # the long part, beside the requests
                if not found:
                    continue
                with self._hold() as idle:
                    if idle is False:  # a request outlived the wait: next time
                        continue
                    deleted = delete_expired(found, moment)
                    if deleted:
                        self._changed(deleted)  # inside the hold: no request counts meanwhile
            except Exception:  # a failed sweep must not stop the next ones
                log.exception("TTL sweep failed; the next one runs in %.0f s", self.interval)
