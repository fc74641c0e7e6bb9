"""The deploy's smoke test: a marked event that travels the whole real-time path.

A ``store.foot_traffic`` event whose ``source`` is :data:`SMOKE_SOURCE` is recognised by the
stream processor. It makes every kind of AWS call a business event makes, with the same code:
archived to the raw zone and claimed in the facts table (its store-hour's event log) with the
batch; then counted and stocked with the exactly-once writer, read back with a query, and sent as
an alert (cooldown, SNS publish). All of it on smoke-only keys that no business number, export or
dashboard reads (``SMOKE#...``; the alert has ``type`` ``smoke`` and is not logged for the
dashboard). Only then is the ``SMOKE#<event_id>`` answer written, listing the steps, which the
deploy waits for: a permission the function's role lacks fails the batch instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Final

from boto3.dynamodb.conditions import Key as KeyCondition

from storepulse import events as ev
from storepulse.clock import Clock, system_clock
from storepulse.layout import Key, expires_at
from storepulse.settings import AlertRuleSettings
from storepulse.stream.aggregate import Contribution, CounterWrite, Located, StockChange
from storepulse.stream.alerts import Alert, AlertPublisher
from storepulse.stream.batch_io import batch_get
from storepulse.stream.writer import ItemWriter, LevelsState, LevelsWrite

SMOKE_SOURCE: Final = "storepulse:smoke-test"
SMOKE_STORE: Final = "smoke-test"
SMOKE_ALERT_TYPE: Final = "smoke"
# What every subscriber of the alert topic filters on, so that no person gets smoke alerts (the
# template's e-mail subscription declares the same; a test compares them).
SUBSCRIBER_FILTER: Final = {"type": [{"anything-but": [SMOKE_ALERT_TYPE]}]}
# Every step a complete answer lists, in order.
STEPS: Final = ("archived", "claimed", "counted", "stocked", "read", "alerted")
# Not S#<store>: the exports and the dashboard read only those counter and stock items.
COUNTER_KEY: Final = Key(f"SMOKE#{SMOKE_STORE}", "counters")
STOCK_KEY: Final = Key(f"SMOKE#{SMOKE_STORE}", "stock")
ANSWER_TTL: Final = timedelta(days=1)
# Built unvalidated: an internal rule of a type (and cooldown) no user may declare.
SMOKE_RULE: Final = AlertRuleSettings.model_construct(
    rule_id="smoke", type=SMOKE_ALERT_TYPE, severity="info", cooldown_seconds=0
)


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
    """Only the foot-traffic shape: any other event claiming the source is validated as usual."""
    return isinstance(event, ev.StoreFootTrafficV1) and event.source == SMOKE_SOURCE


def smoke_key(event_id: str) -> Key:
    return Key(f"SMOKE#{event_id}", "SMOKE")


def record_smoke(
    facts_table: Any, event: ev.Event, processed_at: datetime, steps: Iterable[str]
) -> None:
    facts_table.put_item(
        Item={
            **smoke_key(event.event_id).as_item(),
            "type": "smoke",
            "occurred_at": event.occurred_at.isoformat(),
            "processed_at": processed_at.isoformat(),
            "steps": list(steps),
            "expires_at": expires_at(processed_at, ANSWER_TTL),
        }
    )


class SmokeResponder:
    """Answers smoke events after the processor archived and claimed them with the batch."""

    def __init__(
        self,
        *,
        dynamodb: Any,
        tables: dict[str, Any],
        publisher: AlertPublisher | None,
        clock: Clock = system_clock,
    ) -> None:
        """``tables``: boto3 ``Table`` objects by kind: ``metrics``, ``inventory``, ``facts``."""
        self.dynamodb, self.tables, self.publisher, self.clock = dynamodb, tables, publisher, clock

    def answer(self, items: Iterable[Located]) -> int:
        """Answer each smoke event (the processor archived and claimed them with their batch)."""
        answered = 0
        for item in items:
            steps = ["archived", "claimed", self._count(item), self._stock(item), self._read()]
            if self._alert(item):
                steps.append("alerted")
            record_smoke(self.tables["facts"], item.event, self.clock(), steps)
            answered += 1
        return answered

    def _count(self, item: Located) -> str:
        write = CounterWrite(
            COUNTER_KEY,
            item.shard_id,
            [Contribution(item.position, {"smoke_events": 1})],
            {"expires_at": expires_at(self.clock(), ANSWER_TTL)},
        )
        ItemWriter(self.tables["metrics"]).write_counters(write)
        return "counted"

    def _stock(self, item: Located) -> str:
        # A level item of its own, written as the stream writes a store's.
        table = self.tables["inventory"]
        found = batch_get(self.dynamodb, table.name, [STOCK_KEY]).get(STOCK_KEY)
        change = StockChange(item.position, item.event.occurred_at, add=0)
        write = LevelsWrite(STOCK_KEY, item.shard_id, SMOKE_STORE, {"smoke": [change]})
        ItemWriter(table).write_levels(write, LevelsState.from_item(found, item.shard_id))
        return "stocked"

    def _read(self) -> str:
        """A query, as the alert windows read the metrics table."""
        self.tables["metrics"].query(
            KeyConditionExpression=KeyCondition("pk").eq(COUNTER_KEY.pk), ConsistentRead=True
        )
        return "read"

    def _alert(self, item: Located) -> bool:
        if self.publisher is None:
            return False
        alert = Alert(
            SMOKE_RULE,
            SMOKE_STORE,
            "deploy",
            "StorePulse smoke test",
            {"event": item.event.event_id},
        )
        return self.publisher.send(alert, self.clock()) is not None
