"""The embedded AWS's state on disk: snapshots of moto's backends and of the local QuickSight.

Why snapshots (pickles of every loaded ``BackendDict``) and not a log of requests replayed at
start: a replay re-runs every request ever made (a week of the demo is hundreds of thousands of
PutRecords and DynamoDB writes), so a start would grow with the platform's age; a snapshot is
proportional to the live state only. ``benchmarks/persistence.py`` measures both sizes and times.

One snapshot file, ``<state>/aws/snapshot.pickle``: a JSON header line (format, moto and Python
versions), then one pickle of everything, so objects shared between services (a CloudFormation
stack holds the resources it created) keep their identity. It is written atomically (temp file,
fsync, rename, directory fsync): a crash mid-snapshot leaves the previous one.

Periodic snapshots are written by a forked child (copy-on-write, as Redis does): requests are
held only for the fork, whatever the size of the state; the last one, at stop, in-process.

The runtime's Kinesis checkpoints are copied into each snapshot, read while no request runs:
restoring the streams and tables of a snapshot with the checkpoints of the same moment keeps
them consistent (see ``reconcile_checkpoints``).
"""

from __future__ import annotations

import contextlib
import copyreg
import functools
import gc
import importlib
import io
import json
import logging
import os
import pickle
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

log = logging.getLogger(__name__)

FORMAT_VERSION: Final = 2  # 2: attribute values as _dynamo_type calls
READABLE_FORMATS: Final = (1, 2)  # 1 unpickles as before
SNAPSHOT_FILE: Final = "snapshot.pickle"
CHECKPOINTS: Final = Path("lambda-runtime") / "checkpoints.json"  # under the state dir
RESET_HINT: Final = "reset the local state with `make reset` (it deletes {state})"


class SnapshotError(RuntimeError):
    """A snapshot that cannot be used: another version wrote it, or it is damaged."""


# --- atomic files --------------------------------------------------------------------------------


def write_atomic(path: Path, chunks: Iterable[bytes]) -> None:
    """``chunks`` written to ``path`` atomically (``write_atomic_with``)."""

    def write(out: BinaryIO) -> None:
        for chunk in chunks:
            out.write(chunk)

    write_atomic_with(path, write)


def write_atomic_with(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Readers and a crash see the old file or the new one, never a torn one: ``write`` fills a
    temp file in the same directory (it may seek back and start over), which is fsynced and
    renamed over ``path``, then the directory is fsynced (the rename itself must reach the disk
    before a power cut, or the old name may come back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_temp_files(path: Path) -> int:
    """Temp files of snapshots a crash interrupted (only one process writes: safe at start)."""
    orphans = list(path.parent.glob(f".{path.name}.*.tmp"))
    for orphan in orphans:
        orphan.unlink(missing_ok=True)
    return len(orphans)


# --- the version tag -----------------------------------------------------------------------------


def version_tag() -> dict[str, Any]:
    """What must match for a snapshot to load: pickles name moto's classes and their fields."""
    import moto

    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return {"format": FORMAT_VERSION, "moto": moto.__version__, "python": python}


def check_tag(header: dict[str, Any], path: Path, state_dir: Path) -> None:
    expected = version_tag()
    found = {key: header.get(key) for key in expected}
    readable = found["format"] in READABLE_FORMATS  # or an earlier format this code reads
    if not readable or {**found, "format": 0} != {**expected, "format": 0}:
        raise SnapshotError(
            f"{path} was written by {_describe(found)}; this is {_describe(expected)}, which "
            f"cannot read it; {RESET_HINT.format(state=state_dir)}, or go back to that version"
        )


def _describe(tag: dict[str, Any]) -> str:
    return f"moto {tag['moto']} (snapshot format {tag['format']}, Python {tag['python']})"


# --- pickling moto's objects ---------------------------------------------------------------------

_LOCK_TYPES: Final = (type(threading.Lock()), type(threading.RLock()))


def backend_dict_key(backends: Any) -> str:
    """A BackendDict's name: its backend class (two share the service name "lambda")."""
    return f"{backends.backend.__module__}:{backends.backend.__qualname__}"


def _get_backend_dict(key: str) -> Any:
    """The live BackendDict of ``key``: a global of the backend class's module."""
    from moto.core.base_backend import BackendDict

    module_name, _, qualname = key.partition(":")
    module = importlib.import_module(module_name)
    for value in vars(module).values():
        if isinstance(value, BackendDict) and value.backend.__qualname__ == qualname:
            return value
    raise SnapshotError(f"moto has no backends for {key} any more")


def _get_account_backend(key: str, account_id: str) -> Any:
    return _get_backend_dict(key)[account_id]


class _Pickler(pickle.Pickler):
    """Locks are pickled as new, released locks (nothing runs while a snapshot is taken, and no
    thread survives a restart); moto's global backend dictionaries by reference, so a restored
    object that points at one points at the live one."""

    def reducer_override(self, obj: Any) -> Any:
        # Called for every object of the state (millions at a week): most are of a type that
        # none of the cases below concerns, found in one look-up (the checks took 60% of a
        # snapshot's CPU).
        kind = type(obj)
        if kind is _dynamo_type_class() and len(obj.__dict__) == 2:  # type and value
            # Every attribute value: built by a call instead of a restored __dict__, which
            # took 215 bytes each instead of 152, and 25 bytes of pickle instead of 17.
            value = _interned_keys(obj.value) if type(obj.value) is dict else obj.value
            return _dynamo_type, (obj.type, value)
        if kind is _fake_key_class():
            return _restore_fake_key, (kind, _fake_key_state(obj))
        if kind is _limited_size_dict():
            # An item's attributes: unpickled key by key, each key re-summed the size of the
            # whole item (quadratic: 70% of a restore). Built from a dict, the check is skipped
            # (the item was checked when written). Names interned: written once per snapshot
            # and shared by every restored item, instead of a copy per item.
            return kind, (_interned_keys(obj),)
        special = _SPECIAL.get(kind)
        if special is None:
            special = _SPECIAL[kind] = _is_special(kind)
        return self._special_reduce(obj) if special else NotImplemented

    def _special_reduce(self, obj: Any) -> Any:
        from moto.core.base_backend import AccountSpecificBackend, BackendDict

        if isinstance(obj, io.TextIOWrapper) and (name := _std_stream_name(obj)):
            return _std_stream, (name,)  # e.g. a Thread's copy of sys.stderr
        if isinstance(obj, threading.Thread):
            return threading.Thread, (), {"_name": obj.name}  # no thread survives a restart
        if isinstance(obj, _LOCK_TYPES):
            return (threading.RLock if "RLock" in type(obj).__name__ else threading.Lock), ()
        if type(obj).__module__.startswith("cryptography.") and hasattr(obj, "private_bytes"):
            return _load_private_key, (_private_pem(obj),)  # KMS keys: Rust objects
        if isinstance(obj, weakref.WeakValueDictionary | weakref.WeakKeyDictionary):
            return type(obj), (dict(obj),)
        if isinstance(obj, defaultdict) and _is_lambda(obj.default_factory):
            return _plain_defaultdict(obj)
        if isinstance(obj, BackendDict):
            return _get_backend_dict, (backend_dict_key(obj),)
        if isinstance(obj, AccountSpecificBackend):
            key = f"{obj.backend.__module__}:{obj.backend.__qualname__}"
            return _get_account_backend, (key, obj.account_id)
        return NotImplemented


_SPECIAL: Final[dict[type, bool]] = {}  # type -> whether _special_reduce may concern it
_READ_CHUNK: Final = 16 * 1024 * 1024


@functools.cache
def _fake_key_class() -> type:
    from moto.s3.models import FakeKey

    return FakeKey


def _pickled_types() -> None:
    """Look up (import) the moto types the pickler treats apart, before a fork: an import in
    the forked child could wait for good on a lock another thread of the parent held."""
    _dynamo_type_class(), _limited_size_dict(), _fake_key_class()


def _fake_key_state(key: Any) -> dict[str, Any]:
    """moto's ``FakeKey.__getstate__``, without moving the file offset of the object's buffer.

    moto spools an object over ~5 MiB (a multipart upload's parts too) to a temporary file. In
    the forked writer that file's offset is the parent's: moto's own state read (seek, read)
    moved it under the parent's requests, which read and write the same files meanwhile; a
    multipart upload completed during a snapshot assembled a corrupt object (the deployed change
    capture zip, 2026-12-08). Read here with ``pread``, which leaves the offset alone."""
    state = key.__dict__.copy()
    state["value"] = _buffered_bytes(state.pop("_value_buffer"))
    state.pop("lock", None)
    return state


def _buffered_bytes(buffer: Any) -> bytes | str:
    """A SpooledTemporaryFile's content, read without moving its position ("" once closed, as
    moto pickles a deleted object's)."""
    if buffer.closed:
        return ""
    inner = buffer._file  # a BytesIO until spooled to disk, then the temporary file
    if isinstance(inner, io.BytesIO):
        return inner.getvalue()
    fd = inner.fileno()
    size, chunks, offset = os.fstat(fd).st_size, [], 0
    while offset < size:
        chunk = os.pread(fd, min(_READ_CHUNK, size - offset), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _restore_fake_key(kind: type, state: dict[str, Any]) -> Any:
    key = kind.__new__(kind)
    key.__setstate__(state)
    return key


def _is_special(kind: type) -> bool:
    from moto.core.base_backend import AccountSpecificBackend, BackendDict

    bases = (io.TextIOWrapper, threading.Thread, *_LOCK_TYPES, defaultdict)
    bases += (weakref.WeakValueDictionary, weakref.WeakKeyDictionary)
    return issubclass(
        kind, (*bases, BackendDict, AccountSpecificBackend)
    ) or kind.__module__.startswith("cryptography.")


@functools.cache
def _limited_size_dict() -> type:
    from moto.dynamodb.models.dynamo_type import LimitedSizeDict

    return LimitedSizeDict


@functools.cache
def _dynamo_type_class() -> type:
    from moto.dynamodb.models.dynamo_type import DynamoType

    return DynamoType


def _dynamo_type(kind: str, value: Any) -> Any:
    """A restored DynamoDB attribute value, as moto's ``DynamoType`` holds it (already typed:
    its constructor would convert a map's or list's members again)."""
    restored = object.__new__(_dynamo_type_class())
    restored.type = kind
    restored.value = value
    return restored


def _interned_keys(mapping: dict[str, Any]) -> dict[str, Any]:
    return {sys.intern(key): value for key, value in mapping.items()}


_STD_STREAMS: Final = ("stdout", "stderr", "__stdout__", "__stderr__")


def _std_stream_name(stream: Any) -> str:
    return next((name for name in _STD_STREAMS if getattr(sys, name, None) is stream), "")


def _std_stream(name: str) -> Any:
    return getattr(sys, name)


def _is_lambda(factory: Any) -> bool:
    return getattr(factory, "__name__", "") == "<lambda>"


def _plain_defaultdict(obj: defaultdict) -> Any:
    """moto's ``defaultdict(lambda: {})``: a lambda does not pickle, the type of what it makes
    does (when it makes an empty builtin container or zero)."""
    sample = obj.default_factory() if obj.default_factory else None
    kind = type(sample)
    if kind not in (dict, list, set, int, str) or sample != kind():
        raise pickle.PicklingError(f"defaultdict with an unpicklable factory: {sample!r}")
    return defaultdict, (kind,), None, None, iter(obj.items())


def _private_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _load_private_key(pem: bytes) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(pem, password=None)


copyreg.pickle(threading.Event, lambda event: (_new_event, (event.is_set(),)))


def _new_event(is_set: bool) -> threading.Event:
    event = threading.Event()
    if is_set:
        event.set()
    return event


def moto_state() -> dict[str, dict[str, dict[str, Any]]]:
    """backend class -> account -> region -> backend, for every backend moto has created."""
    from moto.core.base_backend import BackendDict

    return {
        backend_dict_key(backends): {
            account: dict(regions) for account, regions in backends.items()
        }
        for backends in list(BackendDict._instances)
    }


def install_moto_state(state: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Put restored backends where moto looks for them (before any request is served)."""
    for key, accounts in state.items():
        backends = _get_backend_dict(key)
        for account, regions in accounts.items():
            account_backends = backends[account]  # created and registered by moto
            for region, backend in regions.items():
                dict.__setitem__(account_backends, region, backend)


# --- snapshots -----------------------------------------------------------------------------------


@dataclass
class Snapshot:
    moto: dict[str, dict[str, dict[str, Any]]]
    quicksight: Any
    checkpoints: Any  # the runtime's checkpoint file's content at that moment (None: none)
    taken_at: float


def dump(snapshot: Snapshot) -> bytes:
    buffer = io.BytesIO()
    dump_to(buffer, snapshot)
    return buffer.getvalue()


def dump_to(out: BinaryIO, snapshot: Snapshot) -> None:
    """The header line, then the pickle, streamed into ``out``: never the whole snapshot in
    memory as well as the state it pickles (a week of the demo pickles to over 500 MiB)."""
    out.write(json.dumps(version_tag() | {"taken_at": snapshot.taken_at}).encode() + b"\n")
    try:
        _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(snapshot)
    except (TypeError, AttributeError, pickle.PicklingError) as exc:
        raise SnapshotError(f"cannot snapshot: {exc}, at {where_unpicklable(snapshot)}") from exc


def where_unpicklable(root: Any, limit: int = 2_000_000) -> str:
    """The path to the first object the pickler refuses: what a new moto patch must handle."""
    seen, queue = set(), [(root, "snapshot")]
    while queue and len(seen) < limit:
        obj, path = queue.pop()
        if id(obj) in seen or isinstance(obj, str | bytes | int | float | type(None)):
            continue
        seen.add(id(obj))
        try:
            _Pickler(io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL).dump(_shallow(obj))
        except Exception:
            if not _children(obj):
                return f"{path} ({type(obj).__name__})"
        queue.extend((child, f"{path}{step}") for step, child in _children(obj))
    return "(not found)"


def _shallow(obj: Any) -> Any:
    return None if _children(obj) else obj


def _children(obj: Any) -> list[tuple[str, Any]]:
    if isinstance(obj, dict):
        return [(f"[{key!r}]", value) for key, value in obj.items()]
    if isinstance(obj, list | tuple | set | frozenset):
        return [(f"[{i}]", value) for i, value in enumerate(obj)]
    state = getattr(obj, "__dict__", None)
    return [(f".{key}", value) for key, value in state.items()] if isinstance(state, dict) else []


def load(path: Path, state_dir: Path) -> Snapshot | None:
    """The snapshot at ``path`` (None if there is none); refuses another version's. Unpickled
    from the file as it is read: the file's bytes are never all in memory beside the state
    (which took the restore's peak from 3.9 to 5.2 GiB at a week of the demo)."""
    try:
        source = path.open("rb")
    except FileNotFoundError:
        return None
    with source:
        try:
            header = json.loads(source.readline())
        except ValueError:
            header = {}
        check_tag(header if isinstance(header, dict) else {}, path, state_dir)
        try:
            with gc_paused():
                snapshot = pickle.load(source)
                # The restored state lives as long as the process: out of the collector's
                # sight, the first collection after the pause and every full one no longer
                # walk it (400,000 objects: load and collections 0.92 s of CPU instead of 2.10,
                # a full collection 0 s instead of 0.87), nor touch its pages after a fork.
                gc.freeze()
        except Exception as exc:  # never start empty in silence over a damaged state
            raise SnapshotError(
                f"{path} is damaged ({type(exc).__name__}: {exc}); "
                f"{RESET_HINT.format(state=state_dir)}"
            ) from exc
    if not isinstance(snapshot, Snapshot):
        raise SnapshotError(f"{path} holds no snapshot; {RESET_HINT.format(state=state_dir)}")
    return snapshot


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Unpickling creates millions of objects and nothing to collect: the cyclic collector,
    run every few thousand of them over a growing heap, took 70-80% of a restore (13.8 MiB:
    17-23 s with it, 4-8 s without, ``benchmarks/persistence.py``)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_checkpoints(state_dir: Path) -> Any:
    try:
        return json.loads((state_dir / CHECKPOINTS).read_text())
    except (FileNotFoundError, ValueError):
        return None


# --- the request gate ----------------------------------------------------------------------------

READ_PREFIXES: Final = ("Get", "Describe", "List", "Query", "Scan", "BatchGet", "Head")


class RequestGate:
    """WSGI middleware: counts mutating requests (a snapshot is due only when some ran) and lets
    a snapshot wait until no request runs, holding new ones meanwhile."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.mutations = 0
        self._running = 0
        self._paused = False
        self._cond = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        mutating = is_mutation(environ)
        # A long poll mostly waits: a snapshot that waited for it would hold every other
        # request meanwhile. It changes a queue only when a message arrives, which a snapshot
        # holds off; what it finds becoming visible in between, a retried snapshot takes.
        counted = 0 if _is_long_poll(environ) else 1
        with self._cond:
            self._cond.wait_for(lambda: not self._paused)
            self._running += counted
            if mutating:
                self.mutations += 1
        try:
            # The whole body is produced here: a snapshot never sees a request half-served.
            return list(self.app(environ, start_response))
        finally:
            with self._cond:
                self._running -= counted
                self._cond.notify_all()

    @contextlib.contextmanager
    def quiet(self, timeout: float) -> Iterator[bool]:
        """Hold new requests; yield True once none runs, False if that took over ``timeout``
        (a long poll: the caller retries later)."""
        with self._cond:
            self._paused = True
            idle = self._cond.wait_for(lambda: self._running == 0, timeout=timeout)
        try:
            yield idle
        finally:
            with self._cond:
                self._paused = False
                self._cond.notify_all()


def is_mutation(environ: dict[str, Any]) -> bool:
    """Cheap and conservative: unknown means a mutation (one snapshot too many, never too few)."""
    method = environ.get("REQUEST_METHOD", "GET")
    if method in ("GET", "HEAD", "OPTIONS"):
        return False
    target = environ.get("HTTP_X_AMZ_TARGET", "")  # JSON protocols: "Kinesis_20131202.GetRecords"
    operation = target.rpartition(".")[2] if target else _form_action(environ)
    return not operation.startswith(READ_PREFIXES) if operation else True


def _is_long_poll(environ: dict[str, Any]) -> bool:
    return environ.get("HTTP_X_AMZ_TARGET", "") == "AmazonSQS.ReceiveMessage"


def _form_action(environ: dict[str, Any]) -> str:
    """The Action of a query-protocol call (IAM, SNS, CloudFormation), read from its small form
    body, which is then put back for the app."""
    if "x-www-form-urlencoded" not in environ.get("CONTENT_TYPE", ""):
        return ""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if not length:
        return ""  # a streamed body is left alone (and counted as a change)
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    for pair in body.split(b"&"):
        if pair.startswith(b"Action="):
            return pair[len(b"Action=") :].decode(errors="replace")
    return ""


# --- the keeper ----------------------------------------------------------------------------------

SNAPSHOT_INTERVAL: Final = 2.0  # seconds between checks at least; a snapshot only after changes
# Writing a snapshot takes about this many times the CPU of restoring it (a week of the demo:
# 42 s and 10 s, benchmarks/persistence.py, 2026-12-07).
SNAPSHOT_PER_RESTORE_CPU: Final = 4.0
QUIET_TIMEOUT: Final = 0.5  # a periodic snapshot waits this long for running requests
FINAL_QUIET_TIMEOUT: Final = 25.0  # the last one outwaits a long poll (SQS: 20 s at most)
# Seconds the last one may take per MiB of the snapshot before it: a week of the demo (442 MiB)
# took 42 s of CPU and 174 s of wall time to write at a load of 6-14 (2026-12-07).
FINAL_SECONDS_PER_MIB: Final = 0.5


@dataclass
class SnapshotStats:
    count: int = 0
    held_seconds: float = 0.0  # requests held: the fork (or the pickle, without one)
    last_seconds: float = 0.0  # until it is on disk
    last_cpu_seconds: float = 0.0  # the forked writer's CPU time (what a loaded machine hides)
    last_writer_peak_bytes: int = 0  # the forked writer's peak resident memory
    last_bytes: int = 0


def _write_and_exit(persistence: Persistence) -> None:
    """In the forked child: pickle, write, exit without running the parent's cleanups."""
    code = 1
    try:
        write_atomic_with(persistence.path, persistence._write_retrying)
        code = 0
    except BaseException:
        traceback.print_exc()  # no logging: its locks may be held by a thread left behind
    finally:
        os._exit(code)


def _wait_for_writer(pid: int) -> tuple[float, int]:
    """Until the forked writer exits; its CPU seconds and peak resident bytes."""
    _, status, usage = os.wait4(pid, 0)
    if (code := os.waitstatus_to_exitcode(status)) != 0:
        raise SnapshotError(f"the snapshot writer (pid {pid}) failed with {code}: see above")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024  # Linux: KiB


def final_snapshot_grace(state_dir: Path, floor: float) -> float:
    """Seconds to let the embedded AWS write its last snapshot when stopped before killing it
    (``floor`` at least): after a long poll, as long as the state on disk may take to write on a
    loaded machine. A fixed 40 s killed it mid-snapshot at a week of the demo, at a load of 4-6:
    what came after the previous snapshot was lost."""
    try:
        mib = (state_dir / "aws" / SNAPSHOT_FILE).stat().st_size / 2**20
    except FileNotFoundError:
        return floor
    return max(floor, FINAL_QUIET_TIMEOUT + FINAL_SECONDS_PER_MIB * mib)


def first_wait_after_restore(interval: float, restore_cpu: float) -> float:
    """Seconds before the first periodic snapshot after a restore: as long as the loop waits
    after a snapshot as costly as one of the restored state. The restored state is on disk
    already, and the processes ``make up`` starts beside it need the CPU most then: at a week of
    the demo the first snapshot (some 40 s of CPU, forked) came while Airflow, the Lambda
    runtime and the simulator started. A crash meanwhile loses what came after the restore, as
    one between two snapshots does."""
    return max(interval, 4 * SNAPSHOT_PER_RESTORE_CPU * restore_cpu)


class Persistence:
    """Restores at start, snapshots every ``interval`` s when requests changed something, and
    once more at stop."""

    def __init__(self, state_dir: Path, quicksight: Any, interval: float = SNAPSHOT_INTERVAL):
        self.state_dir = state_dir
        self.path = state_dir / "aws" / SNAPSHOT_FILE
        self.quicksight = quicksight
        self.interval = interval
        self.gate: RequestGate | None = None
        self.stats = SnapshotStats()
        self._saved_mutations = 0
        self.first_wait = interval  # until the first periodic snapshot (see restore())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="aws-snapshots")
        self._write_lock = threading.Lock()

    def restore(self) -> Snapshot | None:
        """Before the server answers anything: load and install the last snapshot, if any."""
        removed = remove_temp_files(self.path)
        if removed:
            log.info("removed %d snapshot temp file(s) a crash left", removed)
        started, cpu = time.perf_counter(), time.process_time()
        snapshot = load(self.path, self.state_dir)
        if snapshot is None:
            log.info("no snapshot in %s: starting empty", self.path.parent)
            return None
        install_moto_state(snapshot.moto)
        self.quicksight.restore_state(snapshot.quicksight)
        reconcile_checkpoints(self.state_dir, snapshot.checkpoints)
        restore_cpu = time.process_time() - cpu
        log.info(  # storepulse_local.platform.phases reads the times
            "restored the state of %s from %s in %.2f s (CPU %.2f s)",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snapshot.taken_at)),
            self.path,
            time.perf_counter() - started,
            restore_cpu,
        )
        self.first_wait = first_wait_after_restore(self.interval, restore_cpu)
        log.info("first snapshot of the restored state in %.0f s at the earliest", self.first_wait)
        return snapshot

    def wrap(self, app: Callable[..., Iterable[bytes]]) -> RequestGate:
        self.gate = RequestGate(app)
        return self.gate

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """The final snapshot (the server no longer accepts requests)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=FINAL_QUIET_TIMEOUT + 30)
        if self.snapshot(FINAL_QUIET_TIMEOUT, force=True, fork=False):
            log.info(
                "final snapshot: %d bytes in %.2f s (%s)",
                self.stats.last_bytes,
                self.stats.last_seconds,
                self.path,
            )

    def _loop(self) -> None:
        wait = self.first_wait
        while not self._stop.wait(wait):
            try:
                self.snapshot(QUIET_TIMEOUT)
            except Exception:  # a failed snapshot must not stop the next ones
                log.exception("snapshot failed; the previous one stays")
            # Snapshots take at most a fifth of the time (the forked writer's CPU).
            wait = max(self.interval, 4 * self.stats.last_seconds)

    def snapshot(self, quiet_timeout: float, force: bool = False, fork: bool = True) -> bool:
        """Take and write a snapshot if something changed since the last; True if written.

        ``fork``: a child process pickles and writes the copy-on-write image of the state,
        so requests are held only for the fork (ms), not for the pickle (seconds when large)."""
        assert self.gate is not None, "wrap() the app first"
        with self._write_lock:
            mutations = self.gate.mutations
            if mutations == self._saved_mutations and not force:
                return False
            started = time.perf_counter()
            _pickled_types()  # imported here: the forked child must import nothing
            # QuickSight's workers change its state under its lock: held across the fork, so
            # the child (whose only thread is this one, the lock's owner) never waits for it.
            with self.gate.quiet(quiet_timeout) as idle, self.quicksight.state_lock():
                if not idle and not force:
                    return False
                child = os.fork() if fork else None
                if child == 0:
                    _write_and_exit(self)
                if not child:  # the last one: nothing waits for it, the server has stopped
                    write_atomic_with(self.path, self._write_retrying)
            self.stats.held_seconds = time.perf_counter() - started
            if child:
                self.stats.last_cpu_seconds, self.stats.last_writer_peak_bytes = _wait_for_writer(
                    child
                )
            self._saved_mutations = mutations
            self.stats.count += 1
            self.stats.last_seconds = time.perf_counter() - started
            self.stats.last_bytes = self.path.stat().st_size
            return True

    def _write_retrying(self, out: BinaryIO, attempts: int = 3) -> None:
        """A long poll may change a queue while it is pickled ("changed size during
        iteration"): written again from the start then."""
        for attempt in range(attempts):
            out.seek(0)
            out.truncate()
            try:
                self.write_to(out)
                return
            except SnapshotError:
                raise
            except RuntimeError:
                if attempt == attempts - 1:
                    raise

    def write_to(self, out: BinaryIO) -> None:
        """The state now, pickled into ``out``."""
        with self.quicksight.state_lock():
            snapshot = Snapshot(
                moto=moto_state(),
                quicksight=self.quicksight.state(),
                checkpoints=read_checkpoints(self.state_dir),
                taken_at=time.time(),
            )
            dump_to(out, snapshot)


# --- Kinesis checkpoints ------------------------------------------------------------------------


def reconcile_checkpoints(state_dir: Path, in_snapshot: Any) -> None:
    """Give the runtime the checkpoints of the snapshot's moment.

    The checkpoint file on disk is newer than the snapshot (the runtime writes it after every
    batch): records it covers after the snapshot were put or processed after it, and their
    effects (table items, lake objects) were lost with it. Rewinding to the snapshot's copy has
    them re-delivered from the restored stream, which still holds those put before the snapshot;
    the ones processed before the snapshot whose checkpoint came after are re-delivered too and
    skipped by the processor's event-id claims, restored from the same snapshot. Records put
    after the snapshot are lost with it, on both sides (work after the last snapshot).
    Runs only while no runtime uses the directory (its lock), i.e. before it starts."""
    from storepulse_local.lambda_runtime.checkpoints import StateDirLock, write_json_atomic

    path = state_dir / CHECKPOINTS
    on_disk = read_checkpoints(state_dir)
    if on_disk == in_snapshot:
        return
    lock = StateDirLock(path.parent)
    try:
        lock.acquire()
    except Exception as exc:
        log.warning("checkpoints not reconciled with the snapshot: %s", exc)
        return
    try:
        for line in describe_rewind(on_disk, in_snapshot):
            log.warning("%s", line)
        if in_snapshot is None:
            path.unlink(missing_ok=True)
        else:
            write_json_atomic(path, in_snapshot)
    finally:
        lock.release()


def describe_rewind(on_disk: Any, in_snapshot: Any) -> list[str]:
    """One line per shard whose checkpoint changes: ahead of the snapshot (the usual case after
    a crash) or behind it (the file was restored or edited by hand)."""
    lines = []
    new = _positions(in_snapshot)
    for key, old in sorted(_positions(on_disk).items()):
        target = new.get(key)
        if old == target:
            continue
        how = "ahead of" if target is None or int(old or 0) > int(target or 0) else "behind"
        lines.append(
            f"checkpoint of mapping {key[0]} shard {key[1]} ({old}) is {how} the snapshot "
            f"({target}): set to the snapshot's; re-delivered records are deduplicated by "
            "event id"
        )
    return lines


def _positions(data: Any) -> dict[tuple[str, str], str | None]:
    if not isinstance(data, dict):
        return {}
    return {
        (uuid, shard): checkpoint.get("sequence_number")
        for uuid, mapping in data.get("mappings", {}).items()
        for shard, checkpoint in mapping.get("shards", {}).items()
    }
