"""Remembering counter events by event_id: resent copies are found, item size stays bounded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from storepulse import events as ev
from storepulse.settings import Catalog, StoreSettings
from storepulse.stream import facts
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


def _log(*members: Located) -> facts._EventLog:
    _claims, (log,) = facts.plan_claims(members, CATALOG)
    return log


def test_a_copy_at_another_position_is_a_duplicate_in_and_across_batches() -> None:
    first = _door(1)
    copy = _door(2, event_id=first.event.event_id)
    result = facts.ClaimResult()
    item = facts._claim_events(_log(first, copy), None, result)
    assert result.duplicates == {copy.position} and not result.conflicts
    assert item is not None
    assert facts._Holder.parse(item["event_srcs"][first.event.event_id]) == facts._Holder(
        f"shard-0:{1:056d}", first.event.content_hash
    )

    later = Located(copy.event, "shard-0", f"{3:056d}")
    result = facts.ClaimResult()
    assert facts._claim_events(_log(later), item, result) is None  # nothing learnt
    assert result.duplicates == {later.position}


def test_a_full_item_stops_remembering_but_never_drops_an_event(monkeypatch) -> None:
    monkeypatch.setattr(facts, "MAX_EVENTS_PER_ITEM", 2)
    result = facts.ClaimResult()
    item = facts._claim_events(_log(_door(1), _door(2), _door(3)), None, result)
    assert result.duplicates == set() and not result.conflicts  # the third still counts
    assert item is not None and len(item["event_srcs"]) == 2
