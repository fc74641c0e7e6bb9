"""The DynamoDB key layout and the metric catalogue: one definition, imported by the Lambda
handler, the exporter, the quality suites, the CLIs and the dashboard.

Tables (names ``storepulse-<env>-<table>``):

``metrics``    counters per time bucket and dimension. ``pk`` groups what one query reads:
               ``<scope>#MIN#<local date>``  sk ``2026-11-26T10:15Z``  (UTC minute)
               ``<scope>#HOUR#<local date>`` sk ``2026-11-26T10Z``     (UTC hour)
               ``<scope>#DAY#<local year>``  sk ``2026-11-26``          (local date)
               ``<scope>#MIX#<local year>``  sk ``2026-11-26`` (+ ``#2``, ``#3`` ...): the day's
               sales mix, attributes ``cat#<category>#revenue|units`` and
               ``sku#<sku>#revenue|units``; read every item whose sk begins with the date and
               sum (a batch with very many products spreads its counters over several items)
               where scope is ``S#<store_id>``. The whole business (scope ``ALL``) is the sum of
               its stores, read through ``store_keys``: the stream wrote ``ALL`` items too
               before 2026-12 (still in old tables, read by nothing).
``inventory``  pk ``S#<store_id>``: a store's stock levels packed into a fixed number of level
               items (sk ``#LV#<n>``, map ``lv`` of sku -> level), and that number (sk
               ``#SHARDS``); read and written only through ``storepulse.stock_levels`` (before
               2026-12: one item per sku, sk the sku, moved by ``stock_levels.migrate``).
``facts``      orders (``ORDER#<id>``), refunds, customer profiles (``CUSTOMER#<id>``; repeat
               purchases come from the orders' customer_id), the sessions each shard opened
               (``SESSIONS#<shard_id>``, sk the batch's first opening position; before 2026-12
               one ``SESSION#<id>`` marker per session), the alert log; order
               and refund facts carry ``gsi1pk = ORDERS#<local date>`` for the nightly export and
               ``expires_at`` (TTL). Events that are not facts themselves (web events, foot
               traffic, stock adjustments; orders and refunds too) are remembered by
               ``event_id`` (map ``event_srcs``) in ``SEEN#<store_id>#<UTC second>``, so a
               resent copy counts once (``EVENT#<event_id>``: an order's claim before 2026-12).
               Every claim keeps the content hash of the event that made it, so a resend
               with other content is told apart (a conflict) from a harmless duplicate.
``settings``   pk = kind (``BUSINESS``, ``STORE``, ``PRODUCT``, ``EMPLOYEE``, ``ALERT_RULE``,
               ``KPI``, ``ALERT_STATE``, ``DASHBOARD_ACCESS``), sk = id.

Buckets follow *event time*: a minute or hour is a UTC interval, filed under the store's *local*
date (its time zone), which is the business day of daily numbers and of the nightly export.
Exactly-once: every counter item records, per Kinesis shard, the sequence number of the last record
applied to it (``wm_<shard>``); see ``storepulse.stream.writer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from storepulse.config import settings

ALL_STORES = "ALL"
ORDER_TTL = timedelta(days=400)  # order facts outlive a year of nightly re-exports
SESSION_TTL = timedelta(days=2)  # session markers of releases before 2026-12 (still read)
# A shard remembers the web sessions it opened for this long after the opening record arrived: a
# later event of a session (longer than that, or synced that late) opens it again.
SESSION_WINDOW = timedelta(hours=4)
SEEN_TTL = timedelta(days=7)  # how long a resent counter event (web, foot traffic, stock) is caught
MINUTE_TTL = timedelta(days=35)  # minute buckets serve "today" and week-over-week comparisons


class Table(StrEnum):
    METRICS = "metrics"
    INVENTORY = "inventory"
    FACTS = "facts"
    SETTINGS = "settings"


def table_name(table: Table) -> str:
    return settings().resource_name(table.value)


@dataclass(frozen=True)
class TableSpec:
    """Key schema of a table: every table has string keys ``pk`` and ``sk``."""

    table: Table
    gsi1: bool = False  # index "gsi1" on (gsi1pk, gsi1sk), projecting all attributes
    ttl_attribute: str | None = None
    stream: bool = False  # NEW_AND_OLD_IMAGES stream, read by the change capture (the lake)

    def create_table_kwargs(self, name: str) -> dict[str, Any]:
        """Arguments of ``CreateTable`` (on-demand billing), for local provisioning and tests;
        the CloudFormation template declares the same (checked by a test)."""
        keys = ["pk", "sk"] + (["gsi1pk", "gsi1sk"] if self.gsi1 else [])
        kwargs: dict[str, Any] = {
            "TableName": name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": k, "AttributeType": "S"} for k in keys],
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
        }
        if self.stream:
            kwargs["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            }
        if self.gsi1:
            kwargs["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": "gsi1",
                    "KeySchema": [
                        {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                        {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ]
        return kwargs


TABLE_SPECS = {
    Table.METRICS: TableSpec(Table.METRICS, ttl_attribute="expires_at", stream=True),
    Table.INVENTORY: TableSpec(Table.INVENTORY, stream=True),
    Table.FACTS: TableSpec(Table.FACTS, gsi1=True, ttl_attribute="expires_at", stream=True),
    Table.SETTINGS: TableSpec(Table.SETTINGS),
}


class Grain(StrEnum):
    MINUTE = "MIN"
    HOUR = "HOUR"
    DAY = "DAY"


# The metric catalogue: every counter a time bucket holds. Money counters are Decimal.
MONEY_COUNTERS = ("revenue", "refund_amount")
COUNT_COUNTERS = (
    "orders",
    "units",
    "refunds",
    "sessions",
    "page_views",
    "add_to_carts",
    "checkouts",
    "purchases",
    "foot_traffic",
)
COUNTERS = MONEY_COUNTERS + COUNT_COUNTERS
MIX_COUNTERS = ("revenue", "units")  # per category and per product (sku), in the day's mix item
# DynamoDB caps an update expression at 4 KB: about 400 "#aN :aN" terms. Past this many counters
# a mix write spreads over several items of the same day.
MAX_COUNTERS_PER_WRITE = 300


class SettingsKind(StrEnum):
    BUSINESS = "BUSINESS"  # one item, sk "profile": name, timezone and currency of the business
    STORE = "STORE"
    PRODUCT = "PRODUCT"
    EMPLOYEE = "EMPLOYEE"
    ALERT_RULE = "ALERT_RULE"
    KPI = "KPI"
    ALERT_STATE = "ALERT_STATE"
    DASHBOARD_ACCESS = "DASHBOARD_ACCESS"  # who sees which stores (storepulse.dashboard.access)


@dataclass(frozen=True)
class Key:
    pk: str
    sk: str

    def as_item(self) -> dict[str, str]:
        return {"pk": self.pk, "sk": self.sk}


def scope(store_id: str | None) -> str:
    return f"S#{store_id}" if store_id else ALL_STORES


@cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_date(moment: datetime, timezone: str) -> date:
    """The business day of ``moment`` for a store in ``timezone``."""
    return moment.astimezone(zone(timezone)).date()


def day_start(day: date, timezone: str) -> datetime:
    """Local midnight of ``day`` in ``timezone``, in UTC: where its business day begins."""
    return _at_local(day, time(0), timezone)


def comparison_cutoffs(day: date, as_of: datetime, timezone: str) -> tuple[datetime, datetime]:
    """The same local time as ``as_of`` one day and one week before ``day``: how far yesterday
    and last week count when today so far is compared with them."""
    clock = as_of.astimezone(zone(timezone)).time().replace(tzinfo=None)
    return (
        _at_local(day - timedelta(days=1), clock, timezone),
        _at_local(day - timedelta(days=7), clock, timezone),
    )


def _at_local(day: date, clock: time, timezone: str) -> datetime:
    return datetime.combine(day, clock, tzinfo=zone(timezone)).astimezone(UTC)


def utc_minute(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%MZ")


def utc_hour(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%HZ")


def bucket_keys(store_id: str | None, moment: datetime, timezone: str) -> dict[Grain, Key]:
    """The minute, hour and day bucket of ``moment`` for one scope (a store, or None for all)."""
    day = local_date(moment, timezone)
    prefix = scope(store_id)
    return {
        Grain.MINUTE: Key(f"{prefix}#MIN#{day.isoformat()}", utc_minute(moment)),
        Grain.HOUR: Key(hour_buckets(store_id, day), utc_hour(moment)),
        Grain.DAY: day_bucket_key(store_id, day),
    }


def store_keys(key: Key, timezones: Mapping[str, str]) -> list[Key]:
    """The stores' items that add up to ``key`` of the business scope (``ALL``), for stores by
    time zone. A minute or hour is a UTC interval: each store files it under its own local
    date (an hour that straddles a store's midnight, in a zone with a half-hour offset, is in
    two of its items). A day and its sales mix are each store's own business day of that date,
    the business's day exactly when the stores share its time zone. Another scope's key is
    returned as is."""
    scope_key, _, rest = key.pk.partition("#")
    grain = rest.split("#", 1)[0]
    if scope_key != ALL_STORES:
        return [key]
    if grain not in (Grain.MINUTE, Grain.HOUR):  # DAY, MIX: the same date in every store
        return [Key(f"{scope(s)}#{rest}", key.sk) for s in sorted(timezones)]
    pattern = "%Y-%m-%dT%H:%MZ" if grain == Grain.MINUTE else "%Y-%m-%dT%HZ"
    start = datetime.strptime(key.sk, pattern)
    last = start + (timedelta(minutes=59) if grain == Grain.HOUR else timedelta())
    return [
        Key(f"{scope(s)}#{grain}#{day.isoformat()}", key.sk)
        for s, timezone in sorted(timezones.items())
        for day in sorted({local_date(m.replace(tzinfo=UTC), timezone) for m in (start, last)})
    ]


def hour_buckets(store_id: str | None, day: date) -> str:
    """``pk`` of the hour buckets of one scope for a business day (already local)."""
    return f"{scope(store_id)}#{Grain.HOUR}#{day.isoformat()}"


def day_bucket_key(store_id: str | None, day: date) -> Key:
    """The day bucket of one scope for a business day (already local)."""
    return Key(f"{scope(store_id)}#DAY#{day.year}", day.isoformat())


def mix_key(store_id: str | None, day: date, part: int = 1) -> Key:
    """Item ``part`` (1, 2, ...) of a day's sales mix for a scope."""
    suffix = "" if part == 1 else f"#{part}"
    return Key(f"{scope(store_id)}#MIX#{day.year}", f"{day.isoformat()}{suffix}")


def mix_attribute(dimension: str, name: str, counter: str) -> str:
    """Counter of one category (``dimension="cat"``) or product (``"sku"``) in a mix item."""
    return f"{dimension}#{name}#{counter}"


SOCIAL_COUNTERS = ("mentions", "followers_gained", "followers_lost", "engagements")


def social_attribute(channel: str, counter: str) -> str:
    """Counter of one social channel in a store's minute, hour and day buckets."""
    return mix_attribute("social", channel, counter)


def order_key(order_id: str) -> Key:
    return Key(f"ORDER#{order_id}", "ORDER")


def refund_key(refund_id: str) -> Key:
    return Key(f"REFUND#{refund_id}", "REFUND")


def orders_of_day(day: date) -> str:
    """``gsi1pk`` of the order and refund facts of one business day (the export's query)."""
    return f"ORDERS#{day.isoformat()}"


def customer_profile_key(customer_id: str) -> Key:
    return Key(f"CUSTOMER#{customer_id}", "PROFILE")


def event_key(event_id: str) -> Key:
    """Where releases before 2026-12 claimed an order's or a refund's ``event_id`` (now in its
    store-second's ``SEEN`` item); still read, so a resend of such an order is found."""
    return Key(f"EVENT#{event_id}", "EVENT")


def session_key(session_id: str) -> Key:
    """A session's marker, written by releases before 2026-12 (one item per session); read
    until SESSION_TTL has passed since the upgrade."""
    return Key(f"SESSION#{session_id}", "SESSION")


def opened_sessions_key(shard_id: str, position: str) -> Key:
    """Sessions a shard opened in one batch, by the position of the first of them: one item
    per batch instead of one per session (``storepulse.stream.sessions``)."""
    return Key(f"SESSIONS#{shard_id}", position)


def seen_events_key(store_id: str, occurred_at: datetime) -> Key:
    """Where one store's events (orders, web, foot traffic, stock adjustments) of one second of
    event time are remembered: a second keeps the item small, and written by about one batch
    (DynamoDB bills a write by the whole item's size, not by what it adds)."""
    return Key(f"SEEN#{store_id}#{occurred_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}", "SEEN")


def alert_log_key(sent_at: datetime, rule_id: str, subject: str) -> Key:
    return Key(
        f"ALERTS#{sent_at.date().isoformat()}",
        f"{sent_at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#{rule_id}#{subject}",
    )


def settings_key(kind: SettingsKind, item_id: str) -> Key:
    return Key(kind.value, item_id)


def watermark_attribute(shard_id: str) -> str:
    """Attribute holding the last sequence number of ``shard_id`` applied to an item."""
    return f"wm_{shard_id}"


SEQUENCE_WIDTH = 64  # Kinesis sequence numbers have up to 56 digits; padded they sort as strings


def padded_sequence(sequence_number: str) -> str:
    return sequence_number.rjust(SEQUENCE_WIDTH, "0")


def expires_at(moment: datetime, ttl: timedelta) -> int:
    """DynamoDB TTL value (epoch seconds)."""
    return int((moment + ttl).timestamp())
