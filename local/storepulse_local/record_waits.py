"""Long polls for stream records on the embedded AWS: how the local Lambda runtime learns that a
shard it has caught up on has new records, without reading it again and again.

Two streams are waited on. A Kinesis shard read through an enhanced fan-out consumer, whose
records AWS pushes (SubscribeToShard, absent from moto: ``storepulse_local.kinesis``). And a
DynamoDB table's stream, which Lambda polls 4 times a second: the wait stands in for the empty
reads of a caught-up shard, and the runtime still reads at Lambda's cadence once records exist
(``storepulse_local.dynamodb_streams``). A wait only learns that records exist: the runtime
reads them with GetRecords (signed, IAM enforced), so iterators and checkpoints behave as on AWS.

The waits are served in front of the snapshots' request gate (a waiter must never hold a
snapshot back) on loopback paths that are not AWS APIs, like ``/moto-api``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

MAX_WAIT_SECONDS: Final = 20.0

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# A wait request's body -> whether records exist after its iterator (blocking up to its timeout).
Waiter = Callable[[dict[str, Any]], bool]


class RecordWaits:
    """Waiters on one service's streams. A write wakes every waiter once; each checks its own
    shard with ``arrived``."""

    def __init__(self) -> None:
        self._changed = threading.Condition()

    def notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, arrived: Callable[[], bool], timeout: float) -> bool:
        """True as soon as ``arrived()``; False after ``timeout`` (at most MAX_WAIT_SECONDS)."""
        with self._changed:
            return self._changed.wait_for(arrived, timeout=min(timeout, MAX_WAIT_SECONDS))


def unlocked_backend(backends: Any, account: str, region: str) -> Any:
    """A moto service backend, or None, found with dict's own look-ups: moto's take its global
    backend lock, which a snapshot's fork could copy held (a wait runs outside the gate)."""
    regions = dict.get(backends, account)
    return dict.get(regions, region) if regions is not None else None


def serve_record_waits(app: WsgiApp, waiters: Mapping[str, Waiter]) -> WsgiApp:
    """A WSGI app: a POST to one of ``waiters``' paths is that wait ({"RecordsAfterIterator":
    bool}); everything else goes to ``app``."""

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        waiter = waiters.get(environ.get("PATH_INFO", ""))
        if waiter is None or environ.get("REQUEST_METHOD") != "POST":
            return app(environ, start_response)
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
            found = waiter(json.loads(environ["wsgi.input"].read(size)))
            status, answer = "200 OK", {"RecordsAfterIterator": found}
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
            status, answer = "400 Bad Request", {"Message": f"invalid wait request: {exc!r}"}
        data = json.dumps(answer).encode()
        start_response(
            status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        return [data]

    return dispatch
