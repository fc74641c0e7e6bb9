"""Property: whatever bytes a record carries, ``parse_event`` returns an event or raises
``InvalidEvent`` with a short reason; it never raises anything else."""

from __future__ import annotations

from hypothesis import given, settings

from storepulse.events import MAX_REASON_LENGTH, Event, InvalidEvent, parse_event
from tests.hostile import payloads


@settings(max_examples=400, deadline=None)
@given(payloads)
def test_any_bytes_are_an_event_or_an_invalid_event_with_a_reason(data: bytes) -> None:
    try:
        event = parse_event(data)
    except InvalidEvent as exc:
        assert 0 < len(exc.reason) <= MAX_REASON_LENGTH
    else:
        assert isinstance(event, Event)
        assert parse_event(event.to_json()) == event  # what is accepted round-trips
