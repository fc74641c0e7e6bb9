"""Checkpoints per mapping and shard, the state directory's lock, and where shards start."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from storepulse_local.lambda_runtime.common import LambdaRuntimeError

CHECKPOINT_FILE: Final = "checkpoints.json"


@dataclass(frozen=True)
class ShardCheckpoint:
    sequence_number: str | None = None  # last record processed (or discarded)
    finished: bool = False  # closed shard, fully processed: its children may start


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def write_json_atomic(path: Path, data: Any) -> None:
    """Readers (and a crash) see the old file or the new one, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
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


def remove_orphaned_temp_files(path: Path) -> list[Path]:
    """Delete the temp files ``write_json_atomic`` left for ``path`` when killed mid-write.
    Only while no runtime uses the directory: a live writer's temp file would go too."""
    orphans = sorted(path.parent.glob(f"{_temp_prefix(path)}*.tmp"))
    for orphan in orphans:
        orphan.unlink(missing_ok=True)
    return orphans


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
