"""One Kinesis batch, end to end: validate, deduplicate, quarantine, archive, aggregate, write
once per item, alert, answer the deploy's smoke events. The Lambda handler and the tests drive
this class; it never reads the clock for bucketing (event time decides) and never fails a batch
for a bad record.

One record never fails a batch: everything derived from a single record (parsing, the catalogue,
the plausibility window, its bucket keys, local dates, TTLs and claims) is worked out for it
alone first, and any exception there quarantines that record with the reason. Only AWS errors
(throttling, network) fail the batch, so that Lambda retries it."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from storepulse import events as ev
from storepulse import stock_levels
from storepulse.clock import Clock, system_clock
from storepulse.config import ConfigError
from storepulse.layout import Key, Table, table_name
from storepulse.settings import CachedCatalog, Catalog, load_catalog
from storepulse.stock_levels import Level, StoreShards, legacy_key
from storepulse.stream import alerts as alert_rules
from storepulse.stream import smoke, trends
from storepulse.stream.aggregate import BatchAggregate, Located, aggregate
from storepulse.stream.archive import LakeArchive, Rejected
from storepulse.stream.batch_io import batch_get
from storepulse.stream.facts import (
    ClaimResult,
    claim_facts,
    plan_claims,
    write_claims,
    write_profiles,
)
from storepulse.stream.records import StreamRecord
from storepulse.stream.sessions import SessionMemory
from storepulse.stream.window import PlausibilityWindow
from storepulse.stream.writer import (
    ItemWriter,
    LevelsState,
    LevelsWrite,
    Outcome,
    WriteResult,
    levels_writes,
    run_parallel,
)

log = logging.getLogger(__name__)

UNKNOWN_STORE = "unknown store"


@dataclass(frozen=True)
class StreamResources:
    """Where the processor writes and which event times it accepts; the stack passes them to
    the function as environment variables."""

    metrics_table: str
    inventory_table: str
    facts_table: str
    settings_table: str
    lake_bucket: str
    alert_topic_arn: str | None
    window: PlausibilityWindow = field(default_factory=PlausibilityWindow)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> StreamResources:
        # The stream processor function's own variables, set by the stack (tests pass a
        # mapping): its one reader of them; everything else reads storepulse.config.
        def table(kind: Table) -> str:
            return environ.get(f"STOREPULSE_{kind.name}_TABLE") or table_name(kind)

        return cls(
            metrics_table=table(Table.METRICS),
            inventory_table=table(Table.INVENTORY),
            facts_table=table(Table.FACTS),
            settings_table=table(Table.SETTINGS),
            lake_bucket=_required(environ, "STOREPULSE_LAKE_BUCKET"),
            alert_topic_arn=environ.get("STOREPULSE_ALERT_TOPIC_ARN") or None,
            window=PlausibilityWindow.from_environment(environ),
        )


def _required(environ: Mapping[str, str], name: str) -> str:
    if not environ.get(name):
        raise ConfigError(f"{name} is not set (the real-time stack sets it on the function)")
    return environ[name]


@dataclass
class BatchReport:
    records: int = 0
    valid: int = 0
    quarantined: int = 0  # conflicts included
    duplicates: int = 0
    conflicts: int = 0
    items_written: int = 0
    items_replayed: int = 0
    alerts_sent: int = 0
    failed_sequence_numbers: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # When each stage ended, in ms since the batch began (logged: where an invocation's time
    # goes; "counted" is when the totals a dashboard reads were written).
    stages_ms: dict[str, float] = field(default_factory=dict)

    def lap(self, stage: str, started: float) -> None:
        self.stages_ms[stage] = round((time.monotonic() - started) * 1000, 1)


def check_against_catalog(event: ev.Event, catalog: Catalog) -> str | None:
    """Reason to reject a well-formed event that the business does not know, or None."""
    store = catalog.stores.get(event.store_id)
    if store is None:
        return f"{UNKNOWN_STORE} {event.store_id!r} (add it to the settings table)"
    currency = getattr(event, "currency", None)
    if currency is not None and currency != store.currency:
        return f"currency {currency} does not match store {store.store_id}'s {store.currency}"
    return None


def admit(record: StreamRecord, catalog: Catalog, window: PlausibilityWindow) -> ev.Event | str:
    """The record's event if the batch can count it, else the reason to quarantine it. May
    raise on content nobody foresaw: the caller quarantines the record then."""
    try:
        event = ev.parse_event(record.data)
    except ev.InvalidEvent as exc:
        return exc.reason
    if smoke.is_smoke(event):
        return event  # counted nowhere: not in the catalogue, never filed
    reason = check_against_catalog(event, catalog) or window.problem(
        event.occurred_at, record.arrived_at
    )
    if reason:
        return reason
    # Derive alone what the batch will derive (claims and their content hash, bucket keys,
    # local dates, TTLs), so an event that breaks one of them raises here, not mid-batch.
    item = Located(event, record.shard_id, record.position)
    plan_claims([item], catalog)
    aggregate([item], catalog, {item.position})
    _ = event.content_hash
    return event


def _conflicts(valid: list[tuple[StreamRecord, ev.Event]], claims: ClaimResult) -> list[Rejected]:
    return [
        Rejected(record, conflict.reason, conflict.details)
        for record, _ in valid
        if (conflict := claims.conflicts.get(record.position)) is not None
    ]


class StreamProcessor:
    def __init__(
        self,
        *,
        dynamodb: Any,
        s3: Any,
        sns: Any,
        resources: StreamResources,
        catalog: CachedCatalog | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.resources, self.clock = resources, clock
        self.dynamodb = dynamodb
        self.metrics = dynamodb.Table(resources.metrics_table)
        self.inventory = dynamodb.Table(resources.inventory_table)
        self.facts = dynamodb.Table(resources.facts_table)
        self.settings = dynamodb.Table(resources.settings_table)
        self.catalog = catalog or CachedCatalog(lambda: load_catalog(self.settings))
        self.sessions = SessionMemory(self.facts)  # per container, like the catalogue
        self.store_shards = StoreShards(dynamodb, resources.inventory_table)  # likewise
        self.archive = LakeArchive(s3, resources.lake_bucket)
        self.publisher = (
            alert_rules.AlertPublisher(
                sns, resources.alert_topic_arn, self.settings, self.facts, clock=clock
            )
            if resources.alert_topic_arn
            else None
        )
        self.trends = trends.TrendWatch(dynamodb, resources.metrics_table)
        tables = {"metrics": self.metrics, "inventory": self.inventory, "facts": self.facts}
        self.smoke = smoke.SmokeResponder(
            dynamodb=dynamodb, tables=tables, publisher=self.publisher, clock=clock
        )

    def process(self, records: list[StreamRecord]) -> BatchReport:
        started = time.monotonic()
        report = BatchReport(records=len(records))
        if not records:
            return report
        if len({r.shard_id for r in records}) != 1:
            raise ValueError("a Kinesis batch holds the records of one shard")
        catalog, valid, rejected = self._admit_batch(records)
        report.lap("admitted", started)

        located = [Located(event, r.shard_id, r.position) for r, event in valid]
        arrived_at = max(r.arrived_at for r in records)
        claims = claim_facts(self.dynamodb, self.facts, located, catalog, self.sessions, arrived_at)
        report.lap("claimed", started)
        rejected += _conflicts(valid, claims)
        valid = [(r, e) for r, e in valid if r.position not in claims.conflicts]
        report.valid, report.quarantined = len(valid), len(rejected)
        report.duplicates, report.conflicts = len(claims.duplicates), len(claims.conflicts)
        counted = [i for i in located if claims.counted(i.position)]
        # Smoke events were archived and claimed like any other; they are counted nowhere.
        smoke_tests = [i for i in counted if smoke.is_smoke(i.event)]
        counted = [i for i in counted if not smoke.is_smoke(i.event)]
        agg = aggregate(counted, catalog, claims.new_sessions)

        # The claims, the lake objects and the profiles depend on nothing the counters write:
        # they go out beside the counter writes instead of as round trips before them
        # (latency). Each is idempotent, so a failure (raised below) fails the batch and its
        # retry redoes it.
        with ThreadPoolExecutor(max_workers=4) as pool:
            side_writes = [
                pool.submit(write_claims, self.facts, self.sessions, records[0].shard_id, claims),
                pool.submit(
                    self.archive.quarantine, sorted(rejected, key=lambda r: r.record.position)
                ),
                pool.submit(self.archive.archive_valid, [r for r, _ in valid]),
                pool.submit(write_profiles, self.facts, list(agg.profiles.values())),
            ]
            results, failed_positions = self._write(agg, catalog)
            report.lap("counted", started)
            for future in side_writes:
                future.result()
            report.lap("archived", started)
        report.items_written = sum(r.outcome != Outcome.REPLAYED for r in results)
        report.items_replayed = sum(r.outcome == Outcome.REPLAYED for r in results)
        positions = [r.position for r in records]
        origin = alert_rules.Origin(records[0].shard_id, min(positions), max(positions))
        report.alerts_sent = self._alert(catalog, agg, results, origin)
        report.lap("alerted", started)
        self.smoke.answer(smoke_tests)  # last: its answer says the whole path worked
        if failed_positions:
            # Lambda resumes from the earliest failure; later records that did land are
            # skipped by the watermarks, so nothing is counted twice.
            first = min(failed_positions)
            report.failed_sequence_numbers = [
                next(r.sequence_number for r in records if r.position == first)
            ]
        report.seconds = time.monotonic() - started
        return report

    def _admit_batch(
        self, records: list[StreamRecord]
    ) -> tuple[Catalog, list[tuple[StreamRecord, ev.Event]], list[Rejected]]:
        catalog = self.catalog.load()
        valid, rejected = self._admit(records, catalog)
        if any(r.reason.startswith(UNKNOWN_STORE) for r in rejected) and self.catalog.reload():
            # A store added since the cached copy was read (e.g. just after a deploy) must not
            # send its first minute of events to quarantine.
            catalog = self.catalog.load()
            valid, rejected = self._admit(records, catalog)
        return catalog, valid, rejected

    def _admit(
        self, records: list[StreamRecord], catalog: Catalog
    ) -> tuple[list[tuple[StreamRecord, ev.Event]], list[Rejected]]:
        valid, rejected = [], []
        for record in records:
            try:
                outcome = admit(record, catalog, self.resources.window)
            except Exception as exc:  # one record's content must never stop the shard
                log.warning("record %s raised", record.sequence_number, exc_info=True)
                outcome = f"processing raised {type(exc).__name__}: {exc}"[: ev.MAX_REASON_LENGTH]
            if isinstance(outcome, str):
                rejected.append(Rejected(record, outcome))
            else:
                valid.append((record, outcome))
        return valid, rejected

    def _write(self, agg: BatchAggregate, catalog: Catalog) -> tuple[list[WriteResult], list[str]]:
        level_writes = self._level_writes(agg, catalog)
        states = self._levels_states(level_writes)
        levels_writer = ItemWriter(self.inventory)
        jobs = [(ItemWriter(self.metrics).write_counters, w) for w in agg.counters.values()] + [
            (partial(levels_writer.write_levels, state=states[w.key]), w) for w in level_writes
        ]
        results, failures = run_parallel(jobs, lambda job: job[0](job[1]))
        failed_positions = []
        for (_, write), exc in failures:
            log.warning("write of %s failed: %s", write.key, exc)
            if isinstance(write, LevelsWrite):
                failed_positions.append(write.first_position)
            else:
                failed_positions.append(min(c.position for c in write.contributions))
        return results, failed_positions

    def _level_writes(self, agg: BatchAggregate, catalog: Catalog) -> list[LevelsWrite]:
        stores = {w.store_id for w in agg.stock.values()}
        shards = self.store_shards.of(stores, catalog.products) if stores else {}
        return levels_writes(agg.stock.values(), shards)

    def _levels_states(self, writes: list[LevelsWrite]) -> dict[Key, LevelsState]:
        """Read every level item the batch changes, 100 per request; then, for the SKUs they
        lack (new to the stream since the upgrade: rare), the pre-2026-12 items."""
        found = batch_get(self.dynamodb, self.inventory.name, [w.key for w in writes])
        states = {w.key: LevelsState.from_item(found.get(w.key), w.shard_id) for w in writes}
        missing = {
            legacy_key(w.store_id, sku): w.key for w in writes for sku in states[w.key].missing(w)
        }
        if missing:
            old = batch_get(self.dynamodb, self.inventory.name, missing)
            legacy: dict[Key, dict[str, Level]] = {}
            for key, item in old.items():
                legacy.setdefault(missing[key], {}).update(stock_levels.levels_in(item))
            states = {k: s.with_legacy(legacy.get(k, {})) for k, s in states.items()}
        return states

    def _alert(
        self, catalog: Catalog, agg: Any, results: list[WriteResult], origin: alert_rules.Origin
    ) -> int:
        if self.publisher is None:
            return 0
        if any(w.sku not in catalog.products for w in agg.stock.values()) and self.catalog.reload():
            catalog = self.catalog.load()  # a product added since the copy was read is known
        stock_items = [
            {"store_id": stock_levels.store_of(r.item), "sku": sku, "on_hand": level.on_hand}
            for r in results
            if r.item is not None and r.skus
            for sku, level in stock_levels.levels_in(r.item).items()
            if sku in r.skus
        ]
        written = {r.key: r.item for r in results if r.item is not None}
        series = alert_rules.MinuteSeries(self.metrics, catalog)
        alerts = (
            alert_rules.unknown_sku_alerts(catalog, agg.stock.values())
            + alert_rules.low_stock_alerts(catalog, stock_items)
            + alert_rules.traffic_spike_alerts(catalog, series, agg.latest_traffic)
            + alert_rules.sales_drop_alerts(catalog, series, agg.latest_sales)
            + self.trends.alerts(catalog, trends.latest_events(agg), written)
        )
        return self.publisher.publish(alerts, origin)
