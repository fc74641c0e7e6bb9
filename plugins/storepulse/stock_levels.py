"""The inventory table's model: every reader and writer of stock levels goes through here.

DynamoDB bills a write by the whole item (a unit per started KB), so one item per SKU cost a
unit for every level a batch changed. A store's levels are packed instead into a fixed number
of items of about 1 KB each, and a batch writes each item it touches once:

- ``S#<store_id>`` / ``#SHARDS``: ``shards``, how many level items the store has (N). Fixed by
  the first write of the store's levels, from the catalogue's size then (``shard_count``), and
  never changed: a SKU's item is a stable hash of the SKU mod N (a catalogue that grows a lot
  makes the items bigger, never wrong).
- ``S#<store_id>`` / ``#LV#<i>``: map ``lv`` of SKU -> level, and the writer's watermarks
  (``wm_<kinesis shard>``, ``storepulse.stream.writer``). A level is ``on_hand`` (a number)
  while the SKU was never counted, else ``[on_hand, counted_at]`` (the last stock take, epoch
  microseconds UTC, so a late, older change is judged against it). A level moved from an item
  of a release before 2026-12 also carries that item's watermarks (``[on_hand, counted_at or
  null, {shard: position}]``) until the stream next writes it, so a record applied before the
  upgrade is never applied twice.
- ``S#<store_id>`` / ``<sku>``: a level of a release before 2026-12 (``on_hand``,
  ``counted_at``). ``migrate`` moves them into the level items and deletes them (the deploy
  runs it); until then the writer reads one when its SKU is not in its level item yet, and
  ``store_levels`` reads it when no level item holds its SKU.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from storepulse.aws import is_condition_failure, query_items, scan_items
from storepulse.layout import Key
from storepulse.stream.batch_io import batch_get

log = logging.getLogger(__name__)

LEVELS = "lv"  # the map attribute of a level item
SHARDS = "shards"
SHARDS_SK = "#SHARDS"
LEVELS_SK = "#LV#"
# A level item's budget for its levels, on average: the rest of a KB holds its keys, the
# watermarks of a few Kinesis shards (~80 bytes each) and the hash's imbalance (the fullest of
# 18 items of a 400-product catalogue holds ~1.6x the mean: ~35 levels, ~1 KB).
ITEM_TARGET_BYTES = 600
# A level's bytes beside its SKU's name: [on_hand, epoch microseconds] and the map's overhead.
LEVEL_BYTES = 18
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Item = Mapping[str, Any]


@dataclass(frozen=True)
class Level:
    """One SKU's stock in one store."""

    on_hand: int
    counted_at: datetime | None = None  # the newest stock take applied (event time)
    # Watermarks of the pre-2026-12 item this level was moved from (until the stream writes it).
    carried: Mapping[str, str] = field(default_factory=dict)


# -- keys --------------------------------------------------------------------------------------


def store_pk(store_id: str) -> str:
    return f"S#{store_id}"


def shards_key(store_id: str) -> Key:
    return Key(store_pk(store_id), SHARDS_SK)


def shard_count(skus: Iterable[str]) -> int:
    """Level items for a catalogue of ``skus``: each stays under ~1 KB."""
    size = sum(len(sku.encode()) + LEVEL_BYTES for sku in skus)
    return max(1, math.ceil(size / ITEM_TARGET_BYTES))


def shard_of(sku: str, shards: int) -> int:
    # blake2b, not hash(): the same in every process and release.
    digest = hashlib.blake2b(sku.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def levels_key(store_id: str, sku: str, shards: int) -> Key:
    """The item holding ``sku``'s level in a store of ``shards`` level items."""
    return Key(store_pk(store_id), f"{LEVELS_SK}{shard_of(sku, shards)}")


def legacy_key(store_id: str, sku: str) -> Key:
    """Where a release before 2026-12 kept one level."""
    return Key(store_pk(store_id), sku)


# -- encoding ----------------------------------------------------------------------------------


def _epoch_us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def encode(level: Level) -> int | list[Any]:
    """A level as stored in a level item's map."""
    counted = None if level.counted_at is None else _epoch_us(level.counted_at)
    if level.carried:
        return [level.on_hand, counted, dict(level.carried)]
    return level.on_hand if counted is None else [level.on_hand, counted]


def decode(value: Any) -> Level:
    if not isinstance(value, list):
        return Level(int(value))
    counted = None if value[1] is None else _EPOCH + timedelta(microseconds=int(value[1]))
    carried = {str(k): str(v) for k, v in value[2].items()} if len(value) > 2 else {}
    return Level(int(value[0]), counted, carried)


def _legacy_level(item: Item) -> Level:
    counted = item.get("counted_at")
    carried = {k.removeprefix("wm_"): str(v) for k, v in item.items() if str(k).startswith("wm_")}
    return Level(
        int(item.get("on_hand", 0)),
        datetime.fromisoformat(counted).astimezone(UTC) if counted else None,
        carried,
    )


# -- reading -----------------------------------------------------------------------------------


def _store_item(item: Item) -> bool:
    pk = str(item.get("pk", ""))
    return pk.startswith("S#") and pk.count("#") == 1


def is_levels_item(item: Item) -> bool:
    """A level item (what the nightly ``inventory_snapshot`` reads)."""
    return _store_item(item) and isinstance(item.get(LEVELS), Mapping)


def is_legacy_item(item: Item) -> bool:
    sk = str(item.get("sk", ""))
    return _store_item(item) and bool(sk) and not sk.startswith("#") and LEVELS not in item


def store_of(item: Item) -> str:
    return str(item["pk"]).removeprefix("S#")


def levels_in(item: Item) -> dict[str, Level]:
    """The levels an item holds, by SKU: a level item's, or a pre-2026-12 item's one."""
    if is_levels_item(item):
        return {str(sku): decode(value) for sku, value in item[LEVELS].items()}
    if is_legacy_item(item):
        return {str(item["sk"]): _legacy_level(item)}
    return {}


def store_levels(items: Iterable[Item]) -> dict[str, Level]:
    """A store's levels by SKU from its items (a Query of its ``pk``): the level items', and a
    pre-2026-12 item's where no level item holds its SKU (not migrated yet)."""
    current: dict[str, Level] = {}
    legacy: dict[str, Level] = {}
    for item in items:
        (legacy if is_legacy_item(item) else current).update(levels_in(item))
    return legacy | current


def read_store_levels(table: Any, store_id: str) -> dict[str, Level]:
    """A store's levels by SKU (a consistent Query of its items; ``table``: a boto3 Table)."""
    items = query_items(
        table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": store_pk(store_id)},
        ConsistentRead=True,
    )
    return store_levels(items)


def level_keys(item: Item) -> list[Key]:
    """The per-SKU keys of the levels an item holds (the incremental export's seed is keyed
    so: a changed level item replaces the seed's rows of its SKUs)."""
    return [legacy_key(store_of(item), sku) for sku in levels_in(item)] if _store_item(item) else []


def snapshot_item(store_id: str, sku: str, level: Level) -> dict[str, Any]:
    """A level item holding one level, keyed by its SKU (the incremental export's seed)."""
    return {**legacy_key(store_id, sku).as_item(), LEVELS: {sku: encode(level)}}


def store_items(store_id: str, levels: Mapping[str, Level]) -> list[dict[str, Any]]:
    """A store's inventory items holding ``levels`` (its whole catalogue): what a benchmark
    or a test seeds a table with, as the stream would have written them."""
    shards = shard_count(levels)
    items: dict[Key, dict[str, Any]] = {}
    for sku, level in sorted(levels.items()):
        key = levels_key(store_id, sku, shards)
        items.setdefault(key, {**key.as_item(), LEVELS: {}})[LEVELS][sku] = encode(level)
    return [{**shards_key(store_id).as_item(), SHARDS: shards}, *items.values()]


# -- the store's number of level items ---------------------------------------------------------


class StoreShards:
    """Each store's number of level items (cached: it never changes once fixed)."""

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self.dynamodb, self.table_name = dynamodb, table_name
        self._known: dict[str, int] = {}

    def of(self, store_ids: Iterable[str], skus: Iterable[str]) -> dict[str, int]:
        """``store_ids``' counts; a store without one gets it fixed for a catalogue of
        ``skus`` (the first writer wins: a concurrent one reads the winner's)."""
        wanted = sorted(set(store_ids))
        missing = [s for s in wanted if s not in self._known]
        if missing:
            found = batch_get(self.dynamodb, self.table_name, [shards_key(s) for s in missing])
            count = None
            for store_id in missing:
                item = found.get(shards_key(store_id))
                if item is None:
                    count = count or shard_count(skus)
                    item = self._fix(store_id, count)
                self._known[store_id] = int(item[SHARDS])
        return {s: self._known[s] for s in wanted}

    def _fix(self, store_id: str, count: int) -> Item:
        response = self.dynamodb.Table(self.table_name).update_item(
            Key=shards_key(store_id).as_item(),
            UpdateExpression="SET #n = if_not_exists(#n, :n)",
            ExpressionAttributeNames={"#n": SHARDS},
            ExpressionAttributeValues={":n": count},
            ReturnValues="ALL_NEW",
        )
        log.info("store %s keeps its stock levels in %d item(s)", store_id, count)
        return dict(response["Attributes"])


# -- the one-off move of pre-2026-12 items ---------------------------------------------------


def migrate(dynamodb: Any, table_name: str, skus: Iterable[str]) -> int:
    """Move every pre-2026-12 level into its store's level item and delete the old item
    (idempotent; the deploy runs it after the stack update). A level the stream already keeps
    in a level item is newer: the old item is then only deleted. Returns the items moved."""
    table = dynamodb.Table(table_name)
    by_store: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in scan_items(table):
        if is_legacy_item(item):
            by_store[store_of(item)].append(item)
    shards = StoreShards(dynamodb, table_name).of(by_store, list(skus))
    for store_id, items in sorted(by_store.items()):
        by_key: dict[Key, dict[str, Level]] = defaultdict(dict)
        for item in items:
            by_key[levels_key(store_id, str(item["sk"]), shards[store_id])].update(levels_in(item))
        for key, levels in by_key.items():
            _move(table, key, levels)
        with table.batch_writer() as writer:
            for item in items:
                writer.delete_item(Key={"pk": item["pk"], "sk": item["sk"]})
    return sum(len(items) for items in by_store.values())


def _move(table: Any, key: Key, levels: dict[str, Level]) -> None:
    """Add ``levels`` to a level item where its map lacks their SKUs."""
    current = table.get_item(Key=key.as_item(), ConsistentRead=True).get("Item")
    if current is None or LEVELS not in current:
        try:
            table.update_item(
                Key=key.as_item(),
                UpdateExpression="SET #lv = :lv",
                ConditionExpression="attribute_not_exists(#lv)",
                ExpressionAttributeNames={"#lv": LEVELS},
                ExpressionAttributeValues={":lv": {s: encode(v) for s, v in levels.items()}},
            )
            return
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
        current = table.get_item(Key=key.as_item(), ConsistentRead=True)["Item"]
    for sku, level in levels.items():
        if sku in current[LEVELS]:
            continue  # the stream wrote it since the upgrade: newer than the old item
        try:
            table.update_item(
                Key=key.as_item(),
                UpdateExpression="SET #lv.#s = :v",
                ConditionExpression="attribute_not_exists(#lv.#s)",
                ExpressionAttributeNames={"#lv": LEVELS, "#s": sku},
                ExpressionAttributeValues={":v": encode(level)},
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
