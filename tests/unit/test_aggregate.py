"""Aggregation in memory: what each record contributes to which item."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

from storepulse import events as ev
from storepulse.layout import mix_key
from storepulse.settings import Catalog, StoreSettings
from storepulse.stream.aggregate import Located, aggregate

CATALOG = Catalog(
    "Europe/Paris",
    {"s-1": StoreSettings(store_id="s-1", name="s-1", timezone="Europe/Paris", currency="EUR")},
)
AT = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def _sale(position: int, skus: list[str]) -> Located:
    sale = ev.PosSaleV1(
        event_id=str(uuid.uuid4()),
        store_id="s-1",
        occurred_at=AT,
        order_id=f"o-{position}",
        channel="in_store",
        currency="EUR",
        lines=[
            ev.SaleLine(sku=sku, category="c", quantity=1, unit_price=Decimal("1.00"))
            for sku in skus
        ],
    )
    return Located(sale, "shard-0", f"{position:064d}")


def test_a_batch_writes_one_mix_item_per_store_and_day() -> None:
    agg = aggregate([_sale(1, ["a", "b"]), _sale(2, ["a"])], CATALOG, set())
    mix = agg.counters[mix_key("s-1", date(2026, 11, 26))]
    assert mix.total() == {
        "cat#c#revenue": Decimal("3.00"),
        "cat#c#units": 3,
        "sku#a#revenue": Decimal("2.00"),
        "sku#a#units": 2,
        "sku#b#revenue": Decimal("1.00"),
        "sku#b#units": 1,
    }
    # The business's mix and buckets are the sums of its stores' on read: never written.
    assert not any(key.pk.startswith("ALL") for key in agg.counters)


def test_a_wide_mix_is_spread_over_parts_and_loses_nothing() -> None:
    skus = [f"sku-{i:03d}" for i in range(400)]  # 802 counters: more than one write can hold
    agg = aggregate([_sale(1, skus[:200]), _sale(2, skus[200:])], CATALOG, set())
    day = date(2026, 11, 26)
    parts = [w for k, w in agg.counters.items() if k.pk == mix_key("s-1", day).pk]
    assert len(parts) == 3
    assert all(len(w.total()) <= 300 for w in parts)
    merged = {name: value for w in parts for name, value in w.total().items()}
    assert len(merged) == 802 and merged["sku#sku-399#units"] == 1
    assert {k.sk for k, w in agg.counters.items() if w in parts} == {
        "2026-11-26",
        "2026-11-26#2",
        "2026-11-26#3",
    }


def _social(position: int, channel: str, mentions: int, engagements: int) -> Located:
    event = ev.SocialMetricsV1(
        event_id=str(uuid.uuid4()),
        store_id="s-1",
        occurred_at=AT,
        channel=channel,
        mentions=mentions,
        followers_gained=2,
        followers_lost=1,
        engagements=engagements,
        interval_seconds=900,
    )
    return Located(event, "shard-0", f"{position:064d}")


def test_social_metrics_add_up_per_channel_in_every_bucket() -> None:
    from storepulse.layout import Grain, bucket_keys

    batch = [_social(1, "instagram", 3, 40), _social(2, "instagram", 1, 10), _social(3, "x", 2, 5)]
    agg = aggregate(batch, CATALOG, set())
    for store_id in ("s-1",):
        for key in bucket_keys(store_id, AT, "Europe/Paris").values():
            assert agg.counters[key].total() == {
                "social#instagram#mentions": 4,
                "social#instagram#followers_gained": 4,
                "social#instagram#followers_lost": 2,
                "social#instagram#engagements": 50,
                "social#x#mentions": 2,
                "social#x#followers_gained": 2,
                "social#x#followers_lost": 1,
                "social#x#engagements": 5,
            }
    assert Grain.DAY in bucket_keys("s-1", AT, "Europe/Paris")


def test_the_business_buckets_are_read_from_the_stores_own_local_dates() -> None:
    from storepulse.layout import Key, store_keys

    zones = {"s-in": "Asia/Kolkata", "s-1": "Europe/Paris"}
    # 18Z is 23:30-00:30 in Kolkata: that store files the hour under two local dates.
    assert store_keys(Key("ALL#HOUR#2026-11-26", "2026-11-25T18Z"), zones) == [
        Key("S#s-1#HOUR#2026-11-25", "2026-11-25T18Z"),
        Key("S#s-in#HOUR#2026-11-25", "2026-11-25T18Z"),
        Key("S#s-in#HOUR#2026-11-26", "2026-11-25T18Z"),
    ]
    assert store_keys(Key("ALL#MIN#2026-11-26", "2026-11-25T18:45Z"), zones) == [
        Key("S#s-1#MIN#2026-11-25", "2026-11-25T18:45Z"),
        Key("S#s-in#MIN#2026-11-26", "2026-11-25T18:45Z"),
    ]
    assert store_keys(Key("ALL#MIX#2026", "2026-11-26#2"), zones) == [
        Key("S#s-1#MIX#2026", "2026-11-26#2"),
        Key("S#s-in#MIX#2026", "2026-11-26#2"),
    ]
    assert store_keys(Key("S#s-1#DAY#2026", "2026-11-26"), zones) == [
        Key("S#s-1#DAY#2026", "2026-11-26")
    ]
