"""Which web sessions a shard has opened: one small item per batch, kept in memory per container.

A session counts once, on its first counted web event. Its events share a partition key (the
session id), hence a shard, in order: whether a session is new is a question about that shard's
past only. So a batch that opens sessions writes one item (``SESSIONS#<shard>``, sk the position
of its first opening) whose map ``opened`` gives each session it opened the opening record's
position (unpadded), instead of one marker item per session: DynamoDB bills a write by the
item's size, and a batch's few openings fit in one unit. The container keeps the shard's
openings of the last ``SESSION_WINDOW`` in memory: loaded once (a Query, newest first), then
brought up to date before every batch (a Query of the items after the newest it knows: those
another container, or an earlier attempt of this batch, wrote).

Exactly-once: the opening record's position is kept, so a retry of that record opens the session
again (its counters are deduplicated by their watermarks) and no other record does. The item is
written with the claims, before any counter. It is never rewritten with other content: its key
is the position of its first opening, which a later write reuses only if this one never landed
(that session would be known otherwise). A resharded stream starts its child shards with an
empty memory: a session that spans the split opens again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Key as KeyCondition

from storepulse.layout import SESSION_WINDOW, expires_at, opened_sessions_key, padded_sequence

MAX_SESSIONS_PER_ITEM = 500  # ~100 KB at most (ids of 128 characters), under the 400 KB limit
PRUNE_EVERY = timedelta(minutes=5)  # of arrival time: forget what left the window


@dataclass
class _Shard:
    opened: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # -> position, arrival
    newest: str = ""  # sk of the newest item known
    pruned: datetime | None = None


class SessionMemory:
    """The sessions each shard opened, as this container knows them (``table``: the facts
    table, a boto3 ``Table``)."""

    def __init__(self, table: Any, window: timedelta = SESSION_WINDOW) -> None:
        self.table, self.window = table, window
        self._shards: dict[str, _Shard] = {}

    def openings(self, shard_id: str, arrived_at: datetime) -> dict[str, str]:
        """Session id -> ``<shard>:<position>`` of the record that opened it, for the sessions
        the shard opened within the window before ``arrived_at`` (the batch's arrival)."""
        since = arrived_at - self.window
        shard = self._shards.get(shard_id)
        if shard is None:
            shard = self._shards[shard_id] = _Shard()
            self._learn(shard, self._query(shard_id, newest_first=True, since=since))
        else:
            self._learn(shard, self._query(shard_id, after=shard.newest))
        self._prune(shard, since)
        return {
            session_id: f"{shard_id}:{position}"
            for session_id, (position, arrived) in shard.opened.items()
            if arrived >= since
        }

    def records(
        self, shard_id: str, opened: Mapping[str, str], arrived_at: datetime
    ) -> list[dict[str, Any]]:
        """The items that remember ``opened`` (session id -> padded position), by position."""
        ordered = sorted(opened.items(), key=lambda kv: kv[1])
        items = []
        for start in range(0, len(ordered), MAX_SESSIONS_PER_ITEM):
            chunk = ordered[start : start + MAX_SESSIONS_PER_ITEM]
            items.append(
                {
                    **opened_sessions_key(shard_id, chunk[0][1]).as_item(),
                    "type": "sessions",
                    "arrived_at": arrived_at.isoformat(),
                    "expires_at": expires_at(arrived_at, self.window + timedelta(days=1)),
                    "opened": {s: position.lstrip("0") or "0" for s, position in chunk},
                }
            )
        return items

    def learn(self, shard_id: str, items: Iterable[dict[str, Any]]) -> None:
        """Take in items this container wrote (after the write landed)."""
        self._learn(self._shards.setdefault(shard_id, _Shard()), items)

    @staticmethod
    def _learn(shard: _Shard, items: Iterable[dict[str, Any]]) -> None:
        for item in items:
            arrived = datetime.fromisoformat(str(item["arrived_at"]))
            for session_id, position in (item.get("opened") or {}).items():
                shard.opened[session_id] = (padded_sequence(str(position)), arrived)
            shard.newest = max(shard.newest, str(item["sk"]))

    def _prune(self, shard: _Shard, since: datetime) -> None:
        if shard.pruned is not None and since - shard.pruned < PRUNE_EVERY:
            return
        shard.opened = {s: v for s, v in shard.opened.items() if v[1] >= since}
        shard.pruned = since

    def _query(
        self,
        shard_id: str,
        *,
        after: str = "",
        newest_first: bool = False,
        since: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """The shard's items after ``after``, or newest first until one arrived before
        ``since``; strongly consistent (another container may have just written one)."""
        condition = KeyCondition("pk").eq(opened_sessions_key(shard_id, "").pk)
        if after:
            condition &= KeyCondition("sk").gt(after)
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": condition,
            "ConsistentRead": True,
            "ScanIndexForward": not newest_first,
        }
        items: list[dict[str, Any]] = []
        while True:
            page = self.table.query(**kwargs)
            items += page["Items"]
            old_enough = (
                since is not None
                and bool(page["Items"])
                and datetime.fromisoformat(str(page["Items"][-1]["arrived_at"])) < since
            )
            if "LastEvaluatedKey" not in page or old_enough:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
