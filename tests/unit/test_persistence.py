"""Snapshots of the embedded AWS: atomic writes, the version tag, what counts as a change."""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from storepulse_local import persistence
from storepulse_local.persistence import (
    RequestGate,
    Snapshot,
    SnapshotError,
    describe_rewind,
    dump,
    is_mutation,
    load,
    reconcile_checkpoints,
    remove_temp_files,
    write_atomic,
)


def test_write_atomic_replaces_the_file_and_syncs_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "snapshot.pickle"
    target.write_bytes(b"old")
    synced: list[str] = []
    monkeypatch.setattr(persistence, "fsync_dir", lambda d: synced.append(str(d)))

    write_atomic(target, [b"new ", b"state"])

    assert target.read_bytes() == b"new state"
    assert synced == [str(tmp_path)]  # the rename itself is made durable
    assert list(tmp_path.iterdir()) == [target]


def test_a_crash_while_writing_leaves_the_previous_snapshot(tmp_path: Path) -> None:
    target = tmp_path / "snapshot.pickle"
    target.write_bytes(b"previous")

    def chunks() -> Iterator[bytes]:
        yield b"half a"
        raise KeyboardInterrupt  # stands for the process dying mid-write

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, chunks())

    assert target.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [target]


def test_a_failed_rename_leaves_the_previous_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "snapshot.pickle"
    target.write_bytes(b"previous")

    def no_rename(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, [b"new"])

    assert target.read_bytes() == b"previous"


def test_temp_files_of_a_killed_writer_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "snapshot.pickle"
    (tmp_path / ".snapshot.pickle.abc.tmp").write_bytes(b"torn")
    (tmp_path / "other.tmp").write_bytes(b"not ours")

    assert remove_temp_files(target) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.tmp"]


def _snapshot() -> Snapshot:
    return Snapshot(moto={}, quicksight={"a": 1}, checkpoints=None, taken_at=1.0)


def test_a_snapshot_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "s.pickle"
    path.write_bytes(dump(_snapshot()))

    assert load(path, tmp_path) == _snapshot()
    assert load(tmp_path / "none.pickle", tmp_path) is None


@pytest.mark.parametrize("key", ["moto", "format", "python"])
def test_a_snapshot_of_another_version_is_refused_with_the_way_out(
    tmp_path: Path, key: str
) -> None:
    path = tmp_path / "s.pickle"
    header, _, body = dump(_snapshot()).partition(b"\n")
    tag = json.loads(header) | {key: "0.0"}
    path.write_bytes(json.dumps(tag).encode() + b"\n" + body)

    with pytest.raises(SnapshotError, match="cannot read it") as refused:
        load(path, tmp_path)

    assert "make reset" in str(refused.value)
    assert str(tmp_path) in str(refused.value)


def test_a_damaged_snapshot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.pickle"
    path.write_bytes(dump(_snapshot())[:-10])

    with pytest.raises(SnapshotError, match="damaged"):
        load(path, tmp_path)


def test_locks_events_and_lambda_defaultdicts_pickle_as_new_ones() -> None:
    held = threading.RLock()
    held.acquire()
    state = {"lock": held, "event": threading.Event(), "aliases": defaultdict(lambda: {})}
    state["aliases"]["fn"]["a"] = 1
    state["event"].set()
    buffer = io.BytesIO()
    persistence._Pickler(buffer).dump(state)

    back = pickle.loads(buffer.getvalue())

    assert back["lock"].acquire(blocking=False)  # a new, released lock
    assert back["event"].is_set()
    assert back["aliases"]["other"] == {} and back["aliases"]["fn"] == {"a": 1}


@pytest.mark.parametrize(
    ("environ", "mutating"),
    [
        ({"REQUEST_METHOD": "GET"}, False),
        ({"REQUEST_METHOD": "PUT"}, True),
        ({"REQUEST_METHOD": "POST", "HTTP_X_AMZ_TARGET": "Kinesis_20131202.GetRecords"}, False),
        ({"REQUEST_METHOD": "POST", "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.Query"}, False),
        ({"REQUEST_METHOD": "POST", "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.PutItem"}, True),
        ({"REQUEST_METHOD": "POST", "HTTP_X_AMZ_TARGET": "AmazonSQS.ReceiveMessage"}, True),
        ({"REQUEST_METHOD": "POST"}, True),  # unknown: counted, one snapshot too many at worst
    ],
)
def test_what_counts_as_a_change(environ: dict, mutating: bool) -> None:
    assert is_mutation(environ) is mutating


def test_a_query_protocol_action_is_read_and_the_body_put_back() -> None:
    body = b"Action=DescribeStacks&Version=2010-05-15"
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": "application/x-www-form-urlencoded; charset=utf-8",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }

    assert is_mutation(environ) is False
    assert environ["wsgi.input"].read() == body


def _checkpoints(sequence: str) -> dict:
    shards = {"shardId-0": {"sequence_number": sequence, "finished": False}}
    return {"version": 1, "mappings": {"m-1": {"shards": shards}}}


def test_a_checkpoint_ahead_of_the_snapshot_is_set_back_to_the_snapshots(tmp_path: Path) -> None:
    path = tmp_path / "lambda-runtime" / "checkpoints.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_checkpoints("900")))

    reconcile_checkpoints(tmp_path, _checkpoints("100"))

    assert json.loads(path.read_text()) == _checkpoints("100")
    (line,) = describe_rewind(_checkpoints("900"), _checkpoints("100"))
    assert "(900) is ahead of the snapshot (100)" in line
    (line,) = describe_rewind(_checkpoints("50"), _checkpoints("100"))
    assert "behind" in line


def test_no_checkpoint_in_the_snapshot_removes_the_newer_file(tmp_path: Path) -> None:
    path = tmp_path / "lambda-runtime" / "checkpoints.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_checkpoints("900")))

    reconcile_checkpoints(tmp_path, None)

    assert not path.exists()


def test_quicksight_state_round_trips_and_a_running_ingestion_is_failed() -> None:
    from storepulse_local.quicksight import Account, Ingestion, LocalQuickSight

    before = LocalQuickSight()
    account = before.account("123456789012")
    account.data_sets["ds"] = {"Name": "orders"}
    account.running["ds"] = threading.Lock()
    done = Ingestion("ds", "i-1", "arn:i-1", "FULL_REFRESH", "MANUAL", status="COMPLETED")
    running = Ingestion("ds", "i-2", "arn:i-2", "FULL_REFRESH", "MANUAL", status="RUNNING")
    account.ingestions["ds"] = {"i-1": done, "i-2": running}
    snapshot = Snapshot(moto={}, quicksight=before.state(), checkpoints=None, taken_at=1.0)

    after = LocalQuickSight()
    after.restore_state(pickle.loads(dump(snapshot).partition(b"\n")[2]).quicksight)

    restored: Account = after.account("123456789012")
    assert restored.data_sets == {"ds": {"Name": "orders"}}
    statuses = {i.ingestion_id: i.status for i in restored.ingestions["ds"].values()}
    assert statuses == {"i-1": "COMPLETED", "i-2": "FAILED"}  # its worker did not survive


def test_threads_and_standard_streams_pickle_as_references_or_idle_threads() -> None:
    worker = threading.Thread(target=print, name="worker")
    buffer = io.BytesIO()
    persistence._Pickler(buffer).dump({"thread": worker, "err": sys.stderr})

    back = pickle.loads(buffer.getvalue())

    assert back["err"] is sys.stderr
    assert back["thread"].name == "worker" and not back["thread"].is_alive()


def test_a_snapshot_that_cannot_be_pickled_says_where() -> None:
    class Holder:
        def __init__(self) -> None:
            self.handle = Path(os.devnull).open("rb")  # noqa: SIM115

    holder = Holder()
    try:
        with pytest.raises(SnapshotError, match=r"snapshot.moto\['svc'\].handle"):
            dump(Snapshot(moto={"svc": holder}, quicksight={}, checkpoints=None, taken_at=0))
    finally:
        holder.handle.close()


def _gate_with_a_request_in_flight(environ: dict) -> tuple[RequestGate, threading.Event]:
    release, started = threading.Event(), threading.Event()

    def app(environ: dict, start_response: object) -> list[bytes]:
        started.set()
        release.wait(5)
        return [b"done"]

    gate = RequestGate(app)
    threading.Thread(target=gate, args=(environ, None), daemon=True).start()
    assert started.wait(5)
    return gate, release


def test_a_snapshot_waits_for_a_running_request_but_not_for_a_long_poll() -> None:
    write = {"REQUEST_METHOD": "POST", "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.PutItem"}
    gate, release = _gate_with_a_request_in_flight(write)
    with gate.quiet(timeout=0.2) as idle:
        assert not idle
    release.set()
    with gate.quiet(timeout=5) as idle:
        assert idle

    poll = {"REQUEST_METHOD": "POST", "HTTP_X_AMZ_TARGET": "AmazonSQS.ReceiveMessage"}
    gate, release = _gate_with_a_request_in_flight(poll)
    with gate.quiet(timeout=0.2) as idle:
        assert idle
    release.set()
    assert gate.mutations == 1  # a receive changes the queue: counted


# --- a writer killed mid-snapshot ------------------------------------------------------------


def _keeper(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> persistence.Persistence:
    """A Persistence whose state is the QuickSight part alone (moto's backends are left out:
    the crash, not the pickling of moto, is under test)."""
    from storepulse_local.quicksight import LocalQuickSight

    monkeypatch.setattr(persistence, "moto_state", dict)
    keeper = persistence.Persistence(state_dir, LocalQuickSight())
    keeper.wrap(lambda environ, start_response: [b""])
    return keeper


def _killed_before_the_rename(self: Path, target: Path) -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9 between the temp file and the rename


def test_a_writer_killed_before_the_rename_leaves_the_previous_snapshot_for_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real periodic path: the forked child pickles and writes its temp file, then dies
    (kill -9) before the rename. The previous snapshot stays whole, and the next start restores
    it and deletes the orphan."""
    keeper = _keeper(tmp_path, monkeypatch)
    keeper.quicksight.account("123456789012").data_sets["ds"] = {"Name": "before"}
    assert keeper.snapshot(quiet_timeout=1, force=True)
    previous = keeper.path.read_bytes()

    keeper.quicksight.account("123456789012").data_sets["ds"] = {"Name": "after"}
    monkeypatch.setattr(Path, "replace", _killed_before_the_rename)  # in the child it forks
    with pytest.raises(SnapshotError, match="failed with -9"):
        keeper.snapshot(quiet_timeout=1, force=True)
    monkeypatch.undo()

    assert keeper.path.read_bytes() == previous
    (orphan,) = [p for p in keeper.path.parent.iterdir() if p != keeper.path]
    assert orphan.name.endswith(".tmp") and orphan.stat().st_size > 0  # the torn new one

    restarted = _keeper(tmp_path, monkeypatch)
    assert restarted.restore() is not None
    data_sets = restarted.quicksight.account("123456789012").data_sets
    assert data_sets == {"ds": {"Name": "before"}}
    assert list(keeper.path.parent.iterdir()) == [keeper.path]


@pytest.mark.parametrize("garbage", [b"", b"\x80\x05garbage", b'{"format": 1}\n\x80'])
def test_a_torn_temp_file_never_replaces_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, garbage: bytes
) -> None:
    """A temp file with any content (empty, garbage, a header and half a pickle) is never read:
    the start restores the snapshot and deletes it."""
    keeper = _keeper(tmp_path, monkeypatch)
    keeper.quicksight.account("123456789012").data_sets["ds"] = {"Name": "kept"}
    assert keeper.snapshot(quiet_timeout=1, force=True, fork=False)
    orphan = keeper.path.parent / f".{keeper.path.name}.x1y2.tmp"
    orphan.write_bytes(garbage)

    restarted = _keeper(tmp_path, monkeypatch)
    assert restarted.restore() is not None

    assert restarted.quicksight.account("123456789012").data_sets == {"ds": {"Name": "kept"}}
    assert not orphan.exists()


def test_an_items_attributes_unpickle_without_their_per_key_size_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """moto re-sums an item's whole size on every key set: unpickled key by key, restoring a
    table was quadratic in its items' sizes (70% of a restore). Rebuilt from a dict instead."""
    from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict

    attributes = LimitedSizeDict({f"k{i}": DynamoType({"N": str(i)}) for i in range(50)})
    buffer = io.BytesIO()
    persistence._Pickler(buffer).dump({"attrs": attributes})

    def per_key(self: LimitedSizeDict, key: str, value: object) -> None:
        raise AssertionError("the size check ran")

    monkeypatch.setattr(LimitedSizeDict, "__setitem__", per_key)
    back = pickle.loads(buffer.getvalue())["attrs"]

    assert type(back) is LimitedSizeDict
    assert back == attributes


def test_pickling_a_large_s3_object_leaves_its_files_offset_to_the_parent(
    tmp_path: Path,
) -> None:
    """moto spools an object over its buffer size to a temporary file, whose offset a forked
    snapshot writer shares with the parent: pickling must not move it (moto's own pickling
    seeks and reads, and a multipart upload completed meanwhile in the parent assembled a
    corrupt object). The pickled object restores with its content."""
    from moto.s3.models import FakeKey

    content = os.urandom(64 * 1024)
    key = FakeKey("big.zip", content, "123456789012", "us-east-1", max_buffer_size=1024)
    assert key._value_buffer._rolled  # spooled to a real file, as moto does past ~5 MiB
    small = FakeKey("small.txt", b"in memory", "123456789012", "us-east-1")
    # Once here first: the child then imports nothing (a fork copies no other thread, and an
    # import lock one of them held would never be released).
    persistence._Pickler(io.BytesIO()).dump([key, small])
    key._value_buffer.seek(1000)  # where a request of the parent is reading

    child = os.fork()
    if child == 0:  # the snapshot writer
        with (tmp_path / "snapshot").open("wb") as out:
            persistence._Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump([key, small])
        os._exit(0)
    _, status = os.waitpid(child, 0)

    assert status == 0
    assert key._value_buffer.tell() == 1000
    big, little = pickle.loads((tmp_path / "snapshot").read_bytes())
    assert (big.value, big.name, little.value) == (content, "big.zip", b"in memory")
    assert big.lock is not key.lock


def test_a_snapshot_of_the_previous_format_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "s.pickle"
    header, _, body = dump(_snapshot()).partition(b"\n")
    path.write_bytes(json.dumps(json.loads(header) | {"format": 1}).encode() + b"\n" + body)

    assert load(path, tmp_path) == _snapshot()


def test_attribute_values_restore_compactly_with_shared_names() -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    items = [
        Item(
            DynamoType({"S": f"k{n}"}), None, {"pk": {"S": f"k{n}"}, "m": {"M": {"x": {"N": "1"}}}}
        )
        for n in range(2)
    ]
    buffer = io.BytesIO()
    persistence._Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(items)
    restored = pickle.loads(buffer.getvalue())

    assert restored == items
    assert [item.to_json() for item in restored] == [item.to_json() for item in items]
    first, second = (list(item.attrs) for item in restored)
    assert first[1] is second[1]  # one "m" for every item


def test_the_first_snapshot_after_a_restore_waits_as_after_one_as_costly_as_the_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restored state is on disk already: its first periodic snapshot is put off as the loop
    puts one off after a snapshot of that state (about 4 times the restore's CPU, and the loop
    waits 4 times that), not taken 2 s after the first change while the platform starts. A
    start with nothing to restore, or a small state, snapshots after the usual interval."""
    fresh = _keeper(tmp_path, monkeypatch)
    assert fresh.restore() is None
    assert fresh.first_wait == persistence.SNAPSHOT_INTERVAL
    assert fresh.snapshot(quiet_timeout=1, force=True, fork=False)

    cpu = iter([100.0, 110.0])  # the restore took 10 s of CPU, as a week of the demo does
    monkeypatch.setattr(persistence.time, "process_time", lambda: next(cpu))
    restored = _keeper(tmp_path, monkeypatch)
    assert restored.restore() is not None
    assert restored.first_wait == 4 * persistence.SNAPSHOT_PER_RESTORE_CPU * 10.0  # 160 s

    assert persistence.first_wait_after_restore(2.0, 0.1) == 2.0  # the demo's own state


def test_the_final_snapshot_is_given_time_in_proportion_to_the_state(tmp_path: Path) -> None:
    """A stop waits for the last snapshot as long as the state on disk may take to write on a
    loaded machine (a week of the demo: 442 MiB, up to 174 s), never less than the floor."""
    assert persistence.final_snapshot_grace(tmp_path, 40.0) == 40.0  # nothing restored yet
    snapshot = tmp_path / "aws" / persistence.SNAPSHOT_FILE
    snapshot.parent.mkdir()
    with snapshot.open("wb") as out:
        out.truncate(442 * 2**20)  # sparse: the size is what counts

    grace = persistence.final_snapshot_grace(tmp_path, 40.0)

    assert grace == persistence.FINAL_QUIET_TIMEOUT + 221.0 and grace > 174
