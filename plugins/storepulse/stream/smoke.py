"""The deploy's smoke test: a marked event that travels the whole real-time path.

A ``store.foot_traffic`` event whose ``source`` is :data:`SMOKE_SOURCE` is recognised by the
stream processor: it is not counted (business numbers stay untouched, whatever the store) and
instead leaves a ``SMOKE#<event_id>`` item in the facts table, which the deploy waits for.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from storepulse import events as ev
from storepulse.clock import Clock, system_clock
from storepulse.layout import Key

SMOKE_SOURCE = "storepulse:smoke-test"
SMOKE_STORE = "smoke-test"


def smoke_event(clock: Clock = system_clock) -> ev.StoreFootTrafficV1:
    return ev.StoreFootTrafficV1(
        event_id=str(uuid.uuid4()),
        store_id=SMOKE_STORE,
        occurred_at=clock(),
        source=SMOKE_SOURCE,
        sensor_id="smoke",
        entries=0,
        exits=0,
        interval_seconds=1,
    )


def is_smoke(event: ev.Event) -> bool:
    return event.source == SMOKE_SOURCE


def smoke_key(event_id: str) -> Key:
    return Key(f"SMOKE#{event_id}", "SMOKE")


def record_smoke(facts_table: Any, event: ev.Event, processed_at: datetime) -> None:
    facts_table.put_item(
        Item={
            **smoke_key(event.event_id).as_item(),
            "type": "smoke",
            "occurred_at": event.occurred_at.isoformat(),
            "processed_at": processed_at.isoformat(),
            "expires_at": int(processed_at.timestamp()) + 86400,
        }
    )
