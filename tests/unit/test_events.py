"""Event schemas: wire round-trips, exact money, UTC timestamps and rejection reasons."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from storepulse.events import (
    SCHEMAS,
    Event,
    InvalidEvent,
    PosSaleV1,
    WebPurchaseV1,
    parse_event,
    partition_key,
)

ENVELOPE: dict[str, Any] = {
    "version": 1,
    "event_id": "3f0c5a4e-8d6b-4c1e-9a57-0b7d2f1e6c44",
    "store_id": "s-001",
    "occurred_at": "2026-11-26T10:15:00.123Z",
    "source": "pos-terminal-3",
}
LINE = {"sku": "SKU-1", "category": "coffee", "quantity": 3, "unit_price": "19.99"}

EXAMPLES: dict[str, dict[str, Any]] = {
    "pos.sale": {
        "order_id": "o-1",
        "channel": "in_store",
        "currency": "EUR",
        "customer_id": "c-9",
        "employee_id": "e-2",
        "lines": [LINE, {"sku": "SKU-2", "category": "tea", "quantity": 1, "unit_price": "0"}],
    },
    "pos.refund": {
        "refund_id": "r-1",
        "order_id": "o-1",
        "currency": "EUR",
        "amount": "19.99",
        "lines": [{"sku": "SKU-1", "quantity": 1}],
        "reason": "damaged",
    },
    "web.page_view": {
        "session_id": "sess-1",
        "device": "mobile",
        "page": "/products/sku-1",
        "referrer": "https://example.com/",
    },
    "web.add_to_cart": {
        "session_id": "sess-1",
        "device": "desktop",
        "sku": "SKU-1",
        "quantity": 2,
        "unit_price": "4.50",
    },
    "web.checkout_started": {"session_id": "sess-1", "device": "tablet", "cart_value": "9.00"},
    "web.purchase": {"session_id": "sess-1", "device": "app", "order_id": "o-2"},
    "inventory.stock_level": {"sku": "SKU-1", "quantity_on_hand": 0},
    "inventory.adjustment": {"sku": "SKU-1", "delta": -2, "reason": "shrinkage"},
    "crm.customer_profile": {
        "customer_id": "c-9",
        "age_band": "65+",
        "region": "North",
        "segment": "vip",
    },
    "store.foot_traffic": {
        "sensor_id": "door-1",
        "entries": 12,
        "exits": 9,
        "interval_seconds": 300,
    },
    "social.metrics": {
        "channel": "instagram",
        "mentions": 3,
        "followers_gained": 5,
        "followers_lost": 1,
        "engagements": 140,
        "interval_seconds": 900,
    },
}


def wire(schema: str = "pos.sale", **changes: Any) -> dict[str, Any]:
    """A valid wire object of ``schema`` with ``changes`` applied (None deletes a field)."""
    record = {"schema": schema, **ENVELOPE, **EXAMPLES[schema], **changes}
    return {key: value for key, value in record.items() if value is not None}


def without(key: str) -> dict[str, Any]:
    return {name: value for name, value in wire().items() if name != key}


def reason_of(data: bytes | str | dict[str, Any]) -> str:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(data)
    assert caught.value.reason == str(caught.value)
    assert len(caught.value.reason) <= 500
    return caught.value.reason


def test_every_registered_schema_has_an_example() -> None:
    assert {schema for schema, _ in SCHEMAS} == set(EXAMPLES)


@pytest.mark.parametrize("schema", sorted(EXAMPLES))
def test_valid_event_round_trips(schema: str) -> None:
    raw = json.dumps(wire(schema)).encode()

    event = parse_event(raw)

    assert type(event) is SCHEMAS[(schema, 1)]
    assert parse_event(event.to_json()) == event
    assert parse_event(raw.decode()) == parse_event(wire(schema)) == event


def test_to_json_is_compact_with_string_money_and_utc_z() -> None:
    event = parse_event(wire(customer_id=None))

    data = json.loads(event.to_json())

    assert b" " not in event.to_json()
    assert data["occurred_at"] == "2026-11-26T10:15:00.123Z"
    assert data["lines"][0]["unit_price"] == "19.99"
    assert "customer_id" not in data


def test_money_is_exact_decimal() -> None:
    sale = parse_event(wire(lines=[LINE]))

    assert isinstance(sale, PosSaleV1)
    assert sale.lines[0].unit_price == Decimal("19.99")
    assert sale.total == Decimal("19.99") * 3 == Decimal("59.97")
    assert sale.units == 3


def test_sale_total_sums_all_lines_exactly() -> None:
    lines = [{**LINE, "quantity": 1, "unit_price": "0.10"}] * 3

    sale = parse_event(wire(lines=lines))

    assert isinstance(sale, PosSaleV1)
    assert str(sale.total) == "0.30"


def test_models_accept_keyword_arguments_with_decimal_or_str_money() -> None:
    sale = PosSaleV1(
        event_id=uuid.uuid4(),
        store_id="s-001",
        occurred_at=datetime(2026, 11, 26, 10, 15, tzinfo=UTC),
        order_id="o-1",
        channel="online",
        currency="USD",
        lines=[{**LINE, "unit_price": Decimal("2.5")}, {**LINE, "unit_price": "1"}],
    )

    assert sale.schema_name == "pos.sale"
    assert sale.total == Decimal("10.50")
    assert parse_event(sale.to_json()) == sale


@pytest.mark.parametrize("price", [19.99, 20.0])
def test_float_money_is_rejected(price: float) -> None:
    assert reason_of(wire(lines=[{**LINE, "unit_price": price}])).startswith(
        "pos.sale.lines[0].unit_price: must be a decimal string"
    )
    with pytest.raises(ValueError, match="float"):
        PosSaleV1(**{**wire(), "lines": [{**LINE, "unit_price": price}]})


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"unit_price": "1.999"}, "unit_price: must have at most 2 decimal places"),
        ({"unit_price": "-0.01"}, "unit_price: must be >= 0"),
        ({"unit_price": "NaN"}, "unit_price: must be a finite number"),
        ({"quantity": 0}, "pos.sale.lines[0].quantity: must be >= 1"),
        ({"quantity": "3"}, "pos.sale.lines[0].quantity: must be an integer"),
        ({"quantity": 1.5}, "pos.sale.lines[0].quantity: must be an integer"),
        ({"colour": "red"}, "pos.sale.lines[0].colour: unknown field"),
    ],
)
def test_bad_line_is_rejected_with_field_path(changes: dict[str, Any], expected: str) -> None:
    assert expected in reason_of(wire(lines=[{**LINE, **changes}]))


def test_naive_timestamp_is_rejected() -> None:
    reason = reason_of(wire(occurred_at="2026-11-26T10:15:00"))

    assert reason == "pos.sale.occurred_at: timezone missing"


def test_epoch_timestamp_is_rejected() -> None:
    assert "occurred_at: must be an ISO 8601 string" in reason_of(wire(occurred_at=1764152100))


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_timestamp_outside_datetime_range_in_utc_is_rejected(stamp: str) -> None:
    reason = reason_of(json.dumps(wire(occurred_at=stamp)))

    assert reason == "pos.sale.occurred_at: out of range once converted to UTC"


def test_content_hash_ignores_the_event_id_and_nothing_else() -> None:
    event = parse_event(wire())
    resent = parse_event(wire(event_id=str(uuid.uuid4())))
    altered = parse_event(wire(order_id="o-2"))

    assert event.content_hash == resent.content_hash
    assert event.content_hash != altered.content_hash
    assert len(event.content_hash) == 16


def test_offset_timestamp_is_normalised_to_utc() -> None:
    event = parse_event(wire(occurred_at="2026-11-26T11:15:00.5+01:00"))

    assert event.occurred_at == datetime(2026, 11, 26, 10, 15, 0, 500000, tzinfo=UTC)
    assert event.occurred_at.utcoffset() is not None
    assert event.occurred_at.tzinfo == UTC
    assert json.loads(event.to_json())["occurred_at"] == "2026-11-26T10:15:00.500Z"


def test_event_id_is_canonical_uuid() -> None:
    event = parse_event(wire(event_id="3F0C5A4E-8D6B-4C1E-9A57-0B7D2F1E6C44"))

    assert event.event_id == ENVELOPE["event_id"]
    assert reason_of(wire(event_id="not-a-uuid")) == "pos.sale.event_id: must be a UUID"


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (wire() | {"schema": "pos.sael"}, "unknown schema 'pos.sael' version 1"),
        (wire(version=2), "unknown version 2 of schema 'pos.sale' (known: 1)"),
        (without("schema"), "schema: missing"),
        (without("version"), "version: missing"),
        (wire(version="1"), "version: must be an integer, not string"),
    ],
)
def test_unknown_or_missing_schema_version_is_rejected(
    record: dict[str, Any], expected: str
) -> None:
    assert reason_of(record) == expected
    assert reason_of(json.dumps(record)) == expected


def test_extra_field_is_rejected() -> None:
    assert reason_of(wire(colour="red")) == "pos.sale.colour: unknown field"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"schema": "pos.sale",', "not valid JSON: "),
        (b"\xff\xfe", "not valid UTF-8: "),
        (b"[1, 2]", "event must be a JSON object, not array"),
        ('"pos.sale"', "event must be a JSON object, not string"),
        (b"null", "event must be a JSON object, not null"),
    ],
)
def test_malformed_or_non_object_json_is_rejected(data: bytes | str, expected: str) -> None:
    assert reason_of(data).startswith(expected)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"store_id": "s#001"}, "pos.sale.store_id: must be 1-64 characters"),
        ({"store_id": ""}, "pos.sale.store_id: must be 1-64 characters"),
        ({"order_id": ""}, "pos.sale.order_id: must not be empty"),
        ({"order_id": "o\n1"}, "pos.sale.order_id: must not contain control characters"),
        ({"order_id": "o" * 129}, "pos.sale.order_id: must be at most 128 characters"),
        ({"currency": "eur"}, "pos.sale.currency: must be an ISO 4217 code"),
        ({"channel": "phone"}, "pos.sale.channel: must be 'in_store' or 'online'"),
        ({"lines": []}, "pos.sale.lines: must not be empty"),
    ],
)
def test_bad_envelope_or_sale_field_is_rejected(changes: dict[str, Any], expected: str) -> None:
    assert reason_of(wire(**changes)).startswith(expected)


@pytest.mark.parametrize(
    ("schema", "changes", "expected"),
    [
        ("pos.refund", {"amount": "0"}, "pos.refund.amount: must be > 0"),
        ("inventory.adjustment", {"delta": 0}, "inventory.adjustment.delta: must not be 0"),
        ("inventory.stock_level", {"quantity_on_hand": -1}, "quantity_on_hand: must be >= 0"),
        ("store.foot_traffic", {"interval_seconds": 3601}, "interval_seconds: must be <= 3600"),
        ("web.page_view", {"device": "tv"}, "web.page_view.device: must be 'desktop', "),
    ],
)
def test_type_specific_rules(schema: str, changes: dict[str, Any], expected: str) -> None:
    assert expected in reason_of(wire(schema, **changes))


def test_several_errors_are_counted_in_one_short_reason() -> None:
    reason = reason_of({"schema": "pos.sale", "version": 1, "x" * 2000: 1})

    assert reason.startswith("pos.sale.event_id: missing (+")


@pytest.mark.parametrize(
    ("schema", "key"),
    [(schema, "session_id" if schema.startswith("web.") else "store_id") for schema in EXAMPLES],
)
def test_partition_key(schema: str, key: str) -> None:
    event: Event = parse_event(wire(schema))

    assert partition_key(event) == wire(schema)[key]


def test_web_purchase_carries_no_revenue() -> None:
    assert not {"amount", "total", "cart_value"} & set(WebPurchaseV1.model_fields)


def test_events_are_frozen_and_hashable() -> None:
    event = parse_event(wire())

    with pytest.raises(ValueError, match="frozen"):
        event.store_id = "s-002"  # type: ignore[misc]
    assert len({event, parse_event(event.to_json())}) == 1
