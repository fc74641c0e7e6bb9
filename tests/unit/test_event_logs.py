"""Remembering counter events by event_id: resent copies are found, item size stays bounded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from storepulse import events as ev
from storepulse.settings import Catalog, StoreSettings
from storepulse.stream import facts, sessions
from storepulse.stream.aggregate import Located

CATALOG = Catalog(
    "Europe/Paris",
    {"s-1": StoreSettings(store_id="s-1", name="s-1", timezone="Europe/Paris", currency="EUR")},
)
AT = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def _door(position: int, event_id: str | None = None) -> Located:
    event = ev.StoreFootTrafficV1(
        event_id=event_id or str(uuid.uuid4()),
        store_id="s-1",
        occurred_at=AT,
        sensor_id="door",
        entries=3,
        exits=0,
        interval_seconds=900,
    )
    return Located(event, "shard-0", f"{position:056d}")


def _sort(members: list[Located], found: dict | None, result: facts.ClaimResult) -> dict | None:
    """The event log item the records write (None if they learnt nothing)."""
    claims, (log,) = facts.plan_claims(members, CATALOG)
    existing = {log.key: found} if found else {}
    written = facts._sort_claims(claims, [log], existing, result)
    return next((i for i in written if i["pk"].startswith("SEEN#")), None)


def test_a_copy_at_another_position_is_a_duplicate_in_and_across_batches() -> None:
    first = _door(1)
    copy = _door(2, event_id=first.event.event_id)
    result = facts.ClaimResult()
    item = _sort([first, copy], None, result)
    assert result.duplicates == {copy.position} and not result.conflicts
    assert item is not None
    # The position is kept without its padding (fewer bytes billed).
    assert item["event_srcs"][first.event.event_id] == f"shard-0:1 {first.event.content_hash}"

    later = Located(copy.event, "shard-0", f"{3:056d}")
    result = facts.ClaimResult()
    assert _sort([later], item, result) is None  # nothing learnt
    assert result.duplicates == {later.position}


def test_a_kinesis_shard_id_is_kept_short_and_long_entries_still_match() -> None:
    shard = "shardId-000000000012"
    first = Located(_door(1).event, shard, f"{7:056d}")
    item = _sort([first], None, facts.ClaimResult())
    assert item is not None
    assert item["event_srcs"][first.event.event_id] == f"12:7 {first.event.content_hash}"

    # The retry of that record is ours, whether the entry was written short or long (before).
    for entry in (item, {**item, "event_srcs": {first.event.event_id: f"{shard}:{7:056d} x"}}):
        result = facts.ClaimResult()
        assert _sort([first], entry, result) is None
        assert result.counted(first.position)
    other = Located(first.event, "shardId-000000000002", f"{7:056d}")  # same position, other shard
    result = facts.ClaimResult()
    _sort([other], item, result)
    assert result.duplicates == {other.position}


def test_a_full_item_stops_remembering_but_never_drops_an_event(monkeypatch) -> None:
    monkeypatch.setattr(facts, "MAX_EVENTS_PER_ITEM", 2)
    result = facts.ClaimResult()
    item = _sort([_door(1), _door(2), _door(3)], None, result)
    assert result.duplicates == set() and not result.conflicts  # the third still counts
    assert item is not None and len(item["event_srcs"]) == 2


def _view(position: int, session_id: str = "ws-1", second: int = 0) -> Located:
    event = ev.WebPageViewV1(
        event_id=str(uuid.uuid4()),
        store_id="s-1",
        occurred_at=AT.replace(second=second),
        session_id=session_id,
        device="mobile",
        page="/",
    )
    return Located(event, "shard-0", f"{position:056d}")


def test_web_events_of_every_session_share_their_store_seconds_item() -> None:
    claims, logs = facts.plan_claims(
        [_view(1, "ws-1"), _view(2, "ws-2"), _view(3, "ws-1", 1)], CATALOG
    )
    assert not claims
    assert [(log.key.pk, len(log.members)) for log in logs] == [
        ("SEEN#s-1#2026-11-26T10:00:00Z", 2),
        ("SEEN#s-1#2026-11-26T10:00:01Z", 1),
    ]


def test_a_session_opens_once_with_its_first_counted_event_and_again_on_a_retry() -> None:
    first, second = _view(1), _view(2)
    result = facts.ClaimResult()
    assert facts._open_sessions([second, first], {}, result) == {"ws-1": first.position}
    assert result.new_sessions == {first.position}

    known = {"ws-1": f"shard-0:{first.position}"}  # what the shard remembers
    retry = facts.ClaimResult()
    assert facts._open_sessions([first, second], known, retry) == {}  # remembered already
    assert retry.new_sessions == {first.position}  # the same record opens it again

    later = facts.ClaimResult()
    assert facts._open_sessions([_view(3)], known, later) == {}
    assert later.new_sessions == set()


def test_a_duplicate_never_opens_a_session() -> None:
    copy = _view(1)
    result = facts.ClaimResult(duplicates={copy.position})
    assert facts._open_sessions([copy], {}, result) == {}
    assert result.new_sessions == set()


def _sale(position: int, order_id: str = "o-1", event_id: str | None = None) -> Located:
    event = ev.PosSaleV1(
        event_id=event_id or str(uuid.uuid4()),
        store_id="s-1",
        occurred_at=AT,
        order_id=order_id,
        channel="in_store",
        currency="EUR",
        lines=[ev.SaleLine(sku="tea", category="tea", quantity=1, unit_price=Decimal("5.00"))],
    )
    return Located(event, "shard-0", f"{position:056d}")


def test_an_order_shares_its_store_seconds_item_with_counter_events_for_as_long_as_its_fact() -> (
    None
):
    order, door = _sale(1), _door(2)
    claims, logs = facts.plan_claims([order, door], CATALOG)
    result = facts.ClaimResult()
    written = facts._sort_claims(claims, logs, {}, result)
    assert [i["pk"] for i in written] == ["ORDER#o-1", "SEEN#s-1#2026-11-26T10:00:00Z"]
    seen = written[1]
    assert set(seen["event_srcs"]) == {order.event.event_id, door.event.event_id}


def test_an_order_event_id_resent_with_another_order_is_a_conflict_found_in_the_log() -> None:
    first = _sale(1)
    claims, logs = facts.plan_claims([first], CATALOG)
    existing = {logs[0].key: facts._sort_claims(claims, logs, {}, facts.ClaimResult())[1]}
    altered = _sale(2, order_id="o-2", event_id=first.event.event_id)
    claims, logs = facts.plan_claims([altered], CATALOG)
    result = facts.ClaimResult()
    assert facts._sort_claims(claims, logs, existing, result) == []
    assert result.conflicts[altered.position].details["identity"] == (
        f"event_id {first.event.event_id!r}"
    )


def test_an_order_counted_by_an_earlier_release_is_found_by_its_event_claim() -> None:
    first = _sale(1)
    earlier = {first.event.event_id: f"shard-0:{first.position} {first.event.content_hash}"}
    copy = _sale(2, order_id="o-1", event_id=first.event.event_id)
    claims, logs = facts.plan_claims([copy], CATALOG)
    result = facts.ClaimResult()
    assert facts._sort_claims(claims, logs, {}, result, earlier) == []
    assert result.duplicates == {copy.position}


class _NothingNewer:
    """A facts table where no other container wrote a session item."""

    def query(self, **_: object) -> dict:
        return {"Items": []}


def test_a_batchs_sessions_share_items_and_are_remembered_for_the_window(monkeypatch) -> None:
    monkeypatch.setattr(sessions, "MAX_SESSIONS_PER_ITEM", 2)
    memory = sessions.SessionMemory(_NothingNewer(), window=timedelta(hours=4))
    opened = {f"ws-{n}": f"{n:064d}" for n in (3, 1, 2)}
    items = memory.records("shard-0", opened, AT)
    assert [(i["sk"], i["opened"]) for i in items] == [  # positions unpadded: fewer bytes
        (f"{1:064d}", {"ws-1": "1", "ws-2": "2"}),
        (f"{3:064d}", {"ws-3": "3"}),
    ]
    memory.learn("shard-0", items)
    assert memory.openings("shard-0", AT + timedelta(hours=1))["ws-2"] == f"shard-0:{2:064d}"
    assert memory.openings("shard-0", AT + timedelta(hours=5)) == {}  # past SESSION_WINDOW
