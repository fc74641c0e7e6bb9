"""Versioned event schemas: the one definition of every event StorePulse reads or writes.

Producers (SDK, CLI, simulator), the Lambda stream processor, the exporter and the dashboard all
import this module; nothing else defines what an event looks like. It depends only on pydantic and
the standard library, so it can be packaged into the Lambda zip as is.

Wire format (the reference for producers)
-----------------------------------------
One event per Kinesis record: a JSON object, UTF-8. Every event carries the envelope::

    {"schema": "pos.sale", "version": 1,
     "event_id": "3f0c5a4e-8d6b-4c1e-9a57-0b7d2f1e6c44",
     "store_id": "s-001",
     "occurred_at": "2026-11-26T10:15:00.123Z",
     "source": "pos-terminal-3",
     ...type fields...}

- ``schema`` + ``version`` pick the model (see ``SCHEMAS``); an unknown pair is rejected.
- ``event_id``: a UUID the *producer* sets once per event and keeps on every retry; consumers
  deduplicate on it. Stored in canonical form (lower-case, hyphenated). A retry must resend the
  same content (``Event.content_hash``): the same ``event_id`` with other content is quarantined
  as a conflict, never counted.
- ``store_id``: 1-64 of ``A-Z a-z 0-9 _ -`` (it is part of DynamoDB keys, so no ``#``).
- ``occurred_at``: ISO 8601 with a timezone (``Z`` or an offset); normalised to UTC. Naive
  timestamps, epoch numbers and times outside years 1-9999 once in UTC are rejected. The stream
  processor also quarantines events too far from their arrival on the stream
  (``storepulse.stream.window``).
- ``source``: optional identifier of the emitting device or system.
- Identifiers (order_id, sku, session_id, customer_id, ...): non-empty strings of at most 128
  characters without control characters.
- Money: a decimal *string* such as ``"19.99"`` (a JSON integer is accepted too); at most 2
  decimal places and 12 integer digits; JSON floats are rejected because they are inexact.
  Values are held as ``Decimal`` and written back with exactly 2 decimal places.
- Counts are JSON integers (``3``, not ``3.0`` or ``"3"``).
- Optional fields may be omitted or ``null``; unknown fields are rejected (typos must not pass).

Types, all version 1 (type fields after the envelope):

- ``pos.sale``: order_id, channel (in_store|online), currency (ISO 4217, e.g. EUR), customer_id?,
  employee_id?, lines: 1-1000 of {sku, category, quantity >= 1, unit_price >= 0}.
  Derived (not on the wire): ``total`` (exact sum of quantity * unit_price), ``units``.
- ``pos.refund``: refund_id, order_id, currency, amount > 0, lines? (1-1000 of {sku,
  quantity >= 1}), reason?
- ``web.page_view``: session_id, device (desktop|mobile|tablet|app), page, referrer?, customer_id?
- ``web.add_to_cart``: session_id, device, sku, quantity >= 1, unit_price >= 0
- ``web.checkout_started``: session_id, device, cart_value >= 0
- ``web.purchase``: session_id, device, order_id. Funnel only: the sale itself arrives as a
  ``pos.sale`` with channel "online" (same order_id), which alone carries revenue, so revenue is
  never counted twice.
- ``inventory.stock_level``: sku, quantity_on_hand >= 0: an absolute count (e.g. a stock take)
- ``inventory.adjustment``: sku, delta (signed, non-zero), reason
  (restock|shrinkage|correction|return)
- ``crm.customer_profile``: customer_id, age_band (18-24|25-34|35-44|45-54|55-64|65+|unknown),
  region, segment (new|regular|vip|lapsed)
- ``store.foot_traffic``: sensor_id, entries >= 0, exits >= 0, interval_seconds (1-3600): counts
  over the interval that ends at ``occurred_at``
- ``social.metrics``: channel (instagram|facebook|tiktok|x|youtube|pinterest), mentions,
  followers_gained, followers_lost, engagements (all >= 0), interval_seconds (1-86400): the
  shop's account on one social network over the interval that ends at ``occurred_at``

Partition key (``partition_key``): ``session_id`` for ``web.*`` events, ``store_id`` otherwise, so
a session's or a store's events stay in order within a shard.

Use ``parse_event`` to read (it raises ``InvalidEvent`` with a short ``reason`` suitable for a
quarantine record) and ``Event.to_json`` to write; ``parse_event(e.to_json()) == e``.
Adding a version: define a new model class (e.g. ``PosSaleV2``) and add it to ``AnyEvent``; both
versions are then accepted side by side.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Strict,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "SCHEMAS",
    "AnyEvent",
    "CrmCustomerProfileV1",
    "Event",
    "InvalidEvent",
    "InventoryAdjustmentV1",
    "InventoryStockLevelV1",
    "PosRefundV1",
    "PosSaleV1",
    "RefundLine",
    "SaleLine",
    "SocialMetricsV1",
    "StoreFootTrafficV1",
    "WebAddToCartV1",
    "WebCheckoutStartedV1",
    "WebEvent",
    "WebPageViewV1",
    "WebPurchaseV1",
    "parse_event",
    "partition_key",
]

MAX_REASON_LENGTH: Final = 500
MAX_LINES: Final = 1000
MAX_QUANTITY: Final = 1_000_000  # per line; keeps sums of quantity * price exact in 28 digits
MAX_STOCK: Final = 1_000_000_000
MAX_PEOPLE: Final = 1_000_000  # foot traffic per interval
MAX_SOCIAL: Final = 1_000_000_000  # mentions, followers or engagements per interval
CONTENT_HASH_LENGTH: Final = 16  # 64 bits: stored beside every claim, so kept short

# --- field types -------------------------------------------------------------------------------

_NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]*$"
_STORE_ID = r"^[A-Za-z0-9_-]{1,64}$"
_CURRENCY = r"^[A-Z]{3}$"
_PATTERN_MESSAGES: Final = {
    _NO_CONTROL: "must not contain control characters",
    _STORE_ID: "must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'",
    _CURRENCY: "must be an ISO 4217 code (3 upper-case letters)",
}

Identifier = Annotated[
    str, Strict(), StringConstraints(min_length=1, max_length=128, pattern=_NO_CONTROL)
]
Text = Annotated[
    str, Strict(), StringConstraints(min_length=1, max_length=2048, pattern=_NO_CONTROL)
]
StoreId = Annotated[str, Strict(), StringConstraints(pattern=_STORE_ID)]
Currency = Annotated[str, Strict(), StringConstraints(pattern=_CURRENCY)]


def _uuid_object_to_str(value: object) -> object:
    return str(value) if isinstance(value, uuid.UUID) else value


def _canonical_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise PydanticCustomError("uuid", "must be a UUID") from None


EventId = Annotated[
    str,
    Strict(),
    StringConstraints(max_length=64),
    BeforeValidator(_uuid_object_to_str),
    AfterValidator(_canonical_uuid),
]


def _reject_inexact_money(value: object) -> object:
    if isinstance(value, float):
        raise PydanticCustomError(
            "money_float", 'must be a decimal string such as "19.99", not a float (inexact)'
        )
    if isinstance(value, bool):
        raise PydanticCustomError("money_type", "must be a decimal string")
    return value


_CENT = Decimal("0.01")


def _canonical_money(value: Decimal) -> Decimal:
    # Exact (at most 2 places were validated); "+ 0" turns -0.00 into 0.00.
    return value.quantize(_CENT) + 0


Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=14, decimal_places=2),
    BeforeValidator(_reject_inexact_money),
    AfterValidator(_canonical_money),
]
PositiveMoney = Annotated[
    Decimal,
    Field(gt=0, max_digits=14, decimal_places=2),
    BeforeValidator(_reject_inexact_money),
    AfterValidator(_canonical_money),
]


def _reject_epoch(value: object) -> object:
    if isinstance(value, int | float):
        raise PydanticCustomError(
            "timestamp_type", "must be an ISO 8601 string with a timezone, not a number"
        )
    return value


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is in year 0 in UTC
        raise PydanticCustomError("timestamp_range", "out of range once converted to UTC") from None


def _iso_z(value: datetime) -> str:
    spec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec=spec) + "Z"


Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_reject_epoch),
    AfterValidator(_to_utc),
    PlainSerializer(_iso_z, return_type=str, when_used="json"),
]


def _non_zero(value: int) -> int:
    if value == 0:
        raise PydanticCustomError("non_zero", "must not be 0")
    return value


Quantity = Annotated[int, Strict(), Field(ge=1, le=MAX_QUANTITY)]
StockCount = Annotated[int, Strict(), Field(ge=0, le=MAX_STOCK)]
StockDelta = Annotated[int, Strict(), Field(ge=-MAX_STOCK, le=MAX_STOCK), AfterValidator(_non_zero)]
PeopleCount = Annotated[int, Strict(), Field(ge=0, le=MAX_PEOPLE)]
SocialCount = Annotated[int, Strict(), Field(ge=0, le=MAX_SOCIAL)]
SocialChannel = Literal["instagram", "facebook", "tiktok", "x", "youtube", "pinterest"]
Device = Literal["desktop", "mobile", "tablet", "app"]

# --- models ------------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", serialize_by_alias=True)


class Event(_Frozen):
    """The envelope shared by every event; concrete classes pin ``schema`` and ``version``.

    ``schema_name`` is the wire field ``schema`` (renamed because pydantic's BaseModel owns
    ``schema``). Build events with keyword arguments; ``schema``/``version`` default per class.
    """

    schema_name: str = Field(alias="schema")
    version: int
    event_id: EventId
    store_id: StoreId
    occurred_at: Timestamp
    source: Identifier | None = None

    def to_json(self) -> bytes:
        """Compact wire JSON: money as strings, timestamps ISO 8601 in UTC with 'Z'."""
        return self.__pydantic_serializer__.to_json(self, by_alias=True, exclude_none=True)

    @property
    def content_hash(self) -> str:
        """What the event says, without its ``event_id``: 16 hex digits of SHA-256 over the
        canonical wire JSON. Two copies with the same hash are the same event resent; the same
        ``event_id`` or order with another hash is a conflict."""
        wire = self.__pydantic_serializer__.to_json(
            self, by_alias=True, exclude_none=True, exclude={"event_id"}
        )
        return hashlib.sha256(wire).hexdigest()[:CONTENT_HASH_LENGTH]


class SaleLine(_Frozen):
    sku: Identifier
    category: Identifier
    quantity: Quantity
    unit_price: Money

    @property
    def amount(self) -> Decimal:
        return self.unit_price * self.quantity


class PosSaleV1(Event):
    """A completed sale, in store or online: the only event that carries sales revenue."""

    schema_name: Literal["pos.sale"] = Field("pos.sale", alias="schema")
    version: Literal[1] = 1
    order_id: Identifier
    channel: Literal["in_store", "online"]
    currency: Currency
    customer_id: Identifier | None = None
    employee_id: Identifier | None = None
    lines: Annotated[tuple[SaleLine, ...], Field(min_length=1, max_length=MAX_LINES)]

    @property
    def total(self) -> Decimal:
        """Sum of quantity * unit_price, exact, with 2 decimal places."""
        return sum((line.amount for line in self.lines), Decimal("0.00"))

    @property
    def units(self) -> int:
        return sum(line.quantity for line in self.lines)


class RefundLine(_Frozen):
    sku: Identifier
    quantity: Quantity


class PosRefundV1(Event):
    """Money returned to a customer for (part of) an earlier order."""

    schema_name: Literal["pos.refund"] = Field("pos.refund", alias="schema")
    version: Literal[1] = 1
    refund_id: Identifier
    order_id: Identifier
    currency: Currency
    amount: PositiveMoney
    lines: Annotated[tuple[RefundLine, ...], Field(min_length=1, max_length=MAX_LINES)] | None = (
        None
    )
    reason: Text | None = None


class WebEvent(Event):
    """Base of ``web.*`` events: partitioned by ``session_id``."""

    session_id: Identifier
    device: Device


class WebPageViewV1(WebEvent):
    schema_name: Literal["web.page_view"] = Field("web.page_view", alias="schema")
    version: Literal[1] = 1
    page: Text
    referrer: Text | None = None
    customer_id: Identifier | None = None


class WebAddToCartV1(WebEvent):
    schema_name: Literal["web.add_to_cart"] = Field("web.add_to_cart", alias="schema")
    version: Literal[1] = 1
    sku: Identifier
    quantity: Quantity
    unit_price: Money


class WebCheckoutStartedV1(WebEvent):
    schema_name: Literal["web.checkout_started"] = Field("web.checkout_started", alias="schema")
    version: Literal[1] = 1
    cart_value: Money


class WebPurchaseV1(WebEvent):
    """Funnel step only. The purchase's revenue arrives separately as a ``pos.sale`` with
    channel "online" (same order_id); never add revenue from this event, or it counts twice."""

    schema_name: Literal["web.purchase"] = Field("web.purchase", alias="schema")
    version: Literal[1] = 1
    order_id: Identifier


class InventoryStockLevelV1(Event):
    """An absolute on-hand count (e.g. a stock take): replaces the level, is not added to it."""

    schema_name: Literal["inventory.stock_level"] = Field("inventory.stock_level", alias="schema")
    version: Literal[1] = 1
    sku: Identifier
    quantity_on_hand: StockCount


class InventoryAdjustmentV1(Event):
    """A signed change to the on-hand count."""

    schema_name: Literal["inventory.adjustment"] = Field("inventory.adjustment", alias="schema")
    version: Literal[1] = 1
    sku: Identifier
    delta: StockDelta
    reason: Literal["restock", "shrinkage", "correction", "return"]


class CrmCustomerProfileV1(Event):
    schema_name: Literal["crm.customer_profile"] = Field("crm.customer_profile", alias="schema")
    version: Literal[1] = 1
    customer_id: Identifier
    age_band: Literal["18-24", "25-34", "35-44", "45-54", "55-64", "65+", "unknown"]
    region: Identifier
    segment: Literal["new", "regular", "vip", "lapsed"]


class StoreFootTrafficV1(Event):
    """People counted by a door sensor over the ``interval_seconds`` ending at ``occurred_at``."""

    schema_name: Literal["store.foot_traffic"] = Field("store.foot_traffic", alias="schema")
    version: Literal[1] = 1
    sensor_id: Identifier
    entries: PeopleCount
    exits: PeopleCount
    interval_seconds: Annotated[int, Strict(), Field(ge=1, le=3600)]


class SocialMetricsV1(Event):
    """The shop's account on one social network over the ``interval_seconds`` ending at
    ``occurred_at``: mentions of the shop, followers gained and lost, and engagements (likes,
    comments, shares) on its posts. Counts per interval, so they add up like foot traffic."""

    schema_name: Literal["social.metrics"] = Field("social.metrics", alias="schema")
    version: Literal[1] = 1
    channel: SocialChannel
    mentions: SocialCount
    followers_gained: SocialCount
    followers_lost: SocialCount
    engagements: SocialCount
    interval_seconds: Annotated[int, Strict(), Field(ge=1, le=86_400)]


# --- union, registry, parsing ------------------------------------------------------------------


def _key(model: type[Event]) -> tuple[str, int]:
    fields = model.model_fields
    return fields["schema_name"].default, fields["version"].default


def _tag(model: type[Event]) -> str:
    schema, version = _key(model)
    return f"{schema}/v{version}"


def _discriminate(value: Any) -> str | None:
    """Tag of a raw event (dict) or of a model instance; None when schema/version are unusable."""
    if isinstance(value, dict):
        schema, version = value.get("schema"), value.get("version")
        if type(schema) is str and type(version) is int:
            return f"{schema}/v{version}"
        return None
    if isinstance(value, Event):
        return f"{value.schema_name}/v{value.version}"
    return None


AnyEvent = Annotated[
    Annotated[PosSaleV1, Tag(_tag(PosSaleV1))]
    | Annotated[PosRefundV1, Tag(_tag(PosRefundV1))]
    | Annotated[WebPageViewV1, Tag(_tag(WebPageViewV1))]
    | Annotated[WebAddToCartV1, Tag(_tag(WebAddToCartV1))]
    | Annotated[WebCheckoutStartedV1, Tag(_tag(WebCheckoutStartedV1))]
    | Annotated[WebPurchaseV1, Tag(_tag(WebPurchaseV1))]
    | Annotated[InventoryStockLevelV1, Tag(_tag(InventoryStockLevelV1))]
    | Annotated[InventoryAdjustmentV1, Tag(_tag(InventoryAdjustmentV1))]
    | Annotated[CrmCustomerProfileV1, Tag(_tag(CrmCustomerProfileV1))]
    | Annotated[StoreFootTrafficV1, Tag(_tag(StoreFootTrafficV1))]
    | Annotated[SocialMetricsV1, Tag(_tag(SocialMetricsV1))],
    Discriminator(_discriminate),
]
"""Every accepted event model, discriminated by (schema, version); usable as a pydantic type."""

SCHEMAS: Final[dict[tuple[str, int], type[Event]]] = {
    _key(model): model
    for model in (get_args(member)[0] for member in get_args(get_args(AnyEvent)[0]))
}
"""Registry of accepted ``(schema, version)`` pairs and their model classes."""

_ADAPTER: Final = TypeAdapter(AnyEvent)
_KNOWN_VERSIONS: Final = {
    schema: sorted(v for s, v in SCHEMAS if s == schema) for schema, _ in SCHEMAS
}


class InvalidEvent(ValueError):  # noqa: N818 (the agreed public name)
    """A record that is not a valid event; ``reason`` is short, stable and safe to store."""

    def __init__(self, reason: str) -> None:
        reason = _cap(reason)
        super().__init__(reason)
        self.reason = reason


def parse_event(data: bytes | bytearray | str | dict[str, Any]) -> Event:
    """Validate one event: wire JSON (bytes/str) or an already decoded object (dict).

    Returns the concrete model instance (e.g. ``PosSaleV1``); raises ``InvalidEvent``.
    """
    try:
        if isinstance(data, bytes | bytearray | str):
            return _ADAPTER.validate_json(data)
        if isinstance(data, dict):
            return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise InvalidEvent(_reason(exc, data)) from exc
    raise InvalidEvent(f"event must be JSON bytes/str or a dict, not {type(data).__name__}")


def partition_key(event: Event) -> str:
    """Kinesis partition key: ``session_id`` for web.* events, else ``store_id``."""
    if isinstance(event, WebEvent):
        return event.session_id
    return event.store_id


# --- reasons -----------------------------------------------------------------------------------


def _cap(text: str, limit: int = MAX_REASON_LENGTH) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason(exc: ValidationError, data: object) -> str:
    errors = exc.errors(include_url=False)
    reason = _describe(errors[0], data)
    if len(errors) > 1:
        reason += f" (+{len(errors) - 1} more)"
    return reason


def _describe(error: Any, data: object) -> str:
    kind, loc = error["type"], error["loc"]
    if kind == "json_invalid":
        if isinstance(data, bytes | bytearray):
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"not valid UTF-8: {exc.reason} at byte {exc.start}"
        return f"not valid JSON: {error.get('ctx', {}).get('error', error['msg'])}"
    if kind in {"union_tag_not_found", "union_tag_invalid"}:
        return _envelope_problem(error["input"])
    schema = str(loc[0]).rpartition("/v")[0] if loc else "event"
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:])
    return f"{schema}{path}: {_message(kind, error.get('ctx') or {}, error['msg'])}"


def _envelope_problem(value: object) -> str:
    if not isinstance(value, dict):
        return f"event must be a JSON object, not {_json_type(value)}"
    if "schema" not in value:
        return "schema: missing"
    schema = value["schema"]
    if type(schema) is not str:
        return f"schema: must be a string, not {_json_type(schema)}"
    if "version" not in value:
        return "version: missing"
    version = value["version"]
    if type(version) is not int:
        return f"version: must be an integer, not {_json_type(version)}"
    shown = _cap(repr(schema), 80)
    if schema in _KNOWN_VERSIONS:
        known = ", ".join(map(str, _KNOWN_VERSIONS[schema]))
        return f"unknown version {_cap(str(version), 20)} of schema {shown} (known: {known})"
    return f"unknown schema {shown} version {_cap(str(version), 20)}"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _message(kind: str, ctx: dict[str, Any], default: str) -> str:
    match kind:
        case "missing":
            return "missing"
        case "extra_forbidden":
            return "unknown field"
        case "greater_than_equal":
            return f"must be >= {ctx['ge']}"
        case "greater_than":
            return f"must be > {ctx['gt']}"
        case "less_than_equal":
            return f"must be <= {ctx['le']}"
        case "less_than":
            return f"must be < {ctx['lt']}"
        case "string_too_short" | "too_short" if ctx.get("min_length") == 1:
            return "must not be empty"
        case "string_too_long":
            return f"must be at most {ctx['max_length']} characters"
        case "too_long":
            return f"must have at most {ctx['max_length']} items"
        case "string_pattern_mismatch":
            return _PATTERN_MESSAGES.get(ctx.get("pattern", ""), "has an invalid format")
        case "string_type":
            return "must be a string"
        case "int_type" | "int_parsing" | "int_from_float":
            return "must be an integer"
        case "literal_error":
            return f"must be {ctx['expected']}"
        case "timezone_aware":
            return "timezone missing"
        case "datetime_parsing" | "datetime_from_date_parsing" | "datetime_type":
            return "must be an ISO 8601 timestamp with a timezone"
        case "decimal_max_places":
            return f"must have at most {ctx['decimal_places']} decimal places"
        case "decimal_max_digits" | "decimal_whole_digits":
            return "too large"
        case "decimal_parsing" | "decimal_type":
            return 'must be a decimal string such as "19.99"'
        case "finite_number":
            return "must be a finite number"
        case "list_type" | "tuple_type":
            return "must be a list"
        case "model_type" | "model_attributes_type" | "dict_type":
            return "must be an object"
        case _:
            return default
