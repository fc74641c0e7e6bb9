"""Exactly-once writes of a batch's aggregates: one DynamoDB write per item, duplicates harmless.

Kinesis and Lambda deliver at least once: a batch can be retried whole, bisected, or resumed from
a reported failure after some of its writes landed. Every item therefore remembers, per shard, the
position of the last record applied to it (``wm_<shard>``). A write adds only the contributions of
records after that watermark, and moves it, in one conditional ``UpdateItem``:

1. optimistic: ``ADD`` everything, condition "watermark absent or before this batch's first record";
2. on ``ConditionalCheckFailed`` (a replay), read the watermark, keep the later contributions, and
   write them with the condition "watermark still what I read".

Only one invocation processes a shard at a time (parallelization factor 1), so the second step
never races with another writer of the same watermark; other shards use their own attribute.

Stock levels (``storepulse.stock_levels``) are read before the batch and written as values, one
``UpdateItem`` per level item: it moves the watermark and sets each changed level, on condition
that the watermark and each of those levels are still what was read (``write_levels``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from storepulse import stock_levels
from storepulse.aws import is_condition_failure
from storepulse.layout import Key, watermark_attribute
from storepulse.stock_levels import Level, legacy_key
from storepulse.stream.aggregate import CounterWrite, Number, StockChange, StockWrite

log = logging.getLogger(__name__)

WRITE_THREADS = 8


class Outcome:
    WRITTEN = "written"
    PARTLY_REPLAYED = "partly_replayed"  # some contributions were already applied
    REPLAYED = "replayed"  # all of them were: nothing written


@dataclass(frozen=True)
class WriteResult:
    key: Key
    outcome: str
    item: dict[str, Any] | None = None  # the item after the write (ALL_NEW), when written
    skus: tuple[str, ...] = ()  # a level item's: the SKUs whose levels the write set


def _as_dynamo(value: Number) -> Decimal | int:
    return value if isinstance(value, int) else Decimal(value)


class ItemWriter:
    """Writes ``CounterWrite`` and ``LevelsWrite`` objects to one table (a boto3 ``Table``)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    # -- counters ---------------------------------------------------------------------------
    def write_counters(self, write: CounterWrite) -> WriteResult:
        first = min(c.position for c in write.contributions)
        try:
            item = self._add(write, write.total(), "before", first)
            return WriteResult(write.key, Outcome.WRITTEN, item)
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
        seen = self._watermark(write.key, write.shard_id)
        remaining = write.total(after=seen)
        if not remaining:
            return WriteResult(write.key, Outcome.REPLAYED)
        # The watermark cannot move under us (one invocation per shard), so this one succeeds.
        item = self._add(write, remaining, "equals", seen)
        return WriteResult(write.key, Outcome.PARTLY_REPLAYED, item)

    def _add(
        self, write: CounterWrite, values: dict[str, Number], mode: str, position: str
    ) -> dict[str, Any]:
        names = {"#wm": watermark_attribute(write.shard_id)}
        expr_values: dict[str, Any] = {
            ":last": max(c.position for c in write.contributions),
            ":pos": position,
        }
        adds, sets = [], ["#wm = :last"]
        for i, (name, value) in enumerate(sorted(values.items())):
            names[f"#c{i}"], expr_values[f":c{i}"] = name, _as_dynamo(value)
            adds.append(f"#c{i} :c{i}")
        for i, (name, value) in enumerate(sorted(write.attributes.items())):
            names[f"#a{i}"], expr_values[f":a{i}"] = name, value
            sets.append(f"#a{i} = :a{i}")
        condition = "attribute_not_exists(#wm) OR #wm < :pos" if mode == "before" else "#wm = :pos"
        response = self.table.update_item(
            Key=write.key.as_item(),
            UpdateExpression=f"SET {', '.join(sets)}" + (f" ADD {', '.join(adds)}" if adds else ""),
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=expr_values,
            ReturnValues="ALL_NEW",
        )
        return dict(response["Attributes"])

    def _watermark(self, key: Key, shard_id: str) -> str:
        item = self.table.get_item(Key=key.as_item(), ConsistentRead=True).get("Item", {})
        return str(item.get(watermark_attribute(shard_id), ""))

    # -- stock levels ---------------------------------------------------------------------
    def write_levels(self, write: LevelsWrite, state: LevelsState | None = None) -> WriteResult:
        """Apply the changes after the watermarks to one level item, in one conditional write
        (``plan_levels``). ``state`` is the item as read before the batch; a concurrent change
        of a level it sets (another Kinesis shard) is caught by the condition and re-read."""
        state = state if state is not None else self.read_levels_state(write)
        for _attempt in range(3):
            levels = plan_levels(write, state)
            if not levels:
                return WriteResult(write.key, Outcome.REPLAYED)
            try:
                item = self._update_levels(write, levels, state)
            except ClientError as exc:
                if not is_condition_failure(exc):
                    raise
                state = self.read_levels_state(write)
                continue
            applied = sum(p.changes for p in levels.values())
            whole = applied == sum(len(changes) for changes in write.skus.values())
            outcome = Outcome.WRITTEN if whole else Outcome.PARTLY_REPLAYED
            return WriteResult(write.key, outcome, item, tuple(sorted(levels)))
        raise RuntimeError(
            f"level item {write.key} keeps changing under the writer: is the "
            "event source mapping's parallelization factor above 1?"
        )

    def read_levels_state(self, write: LevelsWrite) -> LevelsState:
        """The level item, and the pre-2026-12 items of the SKUs it lacks (a consistent read
        each: the path of a retry, not of every batch)."""
        item = self.table.get_item(Key=write.key.as_item(), ConsistentRead=True).get("Item")
        state = LevelsState.from_item(item, write.shard_id)
        old: dict[str, Level] = {}
        for sku in state.missing(write):
            key = legacy_key(write.store_id, sku)
            found = self.table.get_item(Key=key.as_item(), ConsistentRead=True).get("Item")
            old |= stock_levels.levels_in(found) if found else {}
        return state.with_legacy(old)

    def _update_levels(
        self, write: LevelsWrite, levels: dict[str, PlannedLevel], state: LevelsState
    ) -> dict[str, Any]:
        names = {"#wm": watermark_attribute(write.shard_id), "#lv": stock_levels.LEVELS}
        values: dict[str, Any] = {":last": max(p.last for p in levels.values())}
        sets = ["#wm = :last"]
        conditions = ["#wm = :seen" if state.watermark else "attribute_not_exists(#wm)"]
        if state.watermark:
            values[":seen"] = state.watermark
        if not state.exists:
            sets.append("#lv = :lv")
            values[":lv"] = {sku: stock_levels.encode(p.level) for sku, p in levels.items()}
            conditions.append("attribute_not_exists(#lv)")
        for i, (sku, planned) in enumerate(sorted(levels.items()) if state.exists else ()):
            names[f"#s{i}"], values[f":v{i}"] = sku, stock_levels.encode(planned.level)
            sets.append(f"#lv.#s{i} = :v{i}")
            if sku in state.stored:  # set only if unchanged since read: compared in the write
                values[f":o{i}"] = state.stored[sku]
                conditions.append(f"#lv.#s{i} = :o{i}")
            else:
                conditions.append(f"attribute_not_exists(#lv.#s{i})")
        response = self.table.update_item(
            Key=write.key.as_item(),
            UpdateExpression=f"SET {', '.join(sets)}",
            ConditionExpression=" AND ".join(conditions),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        return dict(response["Attributes"])


@dataclass
class LevelsWrite:
    """What a batch changes in one level item (``storepulse.stock_levels``), by SKU."""

    key: Key
    shard_id: str
    store_id: str
    skus: dict[str, list[StockChange]] = field(default_factory=dict)

    @property
    def first_position(self) -> str:
        return min(c.position for changes in self.skus.values() for c in changes)


def levels_writes(stock: Iterable[StockWrite], shards: Mapping[str, int]) -> list[LevelsWrite]:
    """The batch's SKU changes grouped by the level item holding each (``shards``: the
    number of level items of each store)."""
    writes: dict[Key, LevelsWrite] = {}
    for change in stock:
        key = stock_levels.levels_key(change.store_id, change.sku, shards[change.store_id])
        write = writes.setdefault(key, LevelsWrite(key, change.shard_id, change.store_id))
        write.skus.setdefault(change.sku, []).extend(change.changes)
    return list(writes.values())


@dataclass(frozen=True)
class LevelsState:
    """What the writer needs to know of a level item before changing it."""

    watermark: str = ""
    exists: bool = False  # the item has its map of levels
    stored: Mapping[str, Any] = field(default_factory=dict)  # the map as read
    legacy: Mapping[str, Level] = field(default_factory=dict)  # pre-2026-12 items' levels

    @classmethod
    def from_item(cls, item: Mapping[str, Any] | None, shard_id: str) -> LevelsState:
        if not item:
            return cls()
        stored = item.get(stock_levels.LEVELS)
        return cls(
            str(item.get(watermark_attribute(shard_id), "")),
            stored is not None,
            dict(stored or {}),
        )

    def missing(self, write: LevelsWrite) -> list[str]:
        """The SKUs of ``write`` the item lacks: a pre-2026-12 item may hold their levels."""
        return [sku for sku in sorted(write.skus) if sku not in self.stored]

    def with_legacy(self, levels: Mapping[str, Level]) -> LevelsState:
        return LevelsState(self.watermark, self.exists, self.stored, dict(levels))

    def level(self, sku: str) -> Level | None:
        if sku in self.stored:
            return stock_levels.decode(self.stored[sku])
        return self.legacy.get(sku)


@dataclass(frozen=True)
class PlannedLevel:
    level: Level
    last: str  # the position of the last change applied
    changes: int  # how many changes it applies


def plan_levels(write: LevelsWrite, state: LevelsState) -> dict[str, PlannedLevel]:
    """Each SKU's new level from its changes after the watermark: the item's, or the one a
    level moved from a pre-2026-12 item carries. SKUs with nothing new are left out."""
    planned = {}
    for sku, changes in write.skus.items():
        base = state.level(sku) or Level(0)
        seen = max(state.watermark, base.carried.get(write.shard_id, ""))
        fresh = sorted((c for c in changes if c.position > seen), key=lambda c: c.position)
        if not fresh:
            continue
        plan = plan_stock(fresh, base.counted_at)
        carried = {k: v for k, v in base.carried.items() if k != write.shard_id}
        if plan.counted_at is not None and plan.counted_at != base.counted_at:
            level = Level(plan.delta, plan.counted_at, carried)
        else:
            level = Level(base.on_hand + plan.delta, base.counted_at, carried)
        planned[sku] = PlannedLevel(level, fresh[-1].position, len(fresh))
    return planned


@dataclass(frozen=True)
class StockPlan:
    delta: int  # the new level when counted_at changes, else the amount to add
    counted_at: datetime | None


def plan_stock(changes: list[StockChange], counted_at: datetime | None) -> StockPlan:
    """The newest stock take (newer than the item's) and the changes at or after it."""
    takes = [
        c
        for c in changes
        if c.set_to is not None and (counted_at is None or c.occurred_at > counted_at)
    ]
    if takes:
        newest = max(takes, key=lambda c: (c.occurred_at, c.position))
        after = sum(
            c.add for c in changes if c.set_to is None and c.occurred_at >= newest.occurred_at
        )
        assert newest.set_to is not None
        return StockPlan(newest.set_to + after, newest.occurred_at)
    return StockPlan(
        sum(
            c.add
            for c in changes
            if c.set_to is None and (counted_at is None or c.occurred_at >= counted_at)
        ),
        counted_at,
    )


def run_parallel(
    jobs: Iterable[Any], work: Callable[[Any], WriteResult], threads: int = WRITE_THREADS
) -> tuple[list[WriteResult], list[tuple[Any, Exception]]]:
    """Run independent item writes concurrently; return the results and the jobs AWS refused
    (throttling after retries, ...). Any other exception is a bug and propagates."""
    results: list[WriteResult] = []
    failures: list[tuple[Any, Exception]] = []
    jobs = list(jobs)
    if not jobs:
        return results, failures
    with ThreadPoolExecutor(max_workers=min(threads, len(jobs))) as pool:
        futures = [(job, pool.submit(work, job)) for job in jobs]
        for job, future in futures:
            try:
                results.append(future.result())
            except (ClientError, BotoCoreError) as exc:  # AWS said no: the batch decides
                failures.append((job, exc))
    return results, failures
