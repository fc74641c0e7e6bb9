"""Facts written once per business identity: orders, refunds, sessions, customer profiles.

A producer that resends an event after an ambiguous failure puts a second copy on the stream, at
another position. Facts are keyed by their business identity (order id, refund id, session id)
and remember the stream position that created them (``src``): the copy is recognised as a
duplicate and contributes nothing, while a retry of the *same* record (same position) after a
crash is recognised as our own earlier write and still counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from storepulse import events as ev
from storepulse.layout import (
    ORDER_TTL,
    SESSION_TTL,
    Key,
    customer_profile_key,
    expires_at,
    local_date,
    order_key,
    orders_of_day,
    refund_key,
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


@dataclass(frozen=True)
class _Claim:
    position: str
    key: Key
    src: str
    attributes: dict[str, Any]
    is_session: bool = False


def _claims(items: Iterable[Located], catalog: Catalog) -> list[_Claim]:
    claims, sessions_seen = [], set()
    for item in items:
        match item.event:
            case ev.PosSaleV1() as sale:
                claims.append(
                    _Claim(
                        item.position,
                        order_key(sale.order_id),
                        _src(item),
                        _without_nulls(order_fact(sale, catalog)),
                    )
                )
            case ev.PosRefundV1() as refund:
                claims.append(
                    _Claim(
                        item.position,
                        refund_key(refund.refund_id),
                        _src(item),
                        _without_nulls(refund_fact(refund, catalog)),
                    )
                )
            case ev.WebEvent() as web if web.session_id not in sessions_seen:
                # The session's first record in the batch claims it (the same one on a retry).
                sessions_seen.add(web.session_id)
                marker = {
                    "type": "session",
                    "store_id": web.store_id,
                    "expires_at": expires_at(web.occurred_at, SESSION_TTL),
                }
                claims.append(
                    _Claim(
                        item.position,
                        session_key(web.session_id),
                        _src(item),
                        marker,
                        is_session=True,
                    )
                )
    return claims


def claim_facts(
    dynamodb: Any, table: Any, items: Iterable[Located], catalog: Catalog
) -> tuple[set[str], set[str]]:
    """Write order, refund and session facts; return (positions of duplicate records,
    positions of the records that open a new session).

    Read, then write: one BatchGetItem per 100 facts and one BatchWriteItem per 25 new ones.
    No other writer can create these facts meanwhile: a fact's records share a partition key
    (store or session), hence a shard, and a shard is processed by one invocation at a time."""
    claims = _claims(items, catalog)
    existing = batch_get(dynamodb, table.name, [c.key for c in claims], projection="#pk, #sk, src")
    duplicates, new_sessions, to_write, claimed = set(), set(), [], set()
    for claim in claims:
        found = existing.get(claim.key)
        ours = claim.key not in claimed and (found is None or found.get("src") == claim.src)
        if not ours:
            if not claim.is_session:
                duplicates.add(claim.position)
            continue
        claimed.add(claim.key)
        if claim.is_session:
            new_sessions.add(claim.position)
        if found is None:  # found with our src: an earlier attempt of this batch wrote it
            to_write.append({**claim.key.as_item(), **claim.attributes, "src": claim.src})
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
