"""Hypothesis strategies for what a careless producer or an attacker can put on the stream: any
bytes, any JSON, valid events with any timestamp, and resends (exact or altered) of the same
``event_id`` or order. Events use the integration catalogue (stores s-001/s-002, EUR) and small
pools of ids, so duplicates and conflicts are frequent."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

NOON_PARIS = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
EVENT_IDS = [
    "3f0c5a4e-8d6b-4c1e-9a57-0b7d2f1e6c44",
    "9b2d7c1a-4e5f-4a6b-8c7d-1e2f3a4b5c6d",
    "00000000-0000-4000-8000-000000000000",
]

_BODIES: dict[str, dict[str, Any]] = {
    "pos.sale": {
        "order_id": "o-1",
        "channel": "in_store",
        "currency": "EUR",
        "lines": [{"sku": "tea-100g", "category": "grocery", "quantity": 1, "unit_price": "2.50"}],
    },
    "pos.refund": {"refund_id": "r-1", "order_id": "o-1", "currency": "EUR", "amount": "2.50"},
    "web.page_view": {"session_id": "sess-1", "device": "mobile", "page": "/"},
    "inventory.stock_level": {"sku": "tea-100g", "quantity_on_hand": 40},
    "inventory.adjustment": {"sku": "tea-100g", "delta": 5, "reason": "restock"},
    "crm.customer_profile": {
        "customer_id": "c-1",
        "age_band": "25-34",
        "region": "North",
        "segment": "new",
    },
    "store.foot_traffic": {"sensor_id": "door", "entries": 3, "exits": 1, "interval_seconds": 60},
}

_ZONES = [
    UTC,
    timezone(timedelta(hours=14)),
    timezone(timedelta(hours=-12)),
    ZoneInfo("Asia/Tokyo"),
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
"""Any JSON value (floats include NaN and infinities, which ``json.dumps`` writes anyway)."""

_EDGES = [
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-12:00",
    "9999-06-01T00:00:00Z",  # a TTL added to it overflows
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "2099-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",
]
any_time = st.sampled_from(_EDGES) | st.datetimes(
    min_value=datetime(1, 1, 1),
    max_value=datetime(9999, 12, 31, 23, 59, 59),
    timezones=st.sampled_from(_ZONES),
).map(datetime.isoformat)
"""Any aware timestamp of years 1-9999, the edges that break date arithmetic first."""

near_time = st.timedeltas(min_value=timedelta(days=-9), max_value=timedelta(minutes=10)).map(
    lambda delta: (NOON_PARIS + delta).isoformat()
)
"""Around NOON_PARIS (the arrival time of the tests' records): inside and just outside the
default plausibility window."""


@st.composite
def events(draw: st.DrawFn, times: st.SearchStrategy[str] = near_time) -> dict[str, Any]:
    """A well-formed event object (it may still be implausible, unknown or a conflict)."""
    schema = draw(st.sampled_from(sorted(_BODIES)))
    return {
        "schema": schema,
        "version": 1,
        "event_id": draw(st.sampled_from(EVENT_IDS)),
        "store_id": draw(st.sampled_from(["s-001", "s-002", "s-999"])),
        "occurred_at": draw(times),
        **_BODIES[schema],
    }


@st.composite
def altered_events(draw: st.DrawFn) -> dict[str, Any]:
    """An event with one field (maybe a new one) replaced by any JSON value or any time."""
    event = draw(events())
    field = draw(st.sampled_from([*event, "extra"]))
    event[field] = draw(json_values | any_time)
    return event


def sale(event_id: str) -> dict[str, Any]:
    """A valid sale of store s-001 at NOON_PARIS."""
    return {
        "schema": "pos.sale",
        "version": 1,
        "event_id": event_id,
        "store_id": "s-001",
        "occurred_at": NOON_PARIS.isoformat(),
        **_BODIES["pos.sale"],
    }


@st.composite
def altered_sales(draw: st.DrawFn, event_id: str) -> dict[str, Any]:
    """``sale(event_id)`` with one field other than its identity replaced by anything."""
    altered = sale(event_id)
    field = draw(st.sampled_from(sorted(set(altered) - {"schema", "version", "event_id"})))
    altered[field] = draw(json_values | any_time | near_time | st.sampled_from(["o-2", "s-002"]))
    return altered


def _encode(value: Any) -> bytes:
    return json.dumps(value).encode()


payloads = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=100).map(str.encode),
    json_values.map(_encode),
    events().map(_encode),
    events(any_time).map(_encode),
    altered_events().map(_encode),
)
"""What one Kinesis record may carry."""
