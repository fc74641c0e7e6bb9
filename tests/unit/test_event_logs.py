"""Remembering counter events by event_id: resent copies are found, item size stays bounded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from storepulse import events as ev
from storepulse.stream import facts
from storepulse.stream.aggregate import Located
from storepulse.stream.catalog import Catalog, Store

CATALOG = Catalog("Europe/Paris", {"s-1": Store("s-1", "Europe/Paris", "EUR")})
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


def _log(*members: Located) -> facts._EventLog:
    _claims, (log,) = facts._claims(members, CATALOG)
    return log


def test_a_copy_at_another_position_is_a_duplicate_in_and_across_batches() -> None:
    first = _door(1)
    copy = _door(2, event_id=first.event.event_id)
    duplicates: set[str] = set()
    item = facts._claim_events(_log(first, copy), None, duplicates, set())
    assert duplicates == {copy.position}
    assert item is not None and item["event_srcs"] == {first.event.event_id: f"shard-0:{1:056d}"}

    later = Located(copy.event, "shard-0", f"{3:056d}")
    duplicates = set()
    assert facts._claim_events(_log(later), item, duplicates, set()) is None  # nothing learnt
    assert duplicates == {later.position}


def test_a_full_item_stops_remembering_but_never_drops_an_event(monkeypatch) -> None:
    monkeypatch.setattr(facts, "MAX_EVENTS_PER_ITEM", 2)
    duplicates: set[str] = set()
    item = facts._claim_events(_log(_door(1), _door(2), _door(3)), None, duplicates, set())
    assert duplicates == set()  # the third still counts
    assert item is not None and len(item["event_srcs"]) == 2
