"""The inventory codec (``storepulse.stock_levels``) and the level writer's plan: what a store's
items hold, which item a SKU lives in, and which changes a write applies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from storepulse import stock_levels
from storepulse.stock_levels import Level
from storepulse.stream.aggregate import StockChange
from storepulse.stream.writer import LevelsState, LevelsWrite, plan_levels

T = datetime(2026, 12, 7, 9, 30, 15, 123456, tzinfo=UTC)
SHARD = "shardId-000000000000"


def test_a_level_round_trips_exactly_through_its_stored_form() -> None:
    for level in (
        Level(-3),
        Level(12, T),
        Level(0, None, {SHARD: "0" * 60 + "42"}),
        Level(5, T, {"shardId-1": "9"}),
    ):
        stored = stock_levels.encode(level)
        # as DynamoDB gives it back: numbers as Decimal
        read = stored if isinstance(stored, int) else _as_read(stored)
        assert stock_levels.decode(read) == level
    assert stock_levels.encode(Level(4)) == 4  # never counted: a bare number


def _as_read(value: object) -> object:
    if isinstance(value, list):
        return [_as_read(v) for v in value]
    return Decimal(value) if isinstance(value, int) else value


def test_a_sku_always_lives_in_the_same_item_and_items_stay_near_a_kb() -> None:
    assert stock_levels.shard_of("tea-100g", 7) == stock_levels.shard_of("tea-100g", 7)
    forty = [f"sku-{n:04d}" for n in range(40)]
    assert stock_levels.shard_count(forty) == 2  # ~26 bytes a level: 1 KB with the keys
    four_hundred = [f"sku-{n:04d}" for n in range(400)]
    shards = stock_levels.shard_count(four_hundred)
    counts = [0] * shards
    for sku in four_hundred:
        counts[stock_levels.shard_of(sku, shards)] += 1
    # the fullest item of a 400-product catalogue stays about a KB (keys, a watermark)
    assert shards == 18 and max(counts) * 26 + 150 < 1100


def test_a_store_reads_its_level_items_and_old_items_only_for_skus_they_lack() -> None:
    items = [
        *stock_levels.store_items("s-1", {"tea": Level(3, T), "mug": Level(1)}),
        {"pk": "S#s-1", "sk": "tea", "on_hand": Decimal(99)},  # before 2026-12: stale
        {"pk": "S#s-1", "sk": "jam", "on_hand": Decimal(4), "counted_at": T.isoformat()},
    ]
    assert stock_levels.store_levels(items) == {
        "tea": Level(3, T),
        "mug": Level(1),
        "jam": Level(4, T),
    }


def _write(*changes: tuple[str, StockChange]) -> LevelsWrite:
    write = LevelsWrite(stock_levels.levels_key("s-1", "tea", 1), SHARD, "s-1")
    for sku, change in changes:
        write.skus.setdefault(sku, []).append(change)
    return write


def test_a_late_older_stock_take_never_overwrites_a_newer_level() -> None:
    state = LevelsState("p05", True, {"tea": stock_levels.encode(Level(10, T))})
    late = _write(
        ("tea", StockChange("p06", T - timedelta(hours=1), set_to=50)),
        ("tea", StockChange("p07", T - timedelta(minutes=5), add=-2)),  # in the count already
        ("tea", StockChange("p08", T + timedelta(minutes=5), add=-1)),
    )
    (planned,) = plan_levels(late, state).values()
    assert (planned.level, planned.last) == (Level(9, T), "p08")


def test_changes_at_or_before_a_watermark_are_not_applied_again() -> None:
    carried = stock_levels.encode(Level(20, None, {SHARD: "p09"}))
    state = LevelsState("p03", True, {"tea": carried, "mug": 7})
    write = _write(
        ("tea", StockChange("p08", T, add=5)),  # applied to tea's item before 2026-12
        ("tea", StockChange("p10", T, add=-2)),
        ("mug", StockChange("p02", T, add=-1)),  # before the level item's watermark
    )
    assert {sku: p.level for sku, p in plan_levels(write, state).items()} == {"tea": Level(18)}
