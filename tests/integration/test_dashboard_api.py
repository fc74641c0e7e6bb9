"""The dashboard's JSON API on the embedded AWS: events go through the real Lambda handler and the
API's numbers must equal what DynamoDB holds; history comes from Parquet in the embedded S3;
settings round-trip through the settings table; store limits hold; and without Airflow
credentials every path, the OpenAPI document and the static files included, answers 401.

The login itself is Airflow's (``current_viewer`` wraps its ``GetUserDep``): these tests override
that one dependency with a fixed user, except where they check the anonymous case."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from boto3.dynamodb.conditions import Key
from fastapi.testclient import TestClient

from storepulse import events as ev
from storepulse.clock import fixed_clock
from storepulse.dashboard import history
from storepulse.dashboard.app import Services, Viewer, create_app, current_viewer
from storepulse.dashboard.live import LiveDashboard
from storepulse.dashboard.reader import DynamoLiveReader, ThreadLocalTable
from storepulse.lake.manifest import Manifest
from storepulse.layout import COUNTERS, Grain, Table, bucket_keys, table_name
from storepulse.settings import (
    KPI_CATALOGUE,
    AccessStore,
    AlertRuleSettings,
    EmployeeSettings,
    SettingsStore,
    Shift,
    StoreAccess,
    StoreSettings,
)
from storepulse.stream.records import StreamRecord
from tests.integration.conftest import FROZEN_NOW, SHARD, STORES, RealtimeStack, invoke
from tests.integration.test_stream_processor import sale as sale_of_lines

NOW = FROZEN_NOW  # noon in Paris (the business's zone): the handler's and the dashboard's clock
TODAY = date(2026, 11, 26)


class Events:
    """Events through the Lambda handler, one shard with increasing sequence numbers."""

    def __init__(self, handler: ModuleType) -> None:
        self.handler = handler
        self.sequence = 49_650_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000

    def send(self, *events: ev.Event) -> None:
        records = []
        for event in events:
            self.sequence += 1
            # Each event reaches the stream as it happens (the handler's plausibility window
            # judges it against its arrival), as a live producer's would.
            key, data = ev.partition_key(event), event.to_json()
            records.append(StreamRecord(SHARD, str(self.sequence), key, data, event.occurred_at))
        assert invoke(self.handler, records) == {"batchItemFailures": []}


def _envelope(store: str, at: datetime) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "store_id": store, "occurred_at": at}


def sale(store: str, at: datetime, *lines: tuple[str, int, str]) -> ev.PosSaleV1:
    return sale_of_lines(store, str(uuid.uuid4()), at, *lines)


def web(kind: type[ev.WebEvent], store: str, at: datetime, session: str, **fields: Any):
    return kind(**_envelope(store, at), session_id=session, device="mobile", **fields)


def visit(store: str, at: datetime, purchase: bool) -> list[ev.Event]:
    session = str(uuid.uuid4())
    steps: list[ev.Event] = [
        web(ev.WebPageViewV1, store, at, session, page="/"),
        web(ev.WebCheckoutStartedV1, store, at, session, cart_value=Decimal("9.90")),
    ]
    if purchase:
        steps.append(web(ev.WebPurchaseV1, store, at, session, order_id=str(uuid.uuid4())))
    return steps


def foot(store: str, at: datetime, entries: int) -> ev.StoreFootTrafficV1:
    return ev.StoreFootTrafficV1(
        **_envelope(store, at), sensor_id="door", entries=entries, exits=0, interval_seconds=60
    )


def stock(store: str, sku: str, quantity: int, at: datetime) -> ev.InventoryStockLevelV1:
    return ev.InventoryStockLevelV1(**_envelope(store, at), sku=sku, quantity_on_hand=quantity)


# --- the app -----------------------------------------------------------------------------------


def _services(lake: Callable[[], history.Lake | None] = lambda: None) -> Services:
    table, clock = ThreadLocalTable(table_name(Table.SETTINGS)), fixed_clock(NOW)
    return Services(
        settings_store=SettingsStore(table),
        access=AccessStore(table, cache_seconds=0),
        live=LiveDashboard(DynamoLiveReader.connect(), clock=clock),
        lake_factory=lake,
        clock=clock,
    )


def _client(viewer: Viewer | None, lake: Callable[[], history.Lake | None] = lambda: None):
    app = create_app(_services(lake))
    if viewer is not None:
        app.dependency_overrides[current_viewer] = lambda: viewer
    return TestClient(app)


@pytest.fixture
def events(handler: ModuleType) -> Events:
    return Events(handler)


@pytest.fixture
def lake(realtime_stack: RealtimeStack) -> history.Lake:
    return history.Lake(realtime_stack.bucket)


def grant(stack: RealtimeStack, username: str, *store_ids: str) -> None:
    """Let ``username`` see ``store_ids``, or every store when none are given."""
    access = StoreAccess(username=username, store_ids=store_ids, all_stores=not store_ids)
    AccessStore(stack.table(Table.SETTINGS)).put(access, STORES)


@pytest.fixture
def admin(realtime_stack: RealtimeStack, lake: history.Lake) -> Iterator[TestClient]:
    grant(realtime_stack, "admin")
    with _client(Viewer("admin", can_edit=True), lambda: lake) as client:
        yield client


def _day_bucket(stack: RealtimeStack, store: str | None) -> dict[str, Any]:
    """A store's day bucket; for the business (None), the sum of its stores' (the stream
    writes no business item)."""
    if store is None:
        buckets = [_day_bucket(stack, s) for s in ("s-001", "s-002")]
        return {c: sum(b.get(c, 0) for b in buckets) for c in COUNTERS}
    timezone = "Europe/Paris" if store == "s-001" else "America/New_York"
    key = bucket_keys(store, NOW, timezone)[Grain.DAY]
    return stack.table(Table.METRICS).get_item(Key=key.as_item())["Item"]


def _tiles(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["kpi"]: t for t in body["kpis"]["tiles"]}


# --- live --------------------------------------------------------------------------------------


def test_live_numbers_equal_dynamodb(
    admin: TestClient, events: Events, realtime_stack: RealtimeStack
) -> None:
    events.send(
        sale(
            "s-001", NOW - timedelta(minutes=50), ("coffee-1kg", 2, "9.90"), ("mug-blue", 1, "4.50")
        ),
        sale("s-001", NOW - timedelta(minutes=3), ("tea-100g", 3, "3.35")),
        sale("s-002", NOW - timedelta(minutes=1), ("mug-blue", 2, "4.50")),
        *visit("s-001", NOW - timedelta(minutes=20), purchase=True),
        *visit("s-001", NOW - timedelta(minutes=10), purchase=False),
        foot("s-001", NOW - timedelta(minutes=40), 7),
        foot("s-002", NOW - timedelta(minutes=2), 3),
    )
    admin.put("/api/settings/kpis", json={"kpis": list(KPI_CATALOGUE)})

    for store in (None, "s-001"):
        body = admin.get("/api/live", params={"store": store or "all"}).json()
        tiles, bucket = _tiles(body), _day_bucket(realtime_stack, store)
        assert Decimal(tiles["revenue"]["value"]) == bucket["revenue"]
        for kpi, counter in [
            ("orders", "orders"),
            ("units", "units"),
            ("visitors", "sessions"),
            ("page_views", "page_views"),
            ("foot_traffic", "foot_traffic"),
        ]:
            assert tiles[kpi]["value"] == bucket.get(counter, 0), kpi
        assert Decimal(tiles["average_order_value"]["value"]) == (
            bucket["revenue"] / bucket["orders"]
        ).quantize(Decimal("0.01"))
    tiles = _tiles(admin.get("/api/live", params={"store": "s-001"}).json())
    assert Decimal(tiles["conversion_rate"]["value"]) == Decimal("0.5")
    assert Decimal(tiles["cart_abandonment_rate"]["value"]) == Decimal("0.5")
    assert Decimal(tiles["revenue"]["value"]) == Decimal("34.35")


def test_comparisons_sum_the_minutes_up_to_the_same_time(
    admin: TestClient, events: Events, realtime_stack: RealtimeStack
) -> None:
    yesterday = NOW - timedelta(days=1)
    events.send(
        sale("s-001", NOW - timedelta(minutes=5), ("coffee-1kg", 1, "9.90")),
        sale("s-001", yesterday - timedelta(hours=2), ("coffee-1kg", 1, "9.90")),
        sale("s-001", yesterday.replace(second=0), ("mug-blue", 1, "4.50")),  # same minute
        sale("s-001", yesterday + timedelta(minutes=2), ("tea-100g", 10, "3.35")),  # later
        sale("s-001", NOW - timedelta(days=7, hours=1), ("mug-blue", 2, "4.50")),
    )

    body = admin.get("/api/live/kpis", params={"store": "s-001", "kpis": "revenue,orders"}).json()

    revenue = {t["kpi"]: t for t in body["tiles"]}["revenue"]
    metrics = realtime_stack.table(Table.METRICS)
    minutes = metrics.query(
        KeyConditionExpression=Key("pk").eq("S#s-001#MIN#2026-11-25")
        & Key("sk").lte(yesterday.strftime("%Y-%m-%dT%H:%MZ"))
    )["Items"]
    assert Decimal(revenue["yesterday"]) == sum(i["revenue"] for i in minutes) == Decimal("14.40")
    assert Decimal(revenue["last_week"]) == Decimal("9.00")
    assert Decimal(revenue["change_vs_yesterday"]) == Decimal("-0.3125")
    assert body["as_of"].startswith("2026-11-26T11:00:30")


def test_series_mix_stock_and_alerts_from_the_handler(
    admin: TestClient, events: Events, realtime_stack: RealtimeStack
) -> None:
    for back in range(1, 8):  # one coffee a day for a week
        events.send(sale("s-001", NOW - timedelta(days=back), ("coffee-1kg", 1, "9.90")))
    events.send(
        stock("s-001", "coffee-1kg", 3, NOW - timedelta(minutes=30)),  # reorder point 5: low
        stock("s-001", "tea-100g", 40, NOW - timedelta(minutes=30)),
        sale(
            "s-001", NOW - timedelta(minutes=2), ("coffee-1kg", 1, "9.90"), ("tea-100g", 2, "3.35")
        ),
    )

    body = admin.get("/api/live", params={"store": "s-001"}).json()

    points = body["minutes"]["points"]
    assert [(p["minute"], p["revenue"], p["orders"]) for p in points] == [
        ("2026-11-26T10:58:00Z", "16.60", 1)
    ]
    assert [(c["name"], c["revenue"], c["units"]) for c in body["mix"]["categories"]] == [
        ("grocery", "16.60", 3)
    ]
    coffee = next(r for r in body["stock"] if r["sku"] == "coffee-1kg")
    assert body["stock"][0]["sku"] == "coffee-1kg"
    assert (coffee["on_hand"], coffee["low"], coffee["days_of_cover"]) == (2, True, "2.0")
    assert [(a["type"], a["store_id"]) for a in body["alerts"]] == [("low_stock", "s-001")]


def test_social_media_and_staffing_from_the_handler(
    admin: TestClient, events: Events, realtime_stack: RealtimeStack
) -> None:
    """A social report (sent twice: a producer's retry counts once) beside the web, and the
    foot traffic of the hour against the staff on duty and the store's target."""
    settings_store = SettingsStore(realtime_stack.table(Table.SETTINGS))
    settings_store.upsert(
        StoreSettings(
            store_id="s-001",
            name="s-001",
            timezone="Europe/Paris",
            currency="EUR",
            visitors_per_staff=Decimal(10),
        )
    )
    shift = Shift(start=9, end=18, weekdays=(TODAY.weekday(),))
    settings_store.upsert(
        EmployeeSettings(employee_id="e-1", name="Ada", store_id="s-001", role="x", shifts=(shift,))
    )
    report = ev.SocialMetricsV1(
        **_envelope("s-001", NOW - timedelta(minutes=5)),
        channel="instagram",
        mentions=2,
        followers_gained=3,
        followers_lost=1,
        engagements=40,
        interval_seconds=900,
    )
    events.send(report, foot("s-001", NOW - timedelta(minutes=20), 30))  # 11:40 in Paris
    events.send(report)

    live = admin.get("/api/live", params={"store": "s-001"}).json()
    staffing = admin.get("/api/live/staffing", params={"store": "s-001"}).json()

    assert live["social"] == [
        {
            "channel": "instagram",
            "mentions": 2,
            "followers_gained": 3,
            "followers_lost": 1,
            "net_followers": 2,
            "engagements": 40,
        }
    ]
    hours = {h["hour"]: h for h in staffing[0]["hours"]}
    assert (hours[11]["visitors"], hours[11]["staff"], hours[11]["ratio"]) == (30, 1, "30.00")
    assert hours[11]["status"] == "under" and hours[10]["status"] == "over"  # nobody came at 10
    assert staffing[0]["target"] == "10" and staffing[0]["weeks"] == 0


def _profile(customer: str, age_band: str, region: str, segment: str) -> ev.Event:
    return ev.CrmCustomerProfileV1(
        **_envelope("s-001", NOW - timedelta(hours=1)),
        customer_id=customer,
        age_band=age_band,
        region=region,
        segment=segment,
    )


def test_todays_customers_live_and_limited_to_the_users_stores(
    admin: TestClient, events: Events, realtime_stack: RealtimeStack
) -> None:
    """Today's order facts (each store's business day, from gsi1) and the CRM profiles: c-1
    ordered yesterday too (returning) and twice today (repeat); c-3 has no profile."""

    def bought(store: str, at: datetime, customer: str | None, *lines: tuple[str, int, str]):
        return sale(store, at, *lines).model_copy(update={"customer_id": customer})

    events.send(
        _profile("c-1", "25-34", "north", "vip"), _profile("c-2", "35-44", "south", "regular")
    )
    events.send(
        bought("s-001", NOW - timedelta(days=1), "c-1", ("mug-blue", 1, "4.50")),
        bought("s-001", NOW - timedelta(minutes=40), "c-1", ("coffee-1kg", 1, "9.90")),
        bought("s-001", NOW - timedelta(minutes=30), "c-1", ("mug-blue", 2, "4.50")),
        bought("s-001", NOW - timedelta(minutes=20), "c-2", ("coffee-1kg", 1, "9.90")),
        bought("s-001", NOW - timedelta(minutes=10), None, ("tea-100g", 1, "3.35")),
        bought("s-002", NOW - timedelta(minutes=1), "c-3", ("tea-100g", 2, "3.35")),
    )

    body = admin.get("/api/live/customers").json()
    today = body["today"]
    assert (body["day"], body["store_ids"], body["returning_days"]) == (
        "2026-11-26",
        ["s-001", "s-002"],
        7,
    )
    assert (today["orders"], today["known_orders"], today["known_revenue"]) == (5, 4, "35.50")
    assert (today["customers"], today["repeat_customers"], today["repeat_customer_rate"]) == (
        3,
        1,
        "0.333333",
    )
    assert (today["new_customers"], today["returning_customers"]) == (2, 1)
    segments = [
        (g["key"], g["customers"], g["orders"], g["revenue"])
        for g in today["demographics"]["segment"]
    ]
    assert segments == [
        ("vip", 1, 2, "18.90"),
        ("regular", 1, 1, "9.90"),
        ("unknown", 1, 1, "6.70"),
    ]
    regions = {g["key"]: g["revenue"] for g in today["demographics"]["region"]}
    assert regions == {"north": "18.90", "south": "9.90", "unknown": "6.70"}

    grant(realtime_stack, "lea", "s-002")
    with _client(Viewer("lea")) as lea:
        own = lea.get("/api/live/customers", params={"store": "s-002"}).json()
        assert own["store_ids"] == ["s-002"] and own["today"]["customers"] == 1
        assert own["today"]["known_revenue"] == "6.70" and own["today"]["new_customers"] == 1
        for store in ("s-001", "all"):  # fails closed: another store, or the whole business
            refused = lea.get("/api/live/customers", params={"store": store})
            assert refused.status_code == 403, refused.text


def test_an_unknown_store_is_404(admin: TestClient) -> None:
    assert admin.get("/api/live", params={"store": "s-999"}).status_code == 404


# --- settings ----------------------------------------------------------------------------------


def test_kpi_selection_round_trip_and_validation(admin: TestClient) -> None:
    first = admin.get("/api/settings/kpis").json()
    assert first["saved"] is False and first["kpis"][0] == "revenue"
    assert {k["id"] for k in first["catalogue"]} >= {"cart_abandonment_rate", "foot_traffic"}

    saved = admin.put("/api/settings/kpis", json={"kpis": ["foot_traffic", "revenue"]})
    assert saved.status_code == 200
    assert admin.get("/api/settings/kpis").json()["kpis"] == ["foot_traffic", "revenue"]
    body = admin.get("/api/live").json()
    assert [t["kpi"] for t in body["kpis"]["tiles"]] == ["foot_traffic", "revenue"]

    for kpis, problem in [
        (["revenue", "profit"], "unknown KPI 'profit'"),
        (["revenue", "orders", "revenue"], "duplicate 'revenue'"),
        ([], "must not be empty"),
    ]:
        wrong = admin.put("/api/settings/kpis", json={"kpis": kpis})
        assert wrong.status_code == 422
        assert problem in str(wrong.json()["detail"]), wrong.json()
    assert admin.get("/api/settings/kpis").json()["kpis"] == ["foot_traffic", "revenue"]


def test_alert_thresholds_round_trip_with_exact_numbers(admin: TestClient) -> None:
    rules = {r["rule_id"]: r for r in admin.get("/api/settings/alert-rules").json()}
    spike = rules["traffic-spike"]
    spike["params"] |= {"ratio": 2.5, "window_minutes": 10}

    saved = admin.put(
        "/api/settings/alert-rules/traffic-spike",
        content='{"type": "traffic_spike", "params": {"ratio": 2.5, "window_minutes": 10}}',
        headers={"Content-Type": "application/json"},
    )

    assert saved.status_code == 200, saved.text
    assert saved.json()["params"] == {"ratio": "2.5", "window_minutes": 10}
    stored = admin.get("/api/settings/alert-rules").json()
    assert next(r for r in stored if r["rule_id"] == "traffic-spike")["params"]["ratio"] == "2.5"

    wrong = admin.put(
        "/api/settings/alert-rules/traffic-spike",
        json={"type": "traffic_spike", "params": {"ratio": 0.5, "colour": "red"}},
    )
    assert wrong.status_code == 422
    assert len(wrong.json()["detail"]) == 2


def test_only_editors_with_every_store_change_settings(realtime_stack: RealtimeStack) -> None:
    grant(realtime_stack, "viewer")
    grant(realtime_stack, "manager", "s-001")
    grant(realtime_stack, "editor")
    rule = {"type": "low_stock", "enabled": False}
    for viewer in (Viewer("viewer", can_edit=False), Viewer("manager", can_edit=True)):
        with _client(viewer) as client:
            assert client.get("/api/me").json()["can_edit"] is False
            assert client.get("/api/settings/kpis").status_code == 200
            assert client.put("/api/settings/kpis", json={"kpis": ["orders"]}).status_code == 403
            assert client.put("/api/settings/alert-rules/low-stock", json=rule).status_code == 403
            for method in ("POST", "PATCH", "DELETE"):  # every path, every writing method
                assert client.request(method, "/api/settings/kpis").status_code == 403
                assert client.request(method, "/api/no/such/route").status_code == 403
    with _client(Viewer("editor", can_edit=True)) as editor:
        assert editor.get("/api/me").json()["can_edit"] is True
        assert editor.get("/api/settings/kpis").json()["saved"] is False  # nothing was written
        low_stock = editor.get("/api/settings/alert-rules").json()[0]
        assert (low_stock["rule_id"], low_stock["enabled"]) == ("low-stock", True)
        assert editor.put("/api/settings/alert-rules/low-stock", json=rule).status_code == 200


def test_bodies_are_bounded_in_size_and_depth(realtime_stack: RealtimeStack) -> None:
    grant(realtime_stack, "editor")
    headers = {"Content-Type": "application/json"}
    with _client(Viewer("editor", can_edit=True)) as editor:
        for path in ("/api/settings/kpis", "/api/settings/alert-rules/low-stock"):
            assert editor.put(path, content="[" * 100_000, headers=headers).status_code == 413
            deep = editor.put(path, content="[" * 50_000, headers=headers)
            assert deep.status_code == 422
            assert deep.json()["detail"] == ["body: nested deeper than 8 levels"]
            large = editor.put(path, content=" " * 70_000 + "{}", headers=headers)
            assert large.status_code == 413, large.text
            unsized = editor.put(path, content=iter([b" " * 40_000] * 2), headers=headers)
            assert unsized.status_code == 413  # chunked: no Content-Length to trust
            broken = editor.put(path, content=b"\xff{", headers=headers)
            assert broken.status_code == 422 and "not valid JSON" in broken.json()["detail"][0]
            assert editor.put(path, json=[1]).json()["detail"] == ["body: must be a JSON object"]


# --- store limits ------------------------------------------------------------------------------


def test_a_user_without_a_grant_sees_nothing(realtime_stack: RealtimeStack) -> None:
    access = AccessStore(realtime_stack.table(Table.SETTINGS))
    with _client(Viewer("carol", can_edit=True)) as carol:
        me = carol.get("/api/me").json()
        assert (me["stores"], me["all_stores"], me["can_edit"]) == ([], False, False)
        for path in DATA_PATHS:
            response = carol.get(path)
            assert response.status_code == 403, path
            assert "no store is shared with 'carol'" in response.text
        grant(realtime_stack, "carol", "s-001")
        assert carol.get("/api/live", params={"store": "s-001"}).status_code == 200
        assert access.delete("carol")  # a deleted item (or a restored table) fails closed
        assert carol.get("/api/live", params={"store": "s-001"}).status_code == 403
        assert carol.get("/api/live", params={"store": "s-002"}).status_code == 403


def test_the_all_stores_grant_is_explicit(realtime_stack: RealtimeStack) -> None:
    table = realtime_stack.table(Table.SETTINGS)
    table.put_item(Item={"pk": "DASHBOARD_ACCESS", "sk": "dave", "all_stores": "yes"})
    with _client(Viewer("dave")) as dave:
        assert dave.get("/api/me").json()["stores"] == []  # only a boolean true grants all
        grant(realtime_stack, "dave")
        me = dave.get("/api/me").json()
        assert me["all_stores"] is True and len(me["stores"]) == 2
        assert dave.get("/api/live").status_code == 200


def test_a_limited_user_reads_only_the_rules_of_their_stores(
    realtime_stack: RealtimeStack,
) -> None:
    store = SettingsStore(realtime_stack.table(Table.SETTINGS))
    for rule_id, stores in (("east", ("s-002",)), ("both", ("s-001", "s-002"))):
        store.upsert(AlertRuleSettings(rule_id=rule_id, type="low_stock", store_ids=stores))
    grant(realtime_stack, "alice", "s-001")
    with _client(Viewer("alice")) as alice:
        shown = alice.get("/api/settings/alert-rules").json()
    rules = {r["rule_id"]: r["store_ids"] for r in shown}
    assert rules == {"both": ["s-001"], "low-stock": [], "traffic-spike": []}


# --- history -----------------------------------------------------------------------------------

METRICS_SCHEMA = pa.schema(
    [
        pa.field("store_id", pa.string(), nullable=False),
        pa.field("business_date", pa.date32(), nullable=False),
        pa.field("revenue", pa.decimal128(18, 2), nullable=False),
        pa.field("refund_amount", pa.decimal128(18, 2), nullable=False),
        *(pa.field(c, pa.int64(), nullable=False) for c in COUNTERS[2:]),
        pa.field("conversion_rate", pa.decimal128(12, 6)),
        pa.field("average_order_value", pa.decimal128(18, 2)),
    ]
)
CATEGORY_SCHEMA = pa.schema(
    [
        pa.field("store_id", pa.string(), nullable=False),
        pa.field("business_date", pa.date32(), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        pa.field("revenue", pa.decimal128(18, 2), nullable=False),
        pa.field("units", pa.int64(), nullable=False),
    ]
)


def _put_parquet(stack: RealtimeStack, key: str, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=buffer.getvalue())


def _write_metrics(
    stack: RealtimeStack, rows: list[tuple[date, str, str]], folder: str = "dt"
) -> None:
    by_day: dict[date, list[dict[str, Any]]] = {}
    for day, store, revenue in rows:
        row = {c: 0 for c in COUNTERS} | {"refund_amount": Decimal("0.00")}
        row |= {"store_id": store, "business_date": day, "revenue": Decimal(revenue), "orders": 2}
        by_day.setdefault(day, []).append(
            row | {"conversion_rate": None, "average_order_value": None}
        )
    for day, day_rows in by_day.items():
        table = pa.Table.from_pylist(day_rows, schema=METRICS_SCHEMA)
        _put_parquet(stack, f"curated/daily_store_metrics/{folder}={day}/part-00000.parquet", table)


def test_history_trend_reads_only_the_partitions_in_range(
    admin: TestClient, realtime_stack: RealtimeStack, lake: history.Lake, monkeypatch
) -> None:
    end = date(2026, 11, 25)
    rows = [(end - timedelta(days=d), "s-001", f"{d + 1}.10") for d in range(20)]
    rows += [(end - timedelta(days=2), "s-002", "5.00"), (end + timedelta(days=1), "s-001", "99")]
    _write_metrics(realtime_stack, rows)
    read: list[str] = []
    original = history.Lake._read
    monkeypatch.setattr(
        history.Lake, "_read", lambda self, f: read.append(f.key) or original(self, f)
    )

    body = admin.get("/api/history/trend", params={"days": 7, "end": end.isoformat()}).json()

    assert [p["date"] for p in body["series"]] == [
        (end - timedelta(days=d)).isoformat() for d in range(6, -1, -1)
    ]
    assert body["current"]["totals"]["revenue"] == str(
        sum((Decimal(f"{d + 1}.10") for d in range(7)), Decimal("5.00"))
    )
    assert body["previous"]["totals"]["revenue"] == str(
        sum(Decimal(f"{d + 1}.10") for d in range(7, 14))
    )
    assert body["current"]["days_with_data"] == 7 and body["current"]["totals"]["orders"] == 16
    assert sorted(read) == sorted(
        f"curated/daily_store_metrics/dt={end - timedelta(days=d)}/part-00000.parquet"
        for d in range(14)
    )

    read.clear()
    again = admin.get("/api/history/trend", params={"days": 7, "end": end.isoformat()}).json()
    assert again == body and read == []  # unchanged files come from the cache

    _write_metrics(realtime_stack, [(end, "s-001", "1000.00")])  # the export reran that day
    rerun = admin.get("/api/history/trend", params={"days": 7, "end": end.isoformat()}).json()
    assert read == [f"curated/daily_store_metrics/dt={end}/part-00000.parquet"]
    assert rerun["series"][-1]["values"]["revenue"] == "1000.00"


def test_history_reads_only_the_files_a_partition_manifest_names(
    admin: TestClient, realtime_stack: RealtimeStack
) -> None:
    end = date(2026, 11, 25)
    _write_metrics(realtime_stack, [(end, "s-001", "10.00")])  # the previous publish
    new = pa.Table.from_pylist(
        [
            {c: 0 for c in COUNTERS}
            | {
                "refund_amount": Decimal("0.00"),
                "store_id": "s-001",
                "business_date": end,
                "revenue": Decimal("12.00"),
                "orders": 2,
                "conversion_rate": None,
                "average_order_value": None,
            }
        ],
        schema=METRICS_SCHEMA,
    )
    folder = f"curated/daily_store_metrics/dt={end}"
    _put_parquet(realtime_stack, f"{folder}/part-new-00000.parquet", new)  # mid-publish
    manifest = Manifest(
        dataset="daily_store_metrics",
        day=end.isoformat(),
        schema_version=1,
        run_id="r2",
        token="new",
        rows=1,
        bytes=1,
        files=("part-new-00000.parquet",),
        published_at="2026-11-26T00:00:00Z",
    )
    realtime_stack.s3.put_object(
        Bucket=realtime_stack.bucket, Key=f"{folder}/_manifest.json", Body=manifest.to_json()
    )

    body = admin.get("/api/history/trend", params={"days": 7, "end": end.isoformat()}).json()

    assert body["current"]["totals"]["revenue"] == "12.00"  # never 22.00: old and new mixed


def test_history_reads_the_rollups_and_the_partitions_of_days_they_miss(
    admin: TestClient, realtime_stack: RealtimeStack, monkeypatch
) -> None:
    """Days a yearly rollup covers come from it (one object, not a file per day); the others
    from their partitions; a day the export reran (rollup rewritten) is read again."""
    from storepulse.export.datasets import DATASETS
    from storepulse.export.rollup import update_rollup
    from storepulse.lake.filesystem import open_filesystem

    end = date(2026, 1, 3)  # the window spans two years: two rollup objects
    rows = [(end - timedelta(days=d), "s-001", f"{d + 1}.00") for d in range(14)]
    _write_metrics(realtime_stack, rows)
    fs, root = open_filesystem(f"s3://{realtime_stack.bucket}/curated")
    for day, _, _ in rows[1:]:  # everything but the last day is rolled up
        update_rollup(fs, root, DATASETS["daily_store_metrics"], day)
    read: list[str] = []
    original = history.Lake._read
    monkeypatch.setattr(
        history.Lake, "_read", lambda self, f: read.append(f.key) or original(self, f)
    )

    body = admin.get("/api/history/trend", params={"days": 7, "end": end.isoformat()}).json()

    assert read == [f"curated/daily_store_metrics/dt={end}/part-00000.parquet"]
    assert body["current"]["totals"]["revenue"] == "28.00"  # 1 + 2 + ... + 7, exact
    assert body["previous"]["totals"]["revenue"] == "77.00"  # 8 + ... + 14
    assert len(body["series"]) == 7 and body["current"]["days_with_data"] == 7

    late = end - timedelta(days=3)
    _write_metrics(realtime_stack, [(late, "s-001", "100.00")])  # the export reran that day
    update_rollup(fs, root, DATASETS["daily_store_metrics"], late)
    read.clear()
    rerun = admin.get("/api/history/trend", params={"days": 7, "end": end.isoformat()}).json()
    values = {p["date"]: p["values"]["revenue"] for p in rerun["series"]}
    assert values[late.isoformat()] == "100.00" and read == []  # the last day: cached


def test_an_exported_day_without_sales_counts_as_exported(
    admin: TestClient, realtime_stack: RealtimeStack
) -> None:
    """The export writes a file without rows for a day without sales: exported, not missing,
    whether it is read from its partition or from the year's rollup."""
    from storepulse.export.datasets import DATASETS
    from storepulse.export.rollup import update_rollup
    from storepulse.lake.filesystem import open_filesystem

    end = date(2026, 11, 25)
    days = [end - timedelta(days=d) for d in range(7)]
    _write_metrics(realtime_stack, [(days[0], "s-001", "3.00"), (days[6], "s-001", "4.00")])
    for day in days[1:6]:
        empty = pa.Table.from_pylist([], schema=METRICS_SCHEMA)
        _put_parquet(
            realtime_stack, f"curated/daily_store_metrics/dt={day}/part-00000.parquet", empty
        )
    fs, root = open_filesystem(f"s3://{realtime_stack.bucket}/curated")
    for day in days[3:]:  # the older days are rolled up, empty ones included
        update_rollup(fs, root, DATASETS["daily_store_metrics"], day)

    body = admin.get("/api/history/trend", params={"days": 7, "end": end.isoformat()}).json()

    assert body["current"]["days_exported"] == 7 and body["current"]["days_with_data"] == 2
    assert body["current"]["totals"]["revenue"] == "7.00"
    assert body["previous"]["days_exported"] == 0


def _order(day: date, store: str, customer: str | None, total: str) -> dict[str, Any]:
    return {
        "order_id": str(uuid.uuid4()),
        "store_id": store,
        "business_date": day,
        "occurred_at": datetime(day.year, day.month, day.day, 10, tzinfo=NOW.tzinfo),
        "channel": "in_store",
        "currency": "EUR",
        "customer_id": customer,
        "employee_id": None,
        "total": Decimal(total),
        "units": 1,
        "line_count": 1,
    }


def test_customer_behaviour_from_the_lakes_orders_and_profiles(
    admin: TestClient, realtime_stack: RealtimeStack
) -> None:
    from storepulse.export.datasets import DATASETS

    end = date(2026, 11, 25)
    before = end - timedelta(days=7)
    orders = {
        end: [
            _order(end, "s-001", "c-1", "10.00"),
            _order(end, "s-001", "c-1", "5.00"),
            _order(end, "s-001", "c-2", "7.50"),
            _order(end, "s-001", None, "3.00"),
            _order(end, "s-002", "c-3", "99.00"),  # another store
        ],
        before: [_order(before, "s-001", "c-2", "1.00")],
    }
    for day, rows in orders.items():
        table = pa.Table.from_pylist(rows, schema=DATASETS["orders"].schema)
        _put_parquet(realtime_stack, f"curated/orders/dt={day}/part-00000.parquet", table)
    profile = {"store_id": "s-001", "updated_at": NOW, "snapshot_date": end}
    profiles = [
        profile | {"customer_id": "c-1", "age_band": "25-34", "region": "north", "segment": "vip"},
        profile | {"customer_id": "c-2", "age_band": "65+", "region": "south", "segment": "new"},
    ]
    table = pa.Table.from_pylist(profiles, schema=DATASETS["customers"].schema)
    _put_parquet(realtime_stack, f"curated/customers/dt={end}/part-00000.parquet", table)

    body = admin.get(
        "/api/history/customers", params={"days": 7, "end": end.isoformat(), "store": "s-001"}
    ).json()

    now = body["current"]
    assert (now["orders"], now["known_orders"], now["customers"]) == (4, 3, 2)
    assert now["repeat_customer_rate"] == "0.500000" and now["purchase_frequency"] == "1.500000"
    assert (now["new_customers"], now["returning_customers"]) == (1, 1)  # c-2 bought before
    assert now["known_revenue"] == "22.50" and body["profiles_as_of"] == end.isoformat()
    segments = {g["key"]: g["revenue"] for g in now["demographics"]["segment"]}
    assert segments == {"vip": "15.00", "new": "7.50"}


def test_stock_turns_from_the_lakes_product_sales_and_snapshots(
    admin: TestClient, realtime_stack: RealtimeStack
) -> None:
    from storepulse.export.datasets import DATASETS

    end = date(2026, 11, 25)
    first = end - timedelta(days=6)
    sales = [  # 14 coffees and 1 mug over the 7 days
        {
            "store_id": "s-001",
            "business_date": first,
            "sku": "coffee-1kg",
            "revenue": Decimal("99.00"),
            "units": 10,
        },
        {
            "store_id": "s-001",
            "business_date": end,
            "sku": "coffee-1kg",
            "revenue": Decimal("39.60"),
            "units": 4,
        },
        {
            "store_id": "s-001",
            "business_date": end,
            "sku": "mug-blue",
            "revenue": Decimal("4.00"),
            "units": 1,
        },
    ]
    for day in (first, end):
        rows = [r for r in sales if r["business_date"] == day]
        table = pa.Table.from_pylist(rows, schema=DATASETS["daily_product_sales"].schema)
        _put_parquet(
            realtime_stack, f"curated/daily_product_sales/dt={day}/part-00000.parquet", table
        )
    for day, coffee, mugs in ((first, 20, 40), (end, 6, 39)):
        rows = [
            {
                "store_id": "s-001",
                "sku": sku,
                "on_hand": n,
                "counted_at": None,
                "snapshot_date": day,
            }
            for sku, n in (("coffee-1kg", coffee), ("mug-blue", mugs))
        ]
        table = pa.Table.from_pylist(rows, schema=DATASETS["inventory_snapshot"].schema)
        _put_parquet(
            realtime_stack, f"curated/inventory_snapshot/dt={day}/part-00000.parquet", table
        )

    body = admin.get(
        "/api/history/inventory", params={"days": 7, "end": end.isoformat(), "ceiling": 30}
    ).json()

    products = {p["key"]: p for p in body["products"]}
    coffee, mug = products["coffee-1kg"], products["mug-blue"]
    assert (coffee["sold"], coffee["on_hand"], coffee["average_on_hand"]) == (14, 6, "13.0000")
    assert coffee["turnover"] == "1.0769" and coffee["sell_through"] == "0.7000"
    assert coffee["days_of_cover"] == "3.0" and not coffee["overstock"]
    assert mug["days_of_cover"] == "273.0" and mug["overstock"]  # 39 left, 1 sold a week
    assert body["products"][0]["key"] == "mug-blue" and body["snapshots"] == 2
    assert {c["key"]: c["sold"] for c in body["categories"]} == {"grocery": 14, "kitchen": 1}
    assert admin.get("/api/history/inventory", params={"ceiling": 0}).status_code == 422


def test_history_by_store_and_category(admin: TestClient, realtime_stack: RealtimeStack) -> None:
    end = date(2026, 11, 25)
    _write_metrics(
        realtime_stack,
        [
            (end, "s-001", "10.00"),
            (end, "s-002", "30.00"),
            (end - timedelta(days=7), "s-002", "60.00"),
        ],
    )
    for day, revenue in ((end, "12.00"), (end - timedelta(days=8), "4.00")):
        table = pa.Table.from_pylist(
            [
                {
                    "store_id": "s-001",
                    "business_date": day,
                    "category": "grocery",
                    "revenue": Decimal(revenue),
                    "units": 3,
                }
            ],
            schema=CATEGORY_SCHEMA,
        )
        _put_parquet(
            realtime_stack,
            f"curated/daily_category_sales/v1/business_date={day}/part-00000.parquet",
            table,
        )
    params = {"days": 7, "end": end.isoformat()}

    stores = admin.get("/api/history/breakdown", params={**params, "by": "store"}).json()
    categories = admin.get("/api/history/breakdown", params={**params, "by": "category"}).json()

    assert [
        (r["key"], r["label"], r["current"]["revenue"], r["change"]["revenue"])
        for r in stores["rows"]
    ] == [
        ("s-002", "s-002", "30.00", "-0.5000"),
        ("s-001", "s-001", "10.00", None),
    ]
    assert [(r["key"], r["current"], r["previous"]) for r in categories["rows"]] == [
        ("grocery", {"revenue": "12.00", "units": 3}, {"revenue": "4.00", "units": 3})
    ]


def test_history_is_empty_not_an_error_without_partitions(
    admin: TestClient, realtime_stack: RealtimeStack
) -> None:
    for path in ("/api/history/trend", "/api/history/breakdown"):
        response = admin.get(path, params={"days": 365})
        assert response.status_code == 200, response.text
    body = admin.get("/api/history/trend", params={"days": 30}).json()
    assert body["series"] == [] and body["current"]["totals"]["revenue"] == "0.00"
    assert body["lake"] == f"s3://{realtime_stack.bucket}/curated"
    with _client(Viewer("admin")) as no_lake:
        body = no_lake.get("/api/history/trend").json()
        assert body["lake"] is None and body["series"] == []
    assert admin.get("/api/history/trend", params={"days": 12}).status_code == 422


def test_the_lake_freshness_is_the_newest_change_the_compaction_published(
    admin: TestClient, realtime_stack: RealtimeStack
) -> None:
    """What ``compact_changes`` records after a publish, as the API and the page's line give it."""
    from storepulse.lake.freshness import record_freshness

    assert admin.get("/api/history/freshness").json()["text"] is None  # nothing compacted yet
    newest = NOW - timedelta(minutes=3)
    record_freshness(
        realtime_stack.s3,
        realtime_stack.bucket,
        {
            "orders": newest.isoformat(),
            "daily_store_metrics": (newest - timedelta(hours=2)).isoformat(),
        },
        clock=fixed_clock(NOW),
    )
    body = admin.get("/api/history/freshness").json()
    by_name = {d["dataset"]: d for d in body["datasets"]}
    assert by_name["orders"]["age_seconds"] == 180
    assert by_name["orders"]["text"] == f"lake as of {newest:%H:%M} UTC, 3 min ago"
    assert body["text"] == by_name["daily_store_metrics"]["text"]  # the least fresh one
    assert body["text"].endswith(", 2 h 3 min ago")
    with _client(Viewer("nobody")) as stranger:
        assert stranger.get("/api/history/freshness").status_code == 403


def test_out_of_range_dates_are_422_with_a_message(admin: TestClient) -> None:
    for end in ("0001-01-01", "9999-12-31", "2016-11-01", "2026-11-27"):
        for path in ("/api/history/trend", "/api/history/breakdown"):
            response = admin.get(path, params={"days": 365, "end": end})
            assert response.status_code == 422, (path, end)
            assert response.json()["detail"] == ["end: must be between 2016-11-28 and 2026-11-26"]
    assert admin.get("/api/history/trend", params={"end": "2026-02-30"}).status_code == 422
    assert admin.get("/api/history/trend", params={"end": "2016-11-28"}).status_code == 200


# --- the page and its security -----------------------------------------------------------------

DATA_PATHS = [
    "/api/live",
    "/api/live?store=s-001",
    "/api/live/kpis?store=s-001",
    "/api/live/customers?store=s-001",
    "/api/history/trend?days=7",
    "/api/history/breakdown?by=category&store=s-001",
    "/api/history/customers?days=7",
    "/api/history/inventory?store=s-001",
    "/api/history/social",
    "/api/live/staffing",
    "/api/settings/kpis",
    "/api/settings/alert-rules",
]

PATHS = [
    "/",
    "/static/app.js",
    "/static/app.css",
    "/static/index.html",
    "/static/../app.py",
    "/openapi.json",
    "/docs",
    "/redoc",
    "/api/me",
    "/api/live",
    "/api/live/kpis?store=s-001",
    "/api/history/trend?days=7",
    "/api/history/breakdown?by=category",
    "/api/settings/kpis",
    "/api/settings/alert-rules",
    "/no/such/path",
]


def test_without_credentials_every_path_is_401() -> None:
    """No AWS needed: the login check comes first (Airflow's own GetUserDep, not overridden)."""
    with _client(None) as anonymous:
        for path in PATHS:
            response = anonymous.get(path)
            assert response.status_code == 401, path
            assert "app.js" not in response.text and "openapi" not in response.text
        for method, path in [
            ("PUT", "/api/settings/kpis"),
            ("PUT", "/api/settings/alert-rules/x"),
            ("POST", "/api/live"),
            ("DELETE", "/api/settings/kpis"),
        ]:
            assert anonymous.request(method, path, json={}).status_code == 401, (method, path)
        page = anonymous.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 401 and "Log in to Airflow" in page.text


def test_the_page_assets_and_openapi_for_a_logged_in_user(admin: TestClient) -> None:
    page = admin.get("/")
    assert page.status_code == 200 and 'src="static/app.js"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert admin.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert admin.get("/static/app.css").status_code == 200
    assert admin.get("/static/index.html").status_code == 404  # only the named assets
    assert admin.get("/no/such/path").status_code == 404
    document = admin.get("/openapi.json").json()
    assert set(document["paths"]) == {
        "/api/me",
        "/api/live",
        "/api/live/kpis",
        "/api/live/staffing",
        "/api/live/customers",
        "/api/history/trend",
        "/api/history/breakdown",
        "/api/history/customers",
        "/api/history/inventory",
        "/api/history/social",
        "/api/history/freshness",
        "/api/settings/kpis",
        "/api/settings/alert-rules",
        "/api/settings/alert-rules/{rule_id}",
    }
    assert admin.get("/api/live").headers["cache-control"] == "no-store"


def test_the_plugin_mounts_the_dashboard_lazily() -> None:
    import storepulse_plugin

    plugin = storepulse_plugin.StorePulsePlugin
    assert plugin.fastapi_apps[0]["url_prefix"] == "/dashboard"
    assert isinstance(plugin.fastapi_apps[0]["app"], storepulse_plugin.LazyDashboard)
    view = plugin.external_views[0]
    assert (view["name"], view["href"], view["destination"]) == ("Dashboard", "/dashboard/", "nav")
