"""The stream processor through its Lambda handler, on the embedded AWS: what a business owner
and an operator would check (totals in DynamoDB, files in the lake, alerts in the inbox)."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from botocore.exceptions import ClientError

from storepulse import events as ev
from storepulse.clock import fixed_clock
from storepulse.layout import (
    SESSION_WINDOW,
    Grain,
    Table,
    bucket_keys,
    mix_key,
    order_key,
    session_key,
)
from storepulse.settings import SettingsStore, StoreSettings
from storepulse.stock_levels import Level, migrate, read_store_levels
from storepulse.stream import smoke, writer
from storepulse.stream.records import StreamRecord
from storepulse.stream.window import PlausibilityWindow
from storepulse_local.iam import DEPLOYER
from tests.integration.conftest import SHARD, business_day_total, invoke

NOON_PARIS = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)


class Stream:
    """Records of one shard, numbered like Kinesis does (increasing sequence numbers)."""

    def __init__(self) -> None:
        self.next_sequence = 49_650_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000

    def records(
        self, *payloads: ev.Event | bytes, arrived_at: datetime = NOON_PARIS
    ) -> list[StreamRecord]:
        out = []
        for payload in payloads:
            data = payload.to_json() if isinstance(payload, ev.Event) else payload
            key = ev.partition_key(payload) if isinstance(payload, ev.Event) else "x"
            self.next_sequence += 1
            out.append(StreamRecord(SHARD, str(self.next_sequence), key, data, arrived_at))
        return out


def sale(
    store: str, order: str, at: datetime, *lines: tuple[str, int, str], customer: str | None = None
) -> ev.PosSaleV1:
    return ev.PosSaleV1(
        event_id=str(uuid.uuid4()),
        store_id=store,
        occurred_at=at,
        order_id=order,
        channel="in_store",
        currency="EUR",
        customer_id=customer,
        lines=[
            ev.SaleLine(
                sku=sku,
                category="grocery" if sku != "mug-blue" else "kitchen",
                quantity=qty,
                unit_price=Decimal(price),
            )
            for sku, qty, price in lines
        ],
    )


def page_view(store: str, session: str, at: datetime) -> ev.WebPageViewV1:
    return ev.WebPageViewV1(
        event_id=str(uuid.uuid4()),
        store_id=store,
        occurred_at=at,
        session_id=session,
        device="mobile",
        page="/",
    )


def stock_take(store: str, sku: str, quantity: int, at: datetime) -> ev.InventoryStockLevelV1:
    return ev.InventoryStockLevelV1(
        event_id=str(uuid.uuid4()),
        store_id=store,
        occurred_at=at,
        sku=sku,
        quantity_on_hand=quantity,
    )


def day_total(stack, store: str, at: datetime, tz: str = "Europe/Paris") -> dict:
    key = bucket_keys(store, at, tz)[Grain.DAY]
    return stack.table(Table.METRICS).get_item(Key=key.as_item()).get("Item", {})


def on_hand(stack, store: str, sku: str) -> int:
    return read_store_levels(stack.table(Table.INVENTORY), store)[sku].on_hand


def test_sales_become_exact_totals_per_store_day_and_business(handler, realtime_stack) -> None:
    stream = Stream()
    batch = stream.records(
        sale("s-001", "o-1", NOON_PARIS, ("coffee-1kg", 2, "12.10"), ("mug-blue", 1, "0.10")),
        sale("s-001", "o-2", NOON_PARIS + timedelta(minutes=1), ("tea-100g", 3, "0.20")),
        sale("s-002", "o-3", NOON_PARIS, ("coffee-1kg", 1, "12.10")),
    )
    assert invoke(handler, batch) == {"batchItemFailures": []}

    store_day = day_total(realtime_stack, "s-001", NOON_PARIS)
    assert store_day["revenue"] == Decimal("24.90")  # 24.20 + 0.10 + 0.60, exactly
    assert (store_day["orders"], store_day["units"]) == (2, 6)
    business_day = business_day_total(realtime_stack, NOON_PARIS)
    assert business_day["revenue"] == Decimal("37.00")
    assert business_day["orders"] == 3
    mix = realtime_stack.table(Table.METRICS).get_item(
        Key=mix_key("s-001", NOON_PARIS.date()).as_item()
    )["Item"]
    assert mix["sku#coffee-1kg#revenue"] == Decimal("24.20")
    assert (mix["cat#grocery#units"], mix["cat#kitchen#revenue"]) == (5, Decimal("0.10"))
    order = realtime_stack.table(Table.FACTS).get_item(Key=order_key("o-1").as_item())["Item"]
    assert (order["total"], order["business_date"]) == (Decimal("24.30"), "2026-11-26")


def test_buckets_follow_each_stores_local_day(handler, realtime_stack) -> None:
    late_evening_utc = datetime(2026, 11, 26, 23, 30, tzinfo=UTC)  # Paris: 27th; New York: 26th
    stream = Stream()
    invoke(
        handler,
        stream.records(
            sale("s-001", "o-paris", late_evening_utc, ("tea-100g", 1, "5.00")),
            sale("s-002", "o-ny", late_evening_utc, ("tea-100g", 1, "7.00")),
            arrived_at=late_evening_utc,
        ),
    )
    paris = day_total(realtime_stack, "s-001", late_evening_utc, "Europe/Paris")
    new_york = day_total(realtime_stack, "s-002", late_evening_utc, "America/New_York")
    assert bucket_keys("s-001", late_evening_utc, "Europe/Paris")[Grain.DAY].sk == "2026-11-27"
    assert bucket_keys("s-002", late_evening_utc, "America/New_York")[Grain.DAY].sk == "2026-11-26"
    assert (paris["revenue"], new_york["revenue"]) == (Decimal("5.00"), Decimal("7.00"))


def test_late_event_lands_in_its_own_day(handler, realtime_stack) -> None:
    yesterday = NOON_PARIS - timedelta(days=1)
    invoke(
        handler, Stream().records(sale("s-001", "o-offline", yesterday, ("tea-100g", 1, "4.00")))
    )
    assert day_total(realtime_stack, "s-001", yesterday)["revenue"] == Decimal("4.00")
    assert day_total(realtime_stack, "s-001", NOON_PARIS) == {}


def test_bad_records_are_quarantined_with_reason_and_good_ones_still_count(
    handler, realtime_stack
) -> None:
    stream = Stream()
    batch = stream.records(
        sale("s-001", "o-1", NOON_PARIS, ("tea-100g", 1, "2.00")),
        b'{"schema": "pos.sale", "version": 1, "truncated',
        sale("s-999", "o-2", NOON_PARIS, ("tea-100g", 1, "2.00")),  # unknown store
        sale("s-001", "o-3", NOON_PARIS, ("tea-100g", 1, "3.00")),
    )
    assert invoke(handler, batch) == {"batchItemFailures": []}

    assert day_total(realtime_stack, "s-001", NOON_PARIS)["revenue"] == Decimal("5.00")
    s3 = realtime_stack.s3
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=realtime_stack.bucket)["Contents"]]
    quarantine = [k for k in keys if k.startswith("quarantine/")]
    lines = [
        json.loads(line)
        for line in gzip.decompress(
            s3.get_object(Bucket=realtime_stack.bucket, Key=quarantine[0])["Body"].read()
        ).splitlines()
    ]
    assert [line["sequence_number"] for line in lines] == [
        batch[1].sequence_number,
        batch[2].sequence_number,
    ]
    assert "not valid JSON" in lines[0]["reason"]
    assert "unknown store 's-999'" in lines[1]["reason"]
    raw = [k for k in keys if k.startswith("raw/")]
    assert raw and raw[0].startswith("raw/events/dt=2026-11-26/hour=11/")


def test_replayed_and_bisected_batches_change_no_total(handler, realtime_stack) -> None:
    stream = Stream()
    batch = stream.records(
        *[
            sale("s-001", f"o-{i}", NOON_PARIS + timedelta(minutes=i), ("coffee-1kg", 1, "12.10"))
            for i in range(6)
        ]
    )
    invoke(handler, batch)
    expected = day_total(realtime_stack, "s-001", NOON_PARIS)

    invoke(handler, batch)  # retried whole
    invoke(handler, batch[:3])  # bisected halves
    invoke(handler, batch[3:])

    assert day_total(realtime_stack, "s-001", NOON_PARIS) == expected
    assert expected["revenue"] == Decimal("72.60")
    assert on_hand_after_sales(realtime_stack) == -6


def on_hand_after_sales(stack) -> int:
    return on_hand(stack, "s-001", "coffee-1kg")


def test_crash_half_way_then_retry_counts_each_record_once(
    handler, realtime_stack, monkeypatch
) -> None:
    stream = Stream()
    batch = stream.records(
        *[
            sale("s-001", f"o-{i}", NOON_PARIS + timedelta(minutes=i), ("tea-100g", 1, "1.50"))
            for i in range(5)
        ]
    )
    original = writer.ItemWriter.write_counters
    calls = {"n": 0}

    def crash_after_some_writes(self, write):
        calls["n"] += 1
        if calls["n"] > 7:
            raise RuntimeError("Lambda timed out")
        return original(self, write)

    monkeypatch.setattr(writer.ItemWriter, "write_counters", crash_after_some_writes)
    with pytest.raises(RuntimeError):
        invoke(handler, batch)
    monkeypatch.setattr(writer.ItemWriter, "write_counters", original)

    assert invoke(handler, batch) == {"batchItemFailures": []}
    day = day_total(realtime_stack, "s-001", NOON_PARIS)
    assert (day["revenue"], day["orders"]) == (Decimal("7.50"), 5)
    assert business_day_total(realtime_stack, NOON_PARIS)["orders"] == 5


def test_failed_write_reports_where_to_resume_and_resuming_is_exact(
    handler, realtime_stack, monkeypatch
) -> None:
    stream = Stream()
    batch = stream.records(
        sale("s-001", "o-1", NOON_PARIS, ("tea-100g", 1, "1.00")),
        sale("s-002", "o-2", NOON_PARIS, ("tea-100g", 1, "2.00")),
        sale("s-001", "o-3", NOON_PARIS, ("tea-100g", 1, "4.00")),
    )
    original = writer.ItemWriter.write_counters

    def throttle_store_2(self, write):
        if write.key.pk.startswith("S#s-002#DAY"):
            raise ClientError(
                {
                    "Error": {
                        "Code": "ProvisionedThroughputExceededException",
                        "Message": "slow down",
                    }
                },
                "UpdateItem",
            )
        return original(self, write)

    monkeypatch.setattr(writer.ItemWriter, "write_counters", throttle_store_2)
    response = invoke(handler, batch)
    assert response == {"batchItemFailures": [{"itemIdentifier": batch[1].sequence_number}]}
    monkeypatch.setattr(writer.ItemWriter, "write_counters", original)

    assert invoke(handler, batch[1:]) == {"batchItemFailures": []}  # what Lambda resends
    assert day_total(realtime_stack, "s-001", NOON_PARIS)["revenue"] == Decimal("5.00")
    assert day_total(realtime_stack, "s-002", NOON_PARIS, "America/New_York")["revenue"] == Decimal(
        "2.00"
    )
    assert business_day_total(realtime_stack, NOON_PARIS)["revenue"] == Decimal("7.00")


def test_a_resent_event_at_another_position_is_not_counted_twice(handler, realtime_stack) -> None:
    order = sale("s-001", "o-1", NOON_PARIS, ("tea-100g", 2, "3.00"))
    stream = Stream()
    invoke(handler, stream.records(order))
    invoke(handler, stream.records(order))  # the producer resent it: new sequence number
    day = day_total(realtime_stack, "s-001", NOON_PARIS)
    assert (day["revenue"], day["orders"]) == (Decimal("6.00"), 1)
    assert on_hand(realtime_stack, "s-001", "tea-100g") == -2


def test_sessions_are_counted_once_across_batches(handler, realtime_stack) -> None:
    stream = Stream()
    invoke(
        handler,
        stream.records(
            page_view("s-001", "sess-1", NOON_PARIS),
            page_view("s-001", "sess-1", NOON_PARIS),
            page_view("s-001", "sess-2", NOON_PARIS),
        ),
    )
    invoke(handler, stream.records(page_view("s-001", "sess-1", NOON_PARIS)))
    day = day_total(realtime_stack, "s-001", NOON_PARIS)
    assert (day["page_views"], day["sessions"]) == (4, 2)


def test_sessions_are_counted_once_across_containers_and_releases(handler, realtime_stack) -> None:
    """Two warm containers take turns on the shard (each learns what the other opened), a
    session marked by a release before 2026-12 stays opened, and a session is remembered for
    SESSION_WINDOW after it opened: a page view of it 5 hours later opens it again."""
    facts = realtime_stack.table(Table.FACTS)
    stream = Stream()
    first = stream.records(page_view("s-001", "sess-0", NOON_PARIS))  # opened by the old release
    facts.put_item(Item={**session_key("sess-0").as_item(), "src": f"{SHARD}:{first[0].position}"})
    one = handler.processor()
    handler.processor.cache_clear()
    other = handler.processor()
    one.process(stream.records(page_view("s-001", "sess-1", NOON_PARIS)))
    other.process(
        stream.records(
            page_view("s-001", "sess-2", NOON_PARIS), page_view("s-001", "sess-1", NOON_PARIS)
        )
    )
    one.process(
        stream.records(
            page_view("s-001", "sess-2", NOON_PARIS),
            page_view("s-001", "sess-3", NOON_PARIS),
            page_view("s-001", "sess-0", NOON_PARIS),
        )
    )
    day = day_total(realtime_stack, "s-001", NOON_PARIS)
    assert (day["page_views"], day["sessions"]) == (6, 3)

    later = NOON_PARIS + SESSION_WINDOW + timedelta(hours=1)
    other.process(stream.records(page_view("s-001", "sess-1", later), arrived_at=later))
    assert day_total(realtime_stack, "s-001", later)["sessions"] == 4


def foot_traffic(store: str, at: datetime, entries: int) -> ev.StoreFootTrafficV1:
    return ev.StoreFootTrafficV1(
        event_id=str(uuid.uuid4()),
        store_id=store,
        occurred_at=at,
        sensor_id="front-door",
        entries=entries,
        exits=0,
        interval_seconds=900,
    )


def restock(store: str, sku: str, delta: int, at: datetime) -> ev.InventoryAdjustmentV1:
    return ev.InventoryAdjustmentV1(
        event_id=str(uuid.uuid4()),
        store_id=store,
        occurred_at=at,
        sku=sku,
        delta=delta,
        reason="restock",
    )


def test_resent_counter_events_count_once(handler, realtime_stack) -> None:
    """A producer's resend (same event, new sequence number) of a page view, a door count and a
    restock, in the same batch and in a later one: every number is as if it was sent once."""
    view = page_view("s-001", "sess-1", NOON_PARIS)
    door = foot_traffic("s-001", NOON_PARIS, entries=7)
    delivery = restock("s-001", "tea-100g", 12, NOON_PARIS)
    stream = Stream()
    invoke(
        handler, stream.records(stock_take("s-001", "tea-100g", 3, NOON_PARIS - timedelta(hours=1)))
    )
    invoke(handler, stream.records(view, door, delivery, view, door, delivery))
    invoke(handler, stream.records(view, door, delivery))

    day = day_total(realtime_stack, "s-001", NOON_PARIS)
    assert (day["page_views"], day["sessions"], day["foot_traffic"]) == (1, 1, 7)
    assert on_hand(realtime_stack, "s-001", "tea-100g") == 15


def test_a_batch_retried_after_a_crash_counts_its_events_once(
    handler, realtime_stack, monkeypatch
) -> None:
    """The first attempt dies after remembering the event ids but before any counter: the
    retry (same sequence numbers) finds its own ids, not resent copies, and counts them once."""
    stream = Stream()
    batch = stream.records(
        page_view("s-001", "sess-1", NOON_PARIS),
        foot_traffic("s-001", NOON_PARIS, entries=4),
        restock("s-001", "tea-100g", 5, NOON_PARIS),
    )

    def crash(self, write):
        raise RuntimeError("Lambda timed out")

    with monkeypatch.context() as patched:
        patched.setattr(writer.ItemWriter, "write_counters", crash)
        with pytest.raises(RuntimeError):
            invoke(handler, batch)
    assert day_total(realtime_stack, "s-001", NOON_PARIS) == {}
    assert invoke(handler, batch) == {"batchItemFailures": []}
    assert invoke(handler, batch) == {"batchItemFailures": []}  # a third delivery changes nothing

    day = day_total(realtime_stack, "s-001", NOON_PARIS)
    assert (day["page_views"], day["sessions"], day["foot_traffic"]) == (1, 1, 4)
    assert on_hand(realtime_stack, "s-001", "tea-100g") == 5


def test_low_stock_alert_reaches_subscribers_once_per_cooldown(handler, realtime_stack) -> None:
    stream = Stream()
    invoke(handler, stream.records(stock_take("s-001", "coffee-1kg", 7, NOON_PARIS)))
    assert realtime_stack.alerts() == []

    invoke(
        handler, stream.records(sale("s-001", "o-1", NOON_PARIS, ("coffee-1kg", 2, "12.10")))
    )  # 5 = reorder point
    invoke(
        handler, stream.records(sale("s-001", "o-2", NOON_PARIS, ("coffee-1kg", 1, "12.10")))
    )  # still low: cooldown

    notes = realtime_stack.alerts(wait_seconds=1)
    assert len(notes) == 1
    attributes = {k: v["Value"] for k, v in notes[0]["MessageAttributes"].items()}
    assert attributes == {"type": "low_stock", "severity": "warning", "store_id": "s-001"}
    body = json.loads(notes[0]["Message"])
    assert body["details"] == {"sku": "coffee-1kg", "on_hand": 5, "reorder_point": 5}
    assert on_hand(realtime_stack, "s-001", "coffee-1kg") == 4


def test_traffic_spike_alert(handler, realtime_stack) -> None:
    stream = Stream()
    start = NOON_PARIS - timedelta(minutes=65)
    baseline = [page_view("s-001", f"b-{i}", start + timedelta(minutes=i)) for i in range(60)]
    invoke(handler, stream.records(*baseline))
    assert realtime_stack.alerts() == []

    burst = [page_view("s-001", f"x-{i}", NOON_PARIS - timedelta(seconds=i)) for i in range(40)]
    invoke(handler, stream.records(*burst))

    notes = realtime_stack.alerts(wait_seconds=1)
    assert [json.loads(n["Message"])["type"] for n in notes] == ["traffic_spike"]


def test_sales_drop_alert(handler, realtime_stack) -> None:
    """An hour selling under half of the same hour a week earlier alerts, once; the hour a
    week earlier itself (above the minimum baseline) did not."""
    from storepulse.settings import AlertRuleSettings

    SettingsStore(realtime_stack.table(Table.SETTINGS)).upsert(
        AlertRuleSettings(
            rule_id="sales-drop",
            type="sales_drop",
            cooldown_seconds=3600,
            params={"window_minutes": 60, "ratio": Decimal("0.5"), "min_baseline": 100},
            store_ids=["s-001"],
        )
    )
    stream = Stream()
    week_ago = NOON_PARIS - timedelta(days=7)
    busy = [  # 5 x 25.00 in the hour before noon, a week ago
        sale("s-001", f"w-{i}", week_ago - timedelta(minutes=50 - 10 * i), ("tea-100g", 5, "5.00"))
        for i in range(5)
    ]
    invoke(handler, stream.records(*busy, arrived_at=week_ago))
    quiet = [sale("s-001", "q-1", NOON_PARIS - timedelta(minutes=1), ("tea-100g", 1, "5.00"))]
    invoke(handler, stream.records(*quiet))

    notes = [json.loads(n["Message"]) for n in realtime_stack.alerts(wait_seconds=1)]
    drops = [n for n in notes if n["type"] == "sales_drop"]
    assert [(n["store_id"], n["details"]) for n in drops] == [
        ("s-001", {"current": "5.00", "week_ago": "125.00"})
    ]


def test_a_batch_delivered_again_after_its_cooldown_does_not_alert_again(
    handler, realtime_stack, clock
) -> None:
    """What a restored snapshot does after a stop longer than the cooldown: the claim and the
    message are back, and its checkpoints deliver the batch that alerted again, hours later by
    the clock (its event ids are its own, so it is aggregated again). The inbox holds the alert
    once; a new batch after the cooldown still alerts."""
    stream = Stream()
    start = NOON_PARIS - timedelta(minutes=65)
    baseline = [page_view("s-001", f"b-{i}", start + timedelta(minutes=i)) for i in range(60)]
    invoke(handler, stream.records(*baseline))
    burst = [page_view("s-001", f"x-{i}", NOON_PARIS - timedelta(seconds=i)) for i in range(40)]
    alerted = stream.records(*burst)
    invoke(handler, alerted)

    clock.advance(hours=2)  # the rule's cooldown is 30 minutes
    invoke(handler, alerted)
    invoke(handler, alerted[:20])  # a bisected half of it, as Lambda retries
    assert [json.loads(n["Message"])["type"] for n in realtime_stack.alerts(1)] == ["traffic_spike"]

    more = [page_view("s-001", f"y-{i}", NOON_PARIS + timedelta(seconds=i)) for i in range(40)]
    invoke(handler, stream.records(*more))
    assert len(realtime_stack.alerts(1)) == 1  # the next one, the first was received above


def _subscribe_filtered(stack, name: str, policy: dict[str, list[str]]) -> str:
    queue_url = stack.sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = stack.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    stack.sns.subscribe(
        TopicArn=stack.topic_arn,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"FilterPolicy": json.dumps(policy), "RawMessageDelivery": "true"},
    )
    return queue_url


def test_subscribers_filter_alerts_by_attributes(handler, realtime_stack) -> None:
    purchasing = _subscribe_filtered(realtime_stack, "purchasing", {"type": ["low_stock"]})
    other_store = _subscribe_filtered(realtime_stack, "store-2-manager", {"store_id": ["s-002"]})
    stream = Stream()
    invoke(handler, stream.records(stock_take("s-001", "mug-blue", 1, NOON_PARIS)))

    sqs = realtime_stack.sqs
    received = sqs.receive_message(QueueUrl=purchasing, WaitTimeSeconds=1).get("Messages", [])
    assert [json.loads(m["Body"])["details"]["sku"] for m in received] == ["mug-blue"]
    assert sqs.receive_message(QueueUrl=other_store).get("Messages", []) == []


def test_smoke_event_is_answered_and_counted_nowhere(handler, realtime_stack) -> None:
    marked = smoke.smoke_event(fixed_clock(NOON_PARIS))
    invoke(handler, Stream().records(marked))
    facts = realtime_stack.table(Table.FACTS)
    assert facts.get_item(Key=smoke.smoke_key(marked.event_id).as_item())["Item"]["type"] == "smoke"
    assert business_day_total(realtime_stack, NOON_PARIS) == {}
    assert "Contents" not in realtime_stack.s3.list_objects_v2(
        Bucket=realtime_stack.bucket, Prefix="quarantine/"
    )


def test_stock_follows_event_time_when_a_pos_syncs_late(handler, realtime_stack) -> None:
    count_time = NOON_PARIS
    stream = Stream()
    invoke(handler, stream.records(stock_take("s-001", "tea-100g", 10, count_time)))
    invoke(
        handler,
        stream.records(
            sale("s-001", "o-before", count_time - timedelta(minutes=30), ("tea-100g", 2, "1.00")),
            sale("s-001", "o-after", count_time + timedelta(minutes=30), ("tea-100g", 1, "1.00")),
            arrived_at=count_time + timedelta(minutes=30),
        ),
    )
    # The earlier sale is already in the stock take; only the later one comes off it.
    assert on_hand(realtime_stack, "s-001", "tea-100g") == 9
    assert day_total(realtime_stack, "s-001", count_time)["units"] == 3


def test_a_store_added_after_the_catalogue_was_cached_is_not_quarantined(
    handler, realtime_stack
) -> None:
    stream = Stream()
    invoke(handler, stream.records(sale("s-001", "o-1", NOON_PARIS, ("tea-100g", 1, "1.00"))))
    SettingsStore(realtime_stack.table(Table.SETTINGS)).upsert(
        StoreSettings(store_id="s-003", name="New", timezone="Europe/Paris", currency="EUR")
    )
    # The cached copy is fresh (well within its TTL): the unknown store re-reads it anyway.

    invoke(handler, stream.records(sale("s-003", "o-2", NOON_PARIS, ("tea-100g", 1, "2.00"))))

    assert day_total(realtime_stack, "s-003", NOON_PARIS)["revenue"] == Decimal("2.00")


# --- hostile input: one record never fails a batch --------------------------------------------


def with_time(event: ev.Event, occurred_at: str) -> bytes:
    """``event``'s wire JSON with a raw ``occurred_at`` (models cannot hold some of these)."""
    return json.dumps(json.loads(event.to_json()) | {"occurred_at": occurred_at}).encode()


@pytest.mark.parametrize(
    ("occurred_at", "reason"),
    [
        ("9999-12-31T23:59:59Z", "after its arrival"),
        ("2099-01-01T00:00:00Z", "after its arrival"),
        ("1970-01-01T00:00:00Z", "before its arrival"),
        ("0001-01-01T00:00:00Z", "before its arrival"),
        ("0001-01-01T00:00:00+01:00", "out of range once converted to UTC"),
        ("9999-12-31T23:59:59-01:00", "out of range once converted to UTC"),
    ],
)
def test_an_implausible_time_is_quarantined_and_the_batch_goes_on(
    handler, realtime_stack, occurred_at: str, reason: str
) -> None:
    stream = Stream()
    poison = with_time(sale("s-001", "o-bad", NOON_PARIS, ("tea-100g", 1, "500.00")), occurred_at)
    batch = stream.records(
        sale("s-001", "o-1", NOON_PARIS, ("tea-100g", 1, "2.00")),
        poison,
        sale("s-001", "o-2", NOON_PARIS, ("tea-100g", 1, "3.00")),
    )
    assert invoke(handler, batch) == {"batchItemFailures": []}

    assert day_total(realtime_stack, "s-001", NOON_PARIS)["revenue"] == Decimal("5.00")
    [line] = realtime_stack.quarantined()
    assert line["sequence_number"] == batch[1].sequence_number
    assert reason in line["reason"]
    assert base64.b64decode(line["data_base64"]) == poison  # replayable byte for byte


def test_a_record_whose_time_cannot_be_filed_is_quarantined_not_fatal(
    handler, realtime_stack
) -> None:
    """Past the window (wide open here), a time whose TTL or bucket overflows is still one
    record's problem: the record is quarantined with the error, the others count."""
    processor = handler.processor()
    wide_open = PlausibilityWindow(timedelta.max, timedelta.max)
    processor.resources = dataclasses.replace(processor.resources, window=wide_open)
    far = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    batch = Stream().records(
        foot_traffic("s-001", far, entries=3), foot_traffic("s-001", NOON_PARIS, entries=4)
    )
    assert invoke(handler, batch) == {"batchItemFailures": []}
    assert day_total(realtime_stack, "s-001", NOON_PARIS)["foot_traffic"] == 4
    [line] = realtime_stack.quarantined()
    assert line["reason"].startswith("processing raised OverflowError")


def test_a_stock_take_dated_2099_is_quarantined_and_a_later_real_take_counts(
    handler, realtime_stack
) -> None:
    stream = Stream()
    invoke(
        handler,
        stream.records(stock_take("s-001", "tea-100g", 5, datetime(2099, 1, 1, tzinfo=UTC))),
    )
    invoke(handler, stream.records(stock_take("s-001", "tea-100g", 50, NOON_PARIS)))
    assert on_hand(realtime_stack, "s-001", "tea-100g") == 50
    [line] = realtime_stack.quarantined()
    assert "2099-01-01T00:00:00+00:00 is" in line["reason"]


def test_a_window_from_the_environment_lets_a_backfill_through(
    handler, realtime_stack, monkeypatch
) -> None:
    two_weeks_ago = NOON_PARIS - timedelta(days=14)
    stream = Stream()
    invoke(handler, stream.records(sale("s-001", "o-old", two_weeks_ago, ("tea-100g", 1, "4.00"))))
    assert day_total(realtime_stack, "s-001", two_weeks_ago) == {}
    assert "14 days, 0:00:00 before its arrival" in realtime_stack.quarantined()[0]["reason"]

    monkeypatch.setenv("STOREPULSE_PLAUSIBLE_PAST_DAYS", "30")  # the operator's backfill
    handler.processor.cache_clear()
    invoke(handler, stream.records(sale("s-001", "o-old", two_weeks_ago, ("tea-100g", 1, "4.00"))))
    assert day_total(realtime_stack, "s-001", two_weeks_ago)["revenue"] == Decimal("4.00")


def test_the_same_event_id_with_other_content_is_a_conflict_never_counted(
    handler, realtime_stack
) -> None:
    first = sale("s-001", "o-1", NOON_PARIS, ("tea-100g", 1, "5.00"))
    altered = first.model_copy(
        update={
            "order_id": "o-2",
            "lines": (first.lines[0].model_copy(update={"unit_price": Decimal("500.00")}),),
        }
    )
    stream = Stream()
    invoke(handler, stream.records(first))
    invoke(handler, stream.records(first, altered))  # an identical resend, then the altered one

    day = day_total(realtime_stack, "s-001", NOON_PARIS)
    assert (day["revenue"], day["orders"]) == (Decimal("5.00"), 1)
    [line] = realtime_stack.quarantined()
    assert line["reason"].startswith(f"conflict: event_id {first.event_id!r} was counted")
    assert line["details"] == {
        "identity": f"event_id {first.event_id!r}",
        "counted_hash": first.content_hash,
        "hash": altered.content_hash,
    }


def test_a_new_event_id_for_an_existing_order_is_a_conflict_with_both_hashes(
    handler, realtime_stack
) -> None:
    first = sale("s-001", "o-1", NOON_PARIS, ("tea-100g", 1, "5.00"))
    other = sale("s-001", "o-1", NOON_PARIS, ("tea-100g", 2, "5.00"))  # new event_id, o-1 again
    same = first.model_copy(update={"event_id": str(uuid.uuid4())})  # new id, same content
    stream = Stream()
    invoke(handler, stream.records(first, other))
    invoke(handler, stream.records(other, same))

    assert day_total(realtime_stack, "s-001", NOON_PARIS)["revenue"] == Decimal("5.00")
    lines = realtime_stack.quarantined()
    assert len(lines) == 2  # `other` in both batches; `same` is a harmless duplicate
    for line in lines:
        assert line["details"] == {
            "identity": "order_id 'o-1'",
            "counted_hash": first.content_hash,
            "hash": other.content_hash,
        }


def test_a_counter_event_resent_with_other_content_is_a_conflict(handler, realtime_stack) -> None:
    door = foot_traffic("s-001", NOON_PARIS, entries=7)
    inflated = door.model_copy(update={"entries": 700})
    stream = Stream()
    invoke(handler, stream.records(door, inflated))
    invoke(handler, stream.records(inflated, door))

    assert day_total(realtime_stack, "s-001", NOON_PARIS)["foot_traffic"] == 7
    hashes = [line["details"]["hash"] for line in realtime_stack.quarantined()]
    assert hashes == [inflated.content_hash] * 2


def test_a_batch_with_a_conflict_retried_after_a_crash_counts_once_and_quarantines_again(
    handler, realtime_stack, monkeypatch
) -> None:
    """The first attempt dies after its claims, before any counter: the retry finds its own
    claims (not a conflict with itself), counts the sale once and quarantines the same copy."""
    first = sale("s-001", "o-1", NOON_PARIS, ("tea-100g", 1, "5.00"))
    altered = first.model_copy(update={"order_id": "o-2"})  # same event_id, other order
    batch = Stream().records(first, altered)

    def crash(self, write):
        raise RuntimeError("Lambda timed out")

    with monkeypatch.context() as patched:
        patched.setattr(writer.ItemWriter, "write_counters", crash)
        with pytest.raises(RuntimeError):
            invoke(handler, batch)
    assert invoke(handler, batch) == {"batchItemFailures": []}
    assert invoke(handler, batch) == {"batchItemFailures": []}

    day = day_total(realtime_stack, "s-001", NOON_PARIS)
    assert (day["revenue"], day["orders"]) == (Decimal("5.00"), 1)
    lines = realtime_stack.quarantined()  # one object, rewritten by each attempt
    assert [line["sequence_number"] for line in lines] == [batch[1].sequence_number]


def test_levels_kept_an_item_per_sku_carry_on_and_the_deploy_moves_them(
    handler, realtime_stack
) -> None:
    """A table of a release before 2026-12 (one item per SKU, with its watermark): the stream
    carries on from the old level, a record the old item had applied counts once, and the
    deploy's migration moves every old item into the level items and deletes it."""
    stream = Stream()
    inventory = realtime_stack.table(Table.INVENTORY)
    applied = stream.records(restock("s-001", "tea-100g", 5, NOON_PARIS))
    old = {"pk": "S#s-001", "store_id": "s-001"}
    inventory.put_item(
        Item=old
        | {"sk": "tea-100g", "sku": "tea-100g", "on_hand": 20, f"wm_{SHARD}": applied[0].position}
    )
    inventory.put_item(Item=old | {"sk": "mug-blue", "sku": "mug-blue", "on_hand": 7})

    invoke(handler, applied)  # delivered again after the upgrade: already in the old level
    invoke(handler, stream.records(sale("s-001", "o-1", NOON_PARIS, ("tea-100g", 2, "3.00"))))
    assert read_store_levels(inventory, "s-001") == {"tea-100g": Level(18), "mug-blue": Level(7)}

    deployer = DEPLOYER.session().resource("dynamodb")  # as the deploy runs it: IAM enforced
    assert migrate(deployer, inventory.name, ["tea-100g", "mug-blue"]) == 2
    assert all(str(item["sk"]).startswith("#") for item in inventory.scan()["Items"])
    invoke(handler, applied)  # and again after the move: the watermark moved with the level
    invoke(handler, stream.records(sale("s-001", "o-2", NOON_PARIS, ("mug-blue", 1, "9.00"))))
    assert read_store_levels(inventory, "s-001") == {"tea-100g": Level(18), "mug-blue": Level(6)}
    assert migrate(deployer, inventory.name, []) == 0  # idempotent
