"""Fixtures for the real-time path on the embedded AWS."""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from types import ModuleType
from typing import Any

import boto3
import pytest

from storepulse.aws import FAIL_FAST_CONFIG
from storepulse.clock import FrozenClock
from storepulse.config import REPO_ROOT, settings
from storepulse.dashboard.reader import DynamoLiveReader, ThreadLocalTable, business_items
from storepulse.lake.paths import QUARANTINE_EVENTS
from storepulse.layout import Table, day_bucket_key, local_date, table_name
from storepulse.settings import (
    AlertRuleSettings,
    BusinessProfile,
    ProductSettings,
    SettingsStore,
    StoreSettings,
)
from storepulse.stream.records import StreamRecord, lambda_event
from storepulse_local.lambda_context import LambdaContext
from storepulse_local.provision import create_tables

STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/storepulse-dev-events"
ROLE_ARN = "arn:aws:iam::123456789012:role/storepulse-dev-stream-processor"
SHARD = "shardId-000000000000"
FROZEN_NOW = datetime(2026, 11, 26, 11, 0, 30, tzinfo=UTC)  # noon in Paris, a Thursday
BUSINESS_TZ = "Europe/Paris"
STORES = {"s-001": "Europe/Paris", "s-002": "America/New_York"}
PRODUCTS = {  # sku: (category, reorder point)
    "coffee-1kg": ("grocery", 5),
    "mug-blue": ("kitchen", 2),
    "tea-100g": ("grocery", 3),
}


@dataclass
class RealtimeStack:
    dynamodb: Any  # boto3 resource
    s3: Any
    sns: Any
    sqs: Any
    bucket: str
    topic_arn: str
    alerts_queue_url: str

    def table(self, kind: Table) -> Any:
        return self.dynamodb.Table(table_name(kind))

    def quarantined(self) -> list[dict[str, Any]]:
        """Every line of the lake's quarantine zone (objects in key order)."""
        listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=QUARANTINE_EVENTS)
        return [
            json.loads(line)
            for entry in listing.get("Contents", [])
            for line in gzip.decompress(
                self.s3.get_object(Bucket=self.bucket, Key=entry["Key"])["Body"].read()
            ).splitlines()
        ]

    def alerts(self, wait_seconds: int = 0) -> list[dict[str, Any]]:
        """Alert notifications delivered to the queue subscribed to the topic."""
        messages = self.sqs.receive_message(
            QueueUrl=self.alerts_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
        ).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]


def _put_settings(table: Any) -> None:
    store = SettingsStore(table)
    store.upsert(BusinessProfile(name="Test shop", timezone=BUSINESS_TZ, currency="EUR"))
    for store_id, timezone in STORES.items():
        store.upsert(
            StoreSettings(store_id=store_id, name=store_id, timezone=timezone, currency="EUR")
        )
    for sku, (category, reorder_point) in PRODUCTS.items():
        store.upsert(
            ProductSettings(
                sku=sku,
                name=sku,
                category=category,
                unit_price=Decimal("1.00"),
                reorder_point=reorder_point,
            )
        )
    store.upsert(AlertRuleSettings(rule_id="low-stock", type="low_stock", cooldown_seconds=3600))
    store.upsert(
        AlertRuleSettings(
            rule_id="traffic-spike",
            type="traffic_spike",
            severity="info",
            cooldown_seconds=1800,
            params={
                "window_minutes": Decimal(5),
                "baseline_minutes": Decimal(60),
                "ratio": Decimal(3),
                "min_count": Decimal(30),
            },
        )
    )


@pytest.fixture
def realtime_stack(embedded_aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RealtimeStack]:
    """Tables, lake bucket, alert topic with a subscribed SQS queue, and a seeded catalogue."""
    yield provision_realtime_stack(monkeypatch)
    settings.cache_clear()  # its lake bucket leaves with the environment


def provision_realtime_stack(monkeypatch: pytest.MonkeyPatch) -> RealtimeStack:
    """The ``realtime_stack`` fixture's resources on the embedded AWS boto3 is pointed at."""
    session = boto3.Session(region_name=settings().region)
    dynamodb_client = session.client("dynamodb", config=FAIL_FAST_CONFIG)
    create_tables(dynamodb_client)
    s3, sns, sqs = (session.client(s, config=FAIL_FAST_CONFIG) for s in ("s3", "sns", "sqs"))
    bucket = settings().resource_name("lake")
    s3.create_bucket(Bucket=bucket)
    topic_arn = sns.create_topic(Name=settings().resource_name("alerts"))["TopicArn"]
    queue_url = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    dynamodb = session.resource("dynamodb", config=FAIL_FAST_CONFIG)
    _put_settings(dynamodb.Table(table_name(Table.SETTINGS)))
    monkeypatch.setenv("STOREPULSE_LAKE_BUCKET", bucket)
    monkeypatch.setenv("STOREPULSE_ALERT_TOPIC_ARN", topic_arn)
    settings.cache_clear()  # read again with the lake bucket
    return RealtimeStack(dynamodb, s3, sns, sqs, bucket, topic_arn, queue_url)


def _load_handler() -> ModuleType:
    """The Lambda handler module, loaded from its file as the Lambda runtime does."""
    path = REPO_ROOT / "lambdas" / "stream_processor" / "handler.py"
    spec = importlib.util.spec_from_file_location("stream_processor_handler", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def clock() -> FrozenClock:
    """The one frozen "now" of a test: the handler and whatever else the test builds read it.
    A module that needs another time overrides this fixture."""
    return FrozenClock(FROZEN_NOW)


@pytest.fixture
def handler(realtime_stack: RealtimeStack, clock: FrozenClock) -> Iterator[ModuleType]:
    module = load_handler(clock)
    yield module
    module.processor.cache_clear()


def load_handler(clock: FrozenClock) -> ModuleType:
    """The Lambda handler on ``clock``, its resources read from the environment on first use."""
    module = _load_handler()
    module.CLOCK = clock
    module.processor.cache_clear()  # resources come from this test's environment
    return module


def invoke(handler: ModuleType, records: list[StreamRecord]) -> dict[str, Any]:
    """Call the handler with exactly the event and context Lambda would pass."""
    return handler.handler(
        lambda_event(records, STREAM_ARN, "us-east-1", ROLE_ARN),
        LambdaContext("storepulse-dev-stream-processor"),
    )


def business_day_total(
    stack: RealtimeStack, day: date | datetime, timezones: Mapping[str, str] = STORES
) -> dict[str, Any]:
    """The business's day bucket as the dashboard reads it: the stream writes only the stores'
    buckets, and the business's day ``day`` (a date, or a moment in Paris) is their sum."""
    if isinstance(day, datetime):
        day = local_date(day, "Europe/Paris")
    reader = DynamoLiveReader({Table.METRICS: ThreadLocalTable(stack.table(Table.METRICS).name)})
    key = day_bucket_key(None, day)
    return dict(business_items(reader, [key], timezones).get(key, {}))
