"""Business alerts from the rules in the settings table, published to SNS.

Rule types (``params`` in brackets, with the defaults ``storepulse.settings`` declares):

- ``low_stock``: an item's stock is at or below its reorder point (the product's, or
  ``reorder_point`` in params).
- ``traffic_spike``: the last ``window_minutes`` [5] of ``counter`` [page_views] reach ``ratio``
  [3] times the average window of the ``baseline_minutes`` [60] before, and at least
  ``min_count`` [30].
- ``sales_drop``: revenue of the last ``window_minutes`` [60] is below ``ratio`` [0.5] times the
  same window a week earlier, which had at least ``min_baseline`` [100] revenue.
- ``trend``: an hour of a store against its moving baseline (the same local hour of the same
  weekday over the last ``weeks``): see ``storepulse.stream.trends``.
- ``unknown_sku``: a SKU the catalogue does not know was sold or counted: reported once per SKU
  (a data problem, never a stock alert). Without such a rule a built-in one applies, so the
  problem is never silent; a rule with ``enabled`` false turns it off.

Windows end at the newest event time seen for the store (event time, not arrival). A cooldown per
rule and subject (a conditional write in the settings table) keeps one alert per
``cooldown_seconds``, and an alert about a ``period`` (a trend's hour) never goes out twice for
the same or an earlier period; messages carry ``type``, ``severity`` and ``store_id`` attributes so
subscribers can filter. The cooldown item also remembers, per shard, the last record of the batch
that alerted: a batch delivered again (a retry, a bisected half, or the re-delivery after a restore
or a replay, however late by the clock) never alerts again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Key as KeyCondition
from botocore.exceptions import ClientError

from storepulse.aws import is_condition_failure
from storepulse.clock import Clock, system_clock
from storepulse.layout import (
    ALL_STORES,
    Key,
    SettingsKind,
    alert_log_key,
    local_date,
    scope,
    settings_key,
    utc_minute,
    watermark_attribute,
)
from storepulse.settings import (
    AlertRuleSettings,
    Catalog,
    LowStockParams,
    SalesDropParams,
    TrafficSpikeParams,
)
from storepulse.stream.aggregate import StockWrite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    rule: AlertRuleSettings
    store_id: str
    subject: str  # what the alert is about within the store (a sku, "traffic", "sales")
    title: str
    details: dict[str, Any]
    # What the alert is about in time (a trend's UTC hour, ISO: sortable); the claim refuses the
    # same or an earlier period, whatever the cooldown. ``ONCE``: never again for the subject.
    period: str | None = None
    per_store: bool = True  # False: one cooldown for the subject across all stores

    def message(self, sent_at: datetime) -> dict[str, Any]:
        return {
            "type": self.rule.type,
            "severity": self.rule.severity,
            "rule_id": self.rule.rule_id,
            "store_id": self.store_id,
            "subject": self.subject,
            "title": self.title,
            "sent_at": sent_at.isoformat(),
            "details": self.details,
        }


ONCE = "once"  # an alert period that no later claim passes

# Reports unknown SKUs when the settings hold no ``unknown_sku`` rule.
BUILT_IN_UNKNOWN_SKU = AlertRuleSettings(
    rule_id="unknown-sku", type="unknown_sku", severity="warning", cooldown_seconds=3600
)


def low_stock_alerts(catalog: Catalog, stock_items: list[dict[str, Any]]) -> list[Alert]:
    """Known products only: an unknown SKU's level (negative, as nothing was ever counted) is
    a data problem, reported once by ``unknown_sku_alerts``."""
    alerts = []
    for rule in (r for r in catalog.rules if r.type == "low_stock"):
        override = rule.parameters(LowStockParams).reorder_point
        for item in stock_items:
            store_id, sku = item["store_id"], item["sku"]
            product = catalog.products.get(sku)
            if product is None:
                continue
            point = override if override is not None else product.reorder_point
            on_hand = int(item.get("on_hand", 0))
            if rule.applies_to(store_id) and on_hand <= point:
                alerts.append(
                    Alert(
                        rule,
                        store_id,
                        sku,
                        f"Low stock: {sku} at {store_id}",
                        {"sku": sku, "on_hand": on_hand, "reorder_point": point},
                    )
                )
    return alerts


def unknown_sku_alerts(catalog: Catalog, stock: Iterable[StockWrite]) -> list[Alert]:
    """One alert per SKU the batch sells, counts or adjusts that the catalogue lacks (the first
    store seen names it; the claim is per SKU, for all stores, and never expires)."""
    rules = [r for r in catalog.rules if r.type == "unknown_sku"] or [BUILT_IN_UNKNOWN_SKU]
    unknown: dict[str, str] = {}
    for write in sorted(stock, key=lambda w: (w.sku, w.store_id)):
        if write.sku not in catalog.products:
            unknown.setdefault(write.sku, write.store_id)
    return [
        Alert(
            rule,
            store_id,
            f"unknown-sku:{sku}",
            f"Unknown SKU {sku} at {store_id}: add it to the products (its stock is not tracked "
            "for alerts)",
            {"sku": sku, "first_seen_store_id": store_id},
            period=ONCE,
            per_store=False,
        )
        for sku, store_id in unknown.items()
        for rule in rules
        if rule.applies_to(store_id)
    ]


class MinuteSeries:
    """Sums of a counter over minute buckets of one store (reads the metrics table)."""

    def __init__(self, table: Any, catalog: Catalog) -> None:
        self.table, self.catalog = table, catalog

    def total(self, store_id: str, counter: str, start: datetime, end: datetime) -> Decimal:
        """Sum over the minutes in [start, end)."""
        timezone = self.catalog.stores[store_id].timezone
        days = {local_date(start, timezone), local_date(end - timedelta(minutes=1), timezone)}
        total = Decimal(0)
        for day in sorted(days):
            condition = KeyCondition("pk").eq(
                f"{scope(store_id)}#MIN#{day.isoformat()}"
            ) & KeyCondition("sk").between(
                utc_minute(start), utc_minute(end - timedelta(minutes=1))
            )
            for item in self.table.query(
                KeyConditionExpression=condition,
                ProjectionExpression="#c",
                ExpressionAttributeNames={"#c": counter},
            )["Items"]:
                total += Decimal(item.get(counter, 0))
        return total


def _window_end(latest: datetime) -> datetime:
    return latest.replace(second=0, microsecond=0) + timedelta(minutes=1)


def traffic_spike_alerts(
    catalog: Catalog, series: MinuteSeries, latest_by_store: dict[str, datetime]
) -> list[Alert]:
    alerts = []
    for rule in (r for r in catalog.rules if r.type == "traffic_spike"):
        params = rule.parameters(TrafficSpikeParams)
        window = timedelta(minutes=params.window_minutes)
        baseline = timedelta(minutes=params.baseline_minutes)
        counter = params.counter
        for store_id, latest in latest_by_store.items():
            if not rule.applies_to(store_id):
                continue
            end = _window_end(latest)
            current = series.total(store_id, counter, end - window, end)
            before = series.total(store_id, counter, end - window - baseline, end - window)
            average = before / (baseline // window)
            if current >= params.min_count and current >= params.ratio * max(average, Decimal(1)):
                alerts.append(
                    Alert(
                        rule,
                        store_id,
                        f"traffic:{counter}",
                        f"Traffic spike at {store_id}: {current} {counter} in "
                        f"{window.seconds // 60} min",
                        {
                            "counter": counter,
                            "current": str(current),
                            "baseline_average": str(average.quantize(Decimal("0.01"))),
                        },
                    )
                )
    return alerts


def sales_drop_alerts(
    catalog: Catalog, series: MinuteSeries, latest_by_store: dict[str, datetime]
) -> list[Alert]:
    alerts = []
    for rule in (r for r in catalog.rules if r.type == "sales_drop"):
        params = rule.parameters(SalesDropParams)
        window = timedelta(minutes=params.window_minutes)
        for store_id, latest in latest_by_store.items():
            if not rule.applies_to(store_id):
                continue
            end = _window_end(latest)
            current = series.total(store_id, "revenue", end - window, end)
            week_ago = series.total(
                store_id, "revenue", end - window - timedelta(days=7), end - timedelta(days=7)
            )
            if week_ago >= params.min_baseline and current < params.ratio * week_ago:
                alerts.append(
                    Alert(
                        rule,
                        store_id,
                        "sales",
                        f"Sales drop at {store_id}: {current} vs {week_ago} a week ago",
                        {"current": str(current), "week_ago": str(week_ago)},
                    )
                )
    return alerts


@dataclass(frozen=True)
class Origin:
    """The batch alerts come from: its shard and the positions of its first and last records."""

    shard_id: str
    first: str
    last: str


class AlertPublisher:
    """Claims the cooldown, publishes to SNS, and logs the alert for the dashboard."""

    def __init__(
        self,
        sns: Any,
        topic_arn: str,
        settings_table: Any,
        facts_table: Any,
        clock: Clock = system_clock,
    ) -> None:
        self.sns, self.topic_arn = sns, topic_arn
        self.settings_table, self.facts_table, self.clock = settings_table, facts_table, clock
        # Subjects alerted ONCE already (by this container or, as its claim said, another):
        # a SKU that stays unknown costs no claim per batch.
        self._done_once: set[Key] = set()

    def publish(self, alerts: list[Alert], origin: Origin | None = None) -> int:
        sent = 0
        for alert in alerts:
            once = self._cooldown_key(alert) if alert.period == ONCE else None
            if once in self._done_once:
                continue
            now = self.clock()
            message = self.send(alert, now, origin)
            if once is not None:
                self._done_once.add(once)
            if message is None:
                continue
            self.facts_table.put_item(
                Item={
                    **alert_log_key(
                        now, alert.rule.rule_id, f"{alert.store_id}#{alert.subject}"
                    ).as_item(),
                    **{k: v for k, v in message.items() if k != "details"},
                    "details": json.dumps(alert.details, default=str),
                }
            )
            log.info("alert sent: %s", alert.title)
            sent += 1
        return sent

    def send(
        self, alert: Alert, now: datetime, origin: Origin | None = None
    ) -> dict[str, Any] | None:
        """Claim the cooldown and publish, without logging the alert for the dashboard (the
        deploy's smoke alert uses this alone); the message, or None while in cooldown or when
        ``origin`` was already alerted on."""
        if not self._claim_cooldown(alert, now, origin):
            return None
        message = alert.message(now)
        try:
            self._send(alert, message)
        except Exception:
            # Give the cooldown back, so the retried batch sends the alert after all.
            self._release_cooldown(alert)
            raise
        return message

    def _send(self, alert: Alert, message: dict[str, Any]) -> None:
        self.sns.publish(
            TopicArn=self.topic_arn,
            Subject=alert.title[:100],
            Message=json.dumps(message, default=str),
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value}
                for name, value in (
                    ("type", alert.rule.type),
                    ("severity", alert.rule.severity),
                    ("store_id", alert.store_id),
                )
            },
        )

    @staticmethod
    def _cooldown_key(alert: Alert) -> Key:
        store = alert.store_id if alert.per_store else ALL_STORES
        return settings_key(
            SettingsKind.ALERT_STATE, f"{alert.rule.rule_id}#{store}#{alert.subject}"
        )

    def _release_cooldown(self, alert: Alert) -> None:
        self.settings_table.delete_item(Key=self._cooldown_key(alert).as_item())

    def _claim_cooldown(self, alert: Alert, now: datetime, origin: Origin | None) -> bool:
        cutoff = now - timedelta(seconds=alert.rule.cooldown_seconds)
        update, condition = "SET last_sent_at = :now", "last_sent_at < :cutoff"
        values = {":now": now.isoformat(), ":cutoff": cutoff.isoformat()}
        names = {}
        if origin is not None:
            # The clock alone would let a re-delivery that comes after the cooldown alert again.
            update += ", #wm = :last"
            condition += " AND (attribute_not_exists(#wm) OR #wm < :first)"
            names["#wm"] = watermark_attribute(origin.shard_id)
            values |= {":first": origin.first, ":last": origin.last}
        if alert.period is not None:
            # A trend's hour is judged by many batches (and containers): it alerts once.
            update += ", #period = :period"
            condition += " AND (attribute_not_exists(#period) OR #period < :period)"
            names["#period"] = "last_period"
            values[":period"] = alert.period
        try:
            self.settings_table.update_item(
                Key=self._cooldown_key(alert).as_item(),
                UpdateExpression=update,
                ConditionExpression=f"attribute_not_exists(pk) OR ({condition})",
                ExpressionAttributeValues=values,
                **({"ExpressionAttributeNames": names} if names else {}),
            )
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True
