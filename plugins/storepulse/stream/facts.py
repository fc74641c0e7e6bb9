"""Facts written once per business identity: orders, refunds, sessions, customer profiles.

A producer that resends an event after an ambiguous failure puts a second copy on the stream, at
another position. Facts are keyed by their business identity (order id, refund id, session id)
and remember the stream position that created them (``src``): the copy is recognised as a
duplicate and contributes nothing, while a retry of the *same* record (same position) after a
crash is recognised as our own earlier write and still counts.

Every event that adds to a number (orders and refunds too) is remembered by ``event_id`` in a
map on one item per store and second of event time (a resent copy carries the same time): one
small write per second a batch covers, shared by every session, sensor and till of the store,
instead of one item per event or per session. DynamoDB bills a write by the whole item's size,
so small items written about once beat a growing map rewritten by every batch. An order's
``event_id`` is caught there (a resend of that id with another order id), its order id by its
fact. The sessions a batch opens are remembered per shard, in one item per batch
(``storepulse.stream.sessions``).

Every claim keeps the content hash of its event (``Event.content_hash``, which leaves the
``event_id`` out). A copy with the same hash is a harmless duplicate; the same ``event_id``, or
a new ``event_id`` for an existing order or refund, with another hash is a *conflict*: the
record is quarantined with both hashes and counts nowhere, whichever copy is right.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from botocore.exceptions import ClientError

from storepulse import events as ev
from storepulse.aws import is_condition_failure
from storepulse.layout import (
    ORDER_TTL,
    SEEN_TTL,
    Key,
    customer_profile_key,
    event_key,
    expires_at,
    local_date,
    order_key,
    orders_of_day,
    refund_key,
    seen_events_key,
    session_key,
)
from storepulse.settings import Catalog
from storepulse.stream.aggregate import Located
from storepulse.stream.batch_io import batch_get, batch_put
from storepulse.stream.sessions import SessionMemory


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


# A group item stops remembering new event ids at this size (about 140 bytes each, well under
# DynamoDB's 400 KB item limit); later events of a session of this length (a bot) or of such a
# store-hour still count, but a resent copy of them would count again.
MAX_EVENTS_PER_ITEM = 2500


@dataclass(frozen=True)
class Conflict:
    """A record whose identity was already counted with other content: quarantined, never
    counted. ``details`` names the identity and both content hashes."""

    position: str
    reason: str
    details: dict[str, str]


@dataclass
class ClaimResult:
    duplicates: set[str] = field(default_factory=set)  # positions of resent copies
    conflicts: dict[str, Conflict] = field(default_factory=dict)  # by position
    new_sessions: set[str] = field(default_factory=set)  # positions that open a session
    # What ``write_claims`` writes: facts, event logs, then the sessions the batch opened.
    to_write: list[dict[str, Any]] = field(default_factory=list)
    session_items: list[dict[str, Any]] = field(default_factory=list)

    def counted(self, position: str) -> bool:
        return position not in self.duplicates and position not in self.conflicts


@dataclass(frozen=True)
class _Holder:
    """Who holds a claim: the stream position of the record that made it and the content hash
    of its event ("" for claims written before hashes were kept)."""

    src: str
    hash: str

    @classmethod
    def parse(cls, value: str) -> _Holder:
        src, _, content_hash = value.partition(" ")
        return cls(_compact(src), content_hash)

    def __str__(self) -> str:
        return f"{_compact(self.src)} {self.hash}"


def _compact(src: str) -> str:
    """``<shard>:<position>`` without the position's zero padding nor the shard id's (Kinesis
    names shards ``shardId-`` and 12 digits: ``shardId-000000000012`` is ``12``): half an
    event log entry's bytes (DynamoDB bills the log's write by its whole size). Entries
    written longer before read the same: both sides of a comparison are compacted."""
    shard_id, _, position = src.rpartition(":")
    return f"{_short_shard(shard_id)}:{position.lstrip('0') or '0'}" if shard_id else src


def _short_shard(shard_id: str) -> str:
    number = shard_id.removeprefix("shardId-")
    return str(int(number)) if number != shard_id and number.isdigit() else shard_id


NEW, OURS, DUPLICATE = "new", "ours", "duplicate"


def _verdict(item: Located, holder: _Holder | None, identity: str) -> str | Conflict:
    """``item`` against the holder of one of its claims: NEW (nobody holds it), OURS (an
    earlier attempt of this batch), DUPLICATE (a resent copy: same content) or a Conflict."""
    if holder is None:
        return NEW
    if _compact(holder.src) == _compact(_src(item)):
        return OURS
    content_hash = item.event.content_hash
    if holder.hash in ("", content_hash):
        return DUPLICATE
    return Conflict(
        item.position,
        f"conflict: {identity} was counted with content hash {holder.hash} "
        f"(record {holder.src}); this record's content hash is {content_hash}",
        {"identity": identity, "counted_hash": holder.hash, "hash": content_hash},
    )


def _note(result: ClaimResult, position: str, verdicts: list[str | Conflict]) -> bool:
    """Record a refused record (a conflict wins over a duplicate); True if it counts."""
    if conflict := next((v for v in verdicts if isinstance(v, Conflict)), None):
        result.conflicts[position] = conflict
    elif DUPLICATE in verdicts:
        result.duplicates.add(position)
    else:
        return True
    return False


@dataclass(frozen=True)
class _Claim:
    """A fact keyed by a business identity (an order, a refund)."""

    key: Key
    identity: str  # e.g. "order_id 'o-1'", for the conflict's reason
    attributes: dict[str, Any]


@dataclass
class _EventLog:
    """One item that remembers events by ``event_id`` (``event_srcs``: id -> holder)."""

    key: Key
    attributes: dict[str, Any]  # the item's own attributes, rewritten with the map
    members: list[Located] = field(default_factory=list)


def _event_log(item: Located) -> _EventLog:
    """The item of the event's store and second, where its ``event_id`` is remembered for
    SEEN_TTL: the plausibility window quarantines an older copy anyway. (Past it, in a widened
    backfill, an order's resend is still caught by its order id, not by its event id.)"""
    event = item.event
    attributes = {
        "type": "seen",
        "store_id": event.store_id,
        "expires_at": expires_at(event.occurred_at, SEEN_TTL),
    }
    return _EventLog(seen_events_key(event.store_id, event.occurred_at), attributes)


def _remembered(item: Located) -> bool:
    """Whether the event's ``event_id`` is remembered (everything that adds to a number)."""
    return isinstance(
        item.event,
        ev.WebEvent
        | ev.StoreFootTrafficV1
        | ev.SocialMetricsV1
        | ev.InventoryAdjustmentV1
        | ev.PosSaleV1
        | ev.PosRefundV1,
    )


def _fact_claim(item: Located, catalog: Catalog) -> _Claim | None:
    """An order's or a refund's claim of its business identity."""
    match item.event:
        case ev.PosSaleV1() as sale:
            return _Claim(
                order_key(sale.order_id),
                f"order_id {sale.order_id!r}",
                _without_nulls(order_fact(sale, catalog)),
            )
        case ev.PosRefundV1() as refund:
            return _Claim(
                refund_key(refund.refund_id),
                f"refund_id {refund.refund_id!r}",
                _without_nulls(refund_fact(refund, catalog)),
            )
    return None


def plan_claims(
    items: Iterable[Located], catalog: Catalog
) -> tuple[dict[str, _Claim], list[_EventLog]]:
    """The fact claim of each order and refund (by position) and the event logs (a store's
    second) that remember the ``event_id`` of every event that adds to a number. Pure: the
    processor also runs it on one record alone to find a record it cannot file."""
    claims: dict[str, _Claim] = {}
    logs: dict[Key, _EventLog] = {}
    for item in items:
        if (claim := _fact_claim(item, catalog)) is not None:
            claims[item.position] = claim
        if _remembered(item):
            log = _event_log(item)
            logs.setdefault(log.key, log).members.append(item)
    return claims, list(logs.values())


def _sort_claims(
    claims: Mapping[str, _Claim],
    logs: Iterable[_EventLog],
    existing: Mapping[Key, dict[str, Any]],
    result: ClaimResult,
    earlier: Mapping[str, str] = MappingProxyType({}),
) -> list[dict[str, Any]]:
    """Sort the records (in stream order) into counted, duplicates and conflicts; return the
    items to write: the facts of counted orders and refunds, and every event log that learnt
    an ``event_id``. A record counts only if its event id and its fact are each new or its
    own; a later record of the batch sees the claims of the earlier ones. ``earlier``: holders
    remembered by earlier releases (``EVENT#`` claims, session maps) by event id, so a copy
    of an event counted then is still found."""
    logs = list(logs)
    log_of = {item.position: log for log in logs for item in log.members}
    known = {log.key: dict((existing.get(log.key) or {}).get("event_srcs") or {}) for log in logs}
    holders = {
        key: _Holder(str(found.get("src", "")), str(found.get("hash", "")))
        for key, found in existing.items()
        if "src" in found
    }
    members = {item.position: item for log in logs for item in log.members}
    learnt: set[Key] = set()
    to_write = []
    for position in sorted(members):
        item, log, fact = members[position], log_of[position], claims.get(position)
        event_id = item.event.event_id
        seen = known[log.key].get(event_id) or earlier.get(event_id)
        by_id = _verdict(item, _Holder.parse(seen) if seen else None, f"event_id {event_id!r}")
        by_fact = _verdict(item, holders.get(fact.key), fact.identity) if fact else None
        if not _note(result, position, [v for v in (by_id, by_fact) if v is not None]):
            continue
        holder = _Holder(_src(item), item.event.content_hash)
        if by_id == NEW and len(known[log.key]) < MAX_EVENTS_PER_ITEM:
            known[log.key][event_id] = str(holder)
            learnt.add(log.key)
        if fact is not None:
            holders[fact.key] = holder
            if by_fact == NEW:  # OURS: an earlier attempt of this batch wrote it
                written = {"src": holder.src, "hash": holder.hash}
                to_write.append({**fact.key.as_item(), **fact.attributes, **written})
    for log in logs:
        if log.key in learnt:
            to_write.append({**log.key.as_item(), **log.attributes, "event_srcs": known[log.key]})
    return to_write


def _open_sessions(
    items: Iterable[Located], known: Mapping[str, str], result: ClaimResult
) -> dict[str, str]:
    """A session opens with its first counted web event, whose position the shard remembers
    (``known``: session id -> ``<shard>:<position>`` of the record that opened it): a retry of
    that record opens it again, nothing else does. Returns the sessions opened for the first
    time: session id -> position."""
    firsts: dict[str, Located] = {}
    for item in sorted(items, key=lambda i: i.position):
        if isinstance(item.event, ev.WebEvent) and result.counted(item.position):
            firsts.setdefault(item.event.session_id, item)
    opened = {}
    for session_id, first in firsts.items():
        src = known.get(session_id)
        if src is not None and _compact(src) != _compact(_src(first)):
            continue
        result.new_sessions.add(first.position)
        if src is None:
            opened[session_id] = first.position
    return opened


def _session_keys(items: Iterable[Located]) -> list[Key]:
    return [session_key(i.event.session_id) for i in items if isinstance(i.event, ev.WebEvent)]


def claim_facts(
    dynamodb: Any,
    table: Any,
    items: Iterable[Located],
    catalog: Catalog,
    sessions: SessionMemory,
    arrived_at: datetime,
) -> ClaimResult:
    """Decide which records are resent copies, which are conflicts, and which open a new
    session (the batch arrived at ``arrived_at``), and which order and refund facts, event logs
    and sessions to write: ``write_claims`` writes them. The caller may write them beside the
    counter writes: both are idempotent per record (a retry finds its own claims "ours", the
    counters' watermarks skip what landed), so their order does not matter, only that both
    landed before the batch succeeds.

    Read, then write: one BatchGetItem per 100 items and one BatchWriteItem per 25 changed ones.
    A fact, an event log of orders or foot traffic and a shard's sessions have one writer at a
    time: their records share a partition key (store or session), hence a shard, processed by
    one invocation at a time. An event log holding web events is the exception (sessions go
    to several shards): two shards writing the same store-second at the same moment can lose
    each other's event ids (their resent copies would count again; nothing counts twice)."""
    items = {item.position: item for item in items}
    claims, logs = plan_claims(items.values(), catalog)
    web = _session_keys(items.values())
    # Releases before 2026-12 claimed an order's event id in an item of its own (``EVENT#``)
    # and marked each session in one (``SESSION#``): read them (a read unit, not a write), so a
    # resend of such an order or a session they opened is still found. Useless once the
    # plausibility window has passed since the upgrade on every deployed table.
    legacy = [event_key(items[p].event.event_id) for p in claims]
    keys = [c.key for c in claims.values()] + [log.key for log in logs] + web + legacy
    shard_id = next(iter(items.values())).shard_id if items else ""
    # One round trip after the other: moto's Query iterates the table while a concurrent
    # BatchGetItem of a missing key inserts into it (RuntimeError in the embedded AWS).
    shard_opened = sessions.openings(shard_id, arrived_at) if web else {}
    existing = batch_get(dynamodb, table.name, keys, ("src", "hash", "event_srcs"))
    markers = {key: existing[key] for key in web if key in existing}
    earlier = {i: h for m in markers.values() for i, h in (m.get("event_srcs") or {}).items()}
    for key in legacy:
        if (found := existing.pop(key, None)) is not None:
            earlier[key.pk.removeprefix("EVENT#")] = str(
                _Holder(str(found.get("src", "")), str(found.get("hash", "")))
            )
    result = ClaimResult()
    to_write = _sort_claims(claims, logs, existing, result, earlier)
    session_items: list[dict[str, Any]] = []
    if web:
        known = {k.pk.removeprefix("SESSION#"): str(m.get("src", "")) for k, m in markers.items()}
        known.update(shard_opened)
        opened = _open_sessions(items.values(), known, result)
        session_items = sessions.records(shard_id, opened, arrived_at)
    result.to_write, result.session_items = to_write + session_items, session_items
    return result


def write_claims(table: Any, sessions: SessionMemory, shard_id: str, claims: ClaimResult) -> None:
    """Write what ``claim_facts`` decided; the container remembers the sessions once written."""
    batch_put(table, claims.to_write)
    if claims.session_items:
        sessions.learn(shard_id, claims.session_items)


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
            if not is_condition_failure(exc):
                raise
    return written
