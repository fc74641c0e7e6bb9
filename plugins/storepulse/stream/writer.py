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
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from storepulse.layout import Key, watermark_attribute
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


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] == "ConditionalCheckFailedException"


def _as_dynamo(value: Number) -> Decimal | int:
    return value if isinstance(value, int) else Decimal(value)


class ItemWriter:
    """Writes ``CounterWrite`` and ``StockWrite`` objects to one table (a boto3 ``Table``)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    # -- counters ---------------------------------------------------------------------------
    def write_counters(self, write: CounterWrite) -> WriteResult:
        first = min(c.position for c in write.contributions)
        try:
            item = self._add(write, write.total(), "before", first)
            return WriteResult(write.key, Outcome.WRITTEN, item)
        except ClientError as exc:
            if not _is_condition_failure(exc):
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

    # -- stock ------------------------------------------------------------------------------
    def write_stock(self, write: StockWrite, state: StockState | None = None) -> WriteResult:
        """Apply the changes after the watermark, by event time: the newest stock take sets the
        level, and only changes that happened at or after it count on top (a sale that a late
        POS syncs after a stock take is already in that count). ``state`` is the item as read
        before the batch; a concurrent change of it is caught by the condition and re-read."""
        state = state if state is not None else self.read_stock_state(write.key, write.shard_id)
        for _attempt in range(3):
            changes = [c for c in write.changes if c.position > state.watermark]
            if not changes:
                return WriteResult(write.key, Outcome.REPLAYED)
            try:
                item = self._update_stock(write, changes, state)
                outcome = Outcome.WRITTEN if not state.watermark else Outcome.PARTLY_REPLAYED
                return WriteResult(write.key, outcome, item)
            except ClientError as exc:
                if not _is_condition_failure(exc):
                    raise
            state = self.read_stock_state(write.key, write.shard_id)
        raise RuntimeError(
            f"stock item {write.key} keeps changing under the writer: is the "
            "event source mapping's parallelization factor above 1?"
        )

    def read_stock_state(self, key: Key, shard_id: str) -> StockState:
        item = self.table.get_item(Key=key.as_item(), ConsistentRead=True).get("Item")
        return StockState.from_item(item, shard_id)

    def _update_stock(
        self, write: StockWrite, changes: list[StockChange], state: StockState
    ) -> dict[str, Any]:
        plan = plan_stock(changes, state.counted_at)
        names = {
            "#wm": watermark_attribute(write.shard_id),
            "#on": "on_hand",
            "#counted": "counted_at",
        }
        values: dict[str, Any] = {
            ":last": changes[-1].position,
            ":store": write.store_id,
            ":sku": write.sku,
            ":delta": plan.delta,
        }
        sets = ["#wm = :last", "store_id = :store", "sku = :sku"]
        if plan.counted_at is not None and plan.counted_at != state.counted_at:
            values[":on"], values[":counted"] = plan.delta, plan.counted_at.isoformat()
            values.pop(":delta")
            update = f"SET {', '.join([*sets, '#on = :on', '#counted = :counted'])}"
        else:
            update = f"SET {', '.join(sets)} ADD #on :delta"
        conditions = []
        if state.watermark:
            conditions.append("#wm = :seen")
            values[":seen"] = state.watermark
        else:
            conditions.append("attribute_not_exists(#wm)")
        if state.counted_at is not None:
            conditions.append("#counted = :was_counted")
            values[":was_counted"] = state.counted_at.isoformat()
        else:
            conditions.append("attribute_not_exists(#counted)")
        response = self.table.update_item(
            Key=write.key.as_item(),
            UpdateExpression=update,
            ConditionExpression=" AND ".join(conditions),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        return dict(response["Attributes"])


@dataclass(frozen=True)
class StockState:
    """What the writer needs to know of a stock item before changing it."""

    watermark: str = ""
    counted_at: datetime | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any] | None, shard_id: str) -> StockState:
        if not item:
            return cls()
        counted = item.get("counted_at")
        return cls(
            str(item.get(watermark_attribute(shard_id), "")),
            datetime.fromisoformat(counted) if counted else None,
        )


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
