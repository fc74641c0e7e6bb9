"""The embedded AWS: a moto server on loopback, configured the way the platform needs it.

Run it as a process (``python -m storepulse_local.embedded_aws --port 5055``) or in-process
(``EmbeddedAws(port=0).start()``, as the tests do). moto's Lambda Docker mode is switched off:
no Docker engine runs here, and the project's own runtime invokes the handlers. IAM is enforced:
requests must be signed with the keys of a principal of storepulse_local.iam and be allowed by
its policies.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from storepulse.config import LOOPBACK
from storepulse_local import iam
from storepulse_local.dynamodb_ttl import SWEEP_INTERVAL_SECONDS

log = logging.getLogger(__name__)

MOTO_CONFIG = {"lambda": {"use_docker": False}}


class EmbeddedAwsError(RuntimeError):
    """The embedded AWS could not start or does not answer."""


class EmbeddedAws:
    """A moto server bound to loopback, served from a background thread."""

    def __init__(
        self,
        port: int = 0,
        host: str = LOOPBACK,
        state_dir: Path | None = None,
        ttl_sweep_seconds: float | None = None,
    ) -> None:
        # Imported here: moto is a local/test dependency, not needed on real AWS.
        from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        from storepulse_local import dynamodb_streams, kinesis
        from storepulse_local.cloudformation import patch_cloudformation
        from storepulse_local.dynamodb_export import patch_dynamodb_exports
        from storepulse_local.dynamodb_scan import patch_dynamodb_scans
        from storepulse_local.dynamodb_streams import patch_dynamodb_streams
        from storepulse_local.dynamodb_ttl import TtlSweeper
        from storepulse_local.kinesis import patch_kinesis, patch_stream_consumers
        from storepulse_local.persistence import QUIET_TIMEOUT, Persistence, RequestGate
        from storepulse_local.quicksight import LocalQuickSight
        from storepulse_local.record_waits import serve_record_waits

        _track_no_model_instances()
        _leave_kinesis_mappings_to_the_local_runtime()
        _leave_dynamodb_stream_mappings_to_the_local_runtime()
        patch_cloudformation()  # outputs after change sets, PITR, key policies
        patch_kinesis()  # the retention period; reads and puts that do not walk the shard
        patch_stream_consumers()  # enhanced fan-out: the stack's consumer, mappings through it
        patch_dynamodb_exports()  # incremental exports from a change log of each table
        patch_dynamodb_streams()  # the 24 h retention period of stream records
        patch_dynamodb_scans()  # a Scan page sorts the table without a Python call per compare
        # QuickSight calls moto cannot answer (describe, list, ingestions that run) are served by
        # the local QuickSight; every other request goes on to moto.
        self.quicksight = LocalQuickSight()
        app = self.quicksight.in_front_of(
            _remembering_backends(DomainDispatcherApplication)(create_backend_app)
        )
        # With a state dir, the state is restored before any request and kept by snapshots.
        self.persistence = Persistence(state_dir, self.quicksight) if state_dir else None
        gate: RequestGate | None = None
        if self.persistence:
            self.persistence.restore()
            app = gate = self.persistence.wrap(app)
        # DynamoDB's TTL deletions (the platform's server; a test's deletes when it asks) run
        # while no request does: the gate holds requests for the sweep, as for a snapshot.
        self.ttl: TtlSweeper | None = None
        if ttl_sweep_seconds:
            app = gate = gate or RequestGate(app)
            self.ttl = TtlSweeper(
                ttl_sweep_seconds,
                hold=lambda: gate.quiet(QUIET_TIMEOUT),
                changed=lambda deleted: setattr(gate, "mutations", gate.mutations + deleted),
            )
        self.gate = gate  # what a snapshot or a sweep holds requests with
        # Long polls for records (enhanced fan-out's push, a caught-up table stream's reads),
        # outside the snapshots' request gate.
        app = serve_record_waits(
            app,
            {
                kinesis.WAIT_PATH: kinesis.wait_for_records,
                dynamodb_streams.WAIT_PATH: dynamodb_streams.wait_for_records,
            },
        )
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request is noise
        try:
            # Bound in the caller's thread, so "port in use" raises here instead of hanging.
            self._server = make_server(
                host, port, app, threaded=True, request_handler=MotoRequestHandler
            )
        except (OSError, SystemExit) as exc:
            # werkzeug prints and exits on a busy port; turn that into an error the caller handles.
            raise EmbeddedAwsError(f"cannot listen on {host}:{port}: port in use") from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="embedded-aws"
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> EmbeddedAws:
        iam.create_principals()
        iam.enforce()
        self._thread.start()
        configure(self.url)
        if self.persistence:
            self.persistence.start()
        if self.ttl:
            self.ttl.start()
        return self

    def reset(self) -> None:
        """Forget every resource (between tests) and re-apply the configuration."""
        _post(f"{self.url}/moto-api/reset", {})
        iam.create_principals()  # the reset forgot them
        configure(self.url)

    def stop(self) -> None:
        if self.ttl:
            self.ttl.stop()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        if self.persistence:
            self.persistence.stop()  # the final snapshot


def _remembering_backends(dispatcher: type) -> type:
    """moto's dispatcher finds a request's service by listing its package folder (~150 stat
    calls) and trying 183 URL patterns, for every request and under the lock all requests share:
    ~1.7 ms of CPU each. The answer depends on the host name alone (moto's, or the one it infers
    from the request's signing scope: a few per service), so it is remembered."""

    class RememberingDispatcher(dispatcher):  # type: ignore[misc,valid-type]
        def get_backend_for_host(self, host: str | None) -> Any:
            known: dict[str | None, Any] = self.__dict__.setdefault("_storepulse_backends", {})
            if host not in known:
                known[host] = super().get_backend_for_host(host)
            return known[host]

    return RememberingDispatcher


def _track_no_model_instances() -> None:
    """moto appends every model object it ever creates (each item put, stream and Kinesis
    record, S3 object, shard iterator: five a second per polled table) to a list of its class,
    for its /moto-api/data.json page, and never lets go of them: what AWS drops (records past
    the retention period, replaced items, expired iterators) stayed in memory for as long as
    the process ran, and a restore appended every restored object again. Nothing here reads
    those lists, so objects are no longer tracked; those moto's S3 reset closes (its keys'
    temp files) are the buckets' own, which it closes first, or garbage, closed when freed."""
    from moto.core.common_models import BaseModel
    from moto.core.model_instances import reset_model_data

    if getattr(BaseModel, "_storepulse_untracked", False):
        return

    def __new__(cls: type, *args: object, **kwargs: object) -> object:  # noqa: N807 (moto's)
        return super(BaseModel, cls).__new__(cls)

    BaseModel.__new__ = staticmethod(__new__)  # type: ignore[method-assign,assignment]
    BaseModel._storepulse_untracked = True  # type: ignore[attr-defined]
    reset_model_data()  # what was tracked before


def _leave_kinesis_mappings_to_the_local_runtime() -> None:
    """moto calls a Kinesis event source mapping's function inside every PutRecords, once per
    record, trying Docker each time (~3 ms and an error line per record, whatever the Docker
    setting). The local Lambda runtime delivers those records with Lambda's real batching and
    contract, so moto's own delivery is switched off here."""
    from moto.awslambda.models import LambdaBackend

    def _delivered_by_the_local_runtime(self: object, *args: object, **kwargs: object) -> None:
        return None

    LambdaBackend.send_kinesis_message = _delivered_by_the_local_runtime  # type: ignore[method-assign]


# AWS expires a shard iterator after 15 minutes; moto keeps every one it hands out (a poller
# makes five a second per table), so only the newest are kept.
DYNAMODB_STREAM_ITERATORS_KEPT = 2000


def _leave_dynamodb_stream_mappings_to_the_local_runtime() -> None:
    """moto delivers a table's stream records to a mapped function inside every write, and
    when that "succeeds" (without Docker it answers an error text) it empties the shard, whose
    sequence numbers then start again (a reader would see the same number twice). The local
    Lambda runtime reads the stream as Lambda does, so moto's delivery is switched off; and the
    shard iterators moto keeps are bounded."""
    from moto.awslambda.models import LambdaBackend
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend

    def _delivered_by_the_local_runtime(self: object, *args: object, **kwargs: object) -> None:
        return None

    LambdaBackend.send_dynamodb_items = _delivered_by_the_local_runtime  # type: ignore[method-assign,assignment]
    get_records = DynamoDBStreamsBackend.get_records

    def _get_records(self: DynamoDBStreamsBackend, iterator_arn: str, limit: int) -> dict:
        answer = get_records(self, iterator_arn, limit)
        iterators = self.shard_iterators
        for old in list(iterators)[: max(0, len(iterators) - DYNAMODB_STREAM_ITERATORS_KEPT)]:
            del iterators[old]
        return answer

    DynamoDBStreamsBackend.get_records = _get_records  # type: ignore[method-assign]


def _post(url: str, body: dict) -> bytes:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read()


def configure(url: str) -> None:
    """Apply the platform's moto configuration (Lambda Docker mode off)."""
    _post(f"{url}/moto-api/config", MOTO_CONFIG)


def is_healthy(url: str) -> bool:
    """True when the server answers and runs with the platform's configuration."""
    try:
        with urllib.request.urlopen(f"{url}/moto-api/config", timeout=2) as response:
            config = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return config.get("lambda", {}).get("use_docker") is False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, help="keep the state there (else in memory)")
    parser.add_argument("--host", default=LOOPBACK, help="0.0.0.0 only inside a container")
    parser.add_argument(
        "--ttl-sweep-seconds",
        type=float,
        default=SWEEP_INTERVAL_SECONDS,
        help="delete expired DynamoDB items (TTL) this often; 0: never",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from storepulse_local.persistence import SnapshotError

    try:
        server = EmbeddedAws(
            port=args.port,
            host=args.host,
            state_dir=args.state_dir,
            ttl_sweep_seconds=args.ttl_sweep_seconds,
        ).start()
    except (EmbeddedAwsError, SnapshotError) as exc:
        raise SystemExit(f"embedded AWS: {exc}") from None
    stopped = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("embedded AWS listening on %s (moto, IAM enforced, no Lambda Docker)", server.url)
    stopped.wait()
    server.stop()
    # The final snapshot is on disk: leave without the interpreter's teardown, which walks the
    # whole state (millions of small objects after a week): at a load of 25, `make down` forced
    # this process after its final snapshot had completed.
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    main()
