"""Facts written once per business identity: orders, refunds, sessions, customer profiles.

A producer that resends an event after an ambiguous failure puts a second copy on the stream, at
another position. Facts are keyed by their business identity (order id, refund id, session id)
and remember the stream position that created them (``src``): the copy is recognised as a
duplicate and contributes nothing, while a retry of the *same* record (same position) after a
crash is recognised as our own earlier write and still counts.

Events that only add to counters (page views and funnel steps, foot traffic, stock adjustments)
are remembered the same way, by ``event_id``, in a map on one item per group: the session's
marker for web events, the store's hour for the others. That is one write per group and batch,
not one per event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from storepulse import events as ev
from storepulse.layout import (
    ORDER_TTL,
    SEEN_TTL,
    SESSION_TTL,
    Key,
    customer_profile_key,
    expires_at,
    local_date,
    order_key,
    orders_of_day,
    refund_key,
    seen_events_key,
    session_key,
)
from storepulse.stream.aggregate import Located
from storepulse.stream.batch_io import batch_get, batch_put
from storepulse.stream.catalog import Catalog


def _src(item: Located) -> str:
    return f"{item.shard_id}:{item.position}"


def order_fact(sale: ev.PosSaleV1, catalog: Catalog) -> dict[str, Any]:
    day = local_date(sale.occurred_at, catalog.stores[sale.store_id].timezone)
    return {
        "type": "order",
        "order_id": sale.order_id,
        "event_id": sale.event_id,
        "store_id": sale.store_id,
        "business_date": day.isoformat(),
        "occurred_at": sale.occurred_at.isoformat(),
        "channel": sale.channel,
        "currency": sale.currency,
        "customer_id": sale.customer_id,
        "employee_id": sale.employee_id,
        "total": sale.total,
        "units": sale.units,
        "lines": [
            {
                "sku": line.sku,
                "category": line.category,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
            }
            for line in sale.lines
        ],
        "gsi1pk": orders_of_day(day),
        "gsi1sk": f"{sale.store_id}#ORDER#{sale.order_id}",
        "expires_at": expires_at(sale.occurred_at, ORDER_TTL),
    }


def refund_fact(refund: ev.PosRefundV1, catalog: Catalog) -> dict[str, Any]:
    day = local_date(refund.occurred_at, catalog.stores[refund.store_id].timezone)
    return {
        "type": "refund",
        "refund_id": refund.refund_id,
        "order_id": refund.order_id,
        "event_id": refund.event_id,
        "store_id": refund.store_id,
        "business_date": day.isoformat(),
        "occurred_at": refund.occurred_at.isoformat(),
        "currency": refund.currency,
        "amount": refund.amount,
        "reason": refund.reason,
        "lines": [{"sku": line.sku, "quantity": line.quantity} for line in refund.lines or ()],
        "gsi1pk": orders_of_day(day),
        "gsi1sk": f"{refund.store_id}#REFUND#{refund.refund_id}",
        "expires_at": expires_at(refund.occurred_at, ORDER_TTL),
    }


def _without_nulls(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if v is not None}


# A group item stops remembering new event ids at this size (about 115 bytes each, well under
# DynamoDB's 400 KB item limit); later events of a session of this length (a bot) or of such a
# store-hour still count, but a resent copy of them would count again.
MAX_EVENTS_PER_ITEM = 2500


@dataclass(frozen=True)
class _Claim:
    """A fact keyed by its business identity (an order, a refund), created by one record."""

    position: str
    key: Key
    src: str
    attributes: dict[str, Any]


@dataclass
class _EventLog:
    """One item that remembers events by ``event_id`` (``event_srcs``: id -> stream position)."""

    key: Key
    attributes: dict[str, Any]  # the item's own attributes, rewritten with the map
    opens_session: bool = False
    members: list[Located] = field(default_factory=list)


def _event_log(item: Located) -> _EventLog | None:
    match item.event:
        case ev.WebEvent() as web:
            marker = {
                "type": "session",
                "store_id": web.store_id,
                "expires_at": expires_at(web.occurred_at, SESSION_TTL),
            }
            return _EventLog(session_key(web.session_id), marker, opens_session=True)
        case ev.StoreFootTrafficV1() | ev.InventoryAdjustmentV1() as event:
            attributes = {
                "type": "seen",
                "store_id": event.store_id,
                "expires_at": expires_at(event.occurred_at, SEEN_TTL),
            }
            return _EventLog(seen_events_key(event.store_id, event.occurred_at), attributes)
    return None


def _claims(items: Iterable[Located], catalog: Catalog) -> tuple[list[_Claim], list[_EventLog]]:
    claims: list[_Claim] = []
    logs: dict[Key, _EventLog] = {}
    for item in items:
        match item.event:
            case ev.PosSaleV1() as sale:
                attributes = _without_nulls(order_fact(sale, catalog))
                key = order_key(sale.order_id)
                claims.append(_Claim(item.position, key, _src(item), attributes))
            case ev.PosRefundV1() as refund:
                attributes = _without_nulls(refund_fact(refund, catalog))
                key = refund_key(refund.refund_id)
                claims.append(_Claim(item.position, key, _src(item), attributes))
            case _ if (log := _event_log(item)) is not None:
                logs.setdefault(log.key, log).members.append(item)
    return claims, list(logs.values())


def _claim_events(
    log: _EventLog,
    found: dict[str, Any] | None,
    duplicates: set[str],
    new_sessions: set[str],
) -> dict[str, Any] | None:
    """Sort the log's records into ours and resent copies (added to ``duplicates``); return the
    item to write if it learnt an event id."""
    known: dict[str, str] = dict((found or {}).get("event_srcs") or {})
    learnt = False
    for item in log.members:
        seen_at = known.get(item.event.event_id)
        if seen_at is None and len(known) < MAX_EVENTS_PER_ITEM:
            known[item.event.event_id] = _src(item)
            learnt = True
        elif seen_at is not None and seen_at != _src(item):
            duplicates.add(item.position)
    originals = [m for m in log.members if m.position not in duplicates]
    if not originals:
        return None
    opener = found.get("src") if found else _src(originals[0])
    if log.opens_session and opener == _src(originals[0]):
        # The session's first record opens it (the same one again on a retry of the batch).
        new_sessions.add(originals[0].position)
    if not learnt:
        return None
    item = {**log.key.as_item(), **log.attributes, "event_srcs": known}
    return item | {"src": opener} if log.opens_session else item


def claim_facts(
    dynamodb: Any, table: Any, items: Iterable[Located], catalog: Catalog
) -> tuple[set[str], set[str]]:
    """Write order and refund facts and the event logs; return (positions of duplicate records,
    positions of the records that open a new session).

    Read, then write: one BatchGetItem per 100 items and one BatchWriteItem per 25 changed ones.
    No other writer can change these items meanwhile: an item's records share a partition key
    (store or session), hence a shard, and a shard is processed by one invocation at a time."""
    claims, logs = _claims(items, catalog)
    keys = [c.key for c in claims] + [log.key for log in logs]
    existing = batch_get(dynamodb, table.name, keys, ("src", "event_srcs"))
    duplicates: set[str] = set()
    new_sessions: set[str] = set()
    to_write, claimed = [], set()
    for claim in claims:
        found = existing.get(claim.key)
        if claim.key in claimed or (found is not None and found.get("src") != claim.src):
            duplicates.add(claim.position)
            continue
        claimed.add(claim.key)
        if found is None:  # found with our src: an earlier attempt of this batch wrote it
            to_write.append({**claim.key.as_item(), **claim.attributes, "src": claim.src})
    for log in logs:
        item = _claim_events(log, existing.get(log.key), duplicates, new_sessions)
        if item is not None:
            to_write.append(item)
    batch_put(table, to_write)
    return duplicates, new_sessions


def write_profiles(table: Any, profiles: Iterable[ev.CrmCustomerProfileV1]) -> int:
    """Upsert customer profiles, newest event time wins (late events never overwrite newer)."""
    written = 0
    for profile in profiles:
        try:
            table.put_item(
                Item={
                    **customer_profile_key(profile.customer_id).as_item(),
                    "type": "customer",
                    "customer_id": profile.customer_id,
                    "store_id": profile.store_id,
                    "age_band": profile.age_band,
                    "region": profile.region,
                    "segment": profile.segment,
                    "updated_at": profile.occurred_at.isoformat(),
                },
                ConditionExpression="attribute_not_exists(pk) OR updated_at <= :at",
                ExpressionAttributeValues={":at": profile.occurred_at.isoformat()},
            )
            written += 1
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
    return written


def log_alert(table: Any, key: Key, sent_at: datetime, attributes: dict[str, Any]) -> None:
    table.put_item(
        Item={**key.as_item(), "type": "alert", "sent_at": sent_at.isoformat(), **attributes}
    )
