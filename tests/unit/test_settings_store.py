"""Settings models: validation with clear messages, and exact DynamoDB items."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from storepulse.layout import SettingsKind
from storepulse.settings import (
    DEFAULT_ALERT_RULES,
    KPI_CATALOGUE,
    AlertRuleSettings,
    BusinessProfile,
    EmployeeSettings,
    KpiSelection,
    LowStockParams,
    ProductSettings,
    SalesDropParams,
    SettingsError,
    SettingsModel,
    SettingsStore,
    StoreSettings,
    TrafficSpikeParams,
    describe_errors,
    load_default_rules,
    model_for,
)

STORE = {"store_id": "s-001", "name": "Main St", "timezone": "Europe/Paris", "currency": "EUR"}
PRODUCT = {
    "sku": "coffee-1kg",
    "name": "Coffee 1 kg",
    "category": "grocery",
    "unit_price": "12.50",
    "reorder_point": 5,
}


def _errors(model: type[SettingsModel], data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return describe_errors(caught.value, "x")


def _rule(type_: str, **params: Any) -> dict[str, Any]:
    return {"rule_id": "r1", "type": type_, "params": params}


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["Europe/Pariss", "europe/paris", "", "../etc/passwd"])
def test_unknown_time_zone_is_rejected(zone: str) -> None:
    assert _errors(StoreSettings, {**STORE, "timezone": zone}) == [
        f"x.timezone: unknown time zone '{zone}' (use an IANA name such as 'Europe/Paris')"
    ]


def test_store_id_follows_the_events_pattern_and_currency_is_iso() -> None:
    assert _errors(StoreSettings, {**STORE, "store_id": "s#1", "currency": "eur"}) == [
        "x.store_id: must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'",
        "x.currency: must be an ISO 4217 code (3 upper-case letters)",
    ]


def test_float_price_is_rejected() -> None:
    assert _errors(ProductSettings, {**PRODUCT, "unit_price": 12.5}) == [
        'x.unit_price: must be a decimal string such as "19.99", not a float (inexact)'
    ]


@pytest.mark.parametrize(
    ("price", "message"),
    [("1.999", "must have at most 2 decimal places"), ("-1", "must be >= 0")],
)
def test_price_must_be_money(price: str, message: str) -> None:
    assert _errors(ProductSettings, {**PRODUCT, "unit_price": price}) == [
        f"x.unit_price: {message}"
    ]


def test_price_is_held_with_two_places() -> None:
    product = ProductSettings.model_validate({**PRODUCT, "unit_price": 12})
    assert product.unit_price == Decimal("12.00")
    assert str(product.unit_price) == "12.00"


@pytest.mark.parametrize("value", [True, 2.0, "2", -1])
def test_reorder_point_is_a_non_negative_integer(value: object) -> None:
    assert _errors(ProductSettings, {**PRODUCT, "reorder_point": value})


def test_unknown_rule_param_is_rejected() -> None:
    assert _errors(AlertRuleSettings, _rule("low_stock", window_minutes=5)) == [
        "x.params.window_minutes: unknown field"
    ]
    # a param of another rule type is unknown as well
    assert _errors(AlertRuleSettings, _rule("traffic_spike", min_baseline=100)) == [
        "x.params.min_baseline: unknown field"
    ]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (_rule("sales_drop", ratio=1), "x.params.ratio: must be < 1"),
        (_rule("sales_drop", ratio=0), "x.params.ratio: must be > 0"),
        (_rule("traffic_spike", ratio="0.8"), "x.params.ratio: must be > 1"),
        (_rule("traffic_spike", ratio=1), "x.params.ratio: must be > 1"),
        (_rule("sales_drop", window_minutes=0), "x.params.window_minutes: must be > 0"),
        (_rule("sales_drop", window_minutes=1441), "x.params.window_minutes: must be <= 1440"),
        (_rule("traffic_spike", min_count=0), "x.params.min_count: must be > 0"),
        (_rule("traffic_spike", min_count=2.5), "x.params.min_count: must be an integer"),
        (_rule("sales_drop", min_baseline="-5"), "x.params.min_baseline: must be > 0"),
    ],
)
def test_bad_rule_params_are_rejected(rule: dict[str, Any], message: str) -> None:
    assert _errors(AlertRuleSettings, rule) == [message]


def test_float_param_is_rejected() -> None:
    assert _errors(AlertRuleSettings, _rule("sales_drop", ratio=0.5)) == [
        'x.params.ratio: must be an integer or a decimal string such as "0.5", not a float'
    ]


def test_traffic_counter_is_one_of_the_minute_counters() -> None:
    assert _errors(AlertRuleSettings, _rule("traffic_spike", counter="revenue")) == [
        "x.params.counter: must be 'page_views', 'foot_traffic' or 'sessions'"
    ]


def test_rule_fields_are_checked() -> None:
    errors = _errors(
        AlertRuleSettings,
        {
            "rule_id": "r1",
            "type": "low_stock",
            "severity": "high",
            "cooldown_seconds": 30,
            "store_ids": ["s-1", "s-1"],
            "enabled": "yes",
        },
    )
    assert errors == [
        "x.severity: must be 'info', 'warning' or 'critical'",
        "x.cooldown_seconds: must be >= 60",
        "x.store_ids: duplicate 's-1'",
        "x.enabled: Input should be a valid boolean",
    ]


def test_params_are_decimals() -> None:
    rule = AlertRuleSettings.model_validate(
        _rule("traffic_spike", window_minutes=5, ratio="2.5", counter="sessions")
    )
    assert rule.params == {
        "window_minutes": Decimal(5),
        "ratio": Decimal("2.5"),
        "counter": "sessions",
    }
    assert all(type(v) in (Decimal, str) for v in rule.params.values())
    assert rule.model_dump(mode="json")["params"] == {
        "window_minutes": 5,
        "ratio": "2.5",
        "counter": "sessions",
    }


def test_a_rule_stores_its_given_params_and_reads_the_defaults_for_the_others() -> None:
    rule = AlertRuleSettings.model_validate(_rule("sales_drop", ratio="0.25", window_minutes=None))
    assert rule.to_item()["params"] == {"ratio": Decimal("0.25")}  # null: the default
    params = rule.parameters(SalesDropParams)
    assert (params.window_minutes, params.ratio, params.min_baseline) == (
        60,
        Decimal("0.25"),
        Decimal(100),
    )
    spike = AlertRuleSettings.model_validate(_rule("traffic_spike")).parameters(TrafficSpikeParams)
    assert (spike.window_minutes, spike.baseline_minutes, spike.ratio) == (5, 60, Decimal(3))
    assert (spike.min_count, spike.counter) == (30, "page_views")
    low = AlertRuleSettings.model_validate(_rule("low_stock")).parameters(LowStockParams)
    assert low.reorder_point is None  # the product's own


def test_duplicate_kpi_is_rejected() -> None:
    assert _errors(KpiSelection, {"kpis": ["revenue", "orders", "revenue"]}) == [
        "x.kpis: duplicate 'revenue'"
    ]


def test_unknown_kpi_is_rejected() -> None:
    assert _errors(KpiSelection, {"kpis": ["revenue", "profit"]}) == [
        f"x.kpis[1]: unknown KPI 'profit' (known: {', '.join(KPI_CATALOGUE)})"
    ]


def test_kpi_selection_needs_one_kpi() -> None:
    assert _errors(KpiSelection, {"kpis": []}) == ["x.kpis: must not be empty"]


def test_unknown_fields_are_rejected_and_models_are_frozen() -> None:
    assert _errors(StoreSettings, {**STORE, "timezon": "UTC"}) == ["x.timezon: unknown field"]
    store = StoreSettings.model_validate(STORE)
    with pytest.raises(ValidationError):
        store.name = "other"  # type: ignore[misc]


def test_alert_state_is_not_a_setting() -> None:
    with pytest.raises(SettingsError, match="internal"):
        model_for(SettingsKind.ALERT_STATE)


# --- DynamoDB items ------------------------------------------------------------------------------

SETTINGS = [
    BusinessProfile(name="Corner Shop", timezone="Europe/Paris", currency="EUR"),
    StoreSettings.model_validate(STORE),
    ProductSettings.model_validate(PRODUCT),
    EmployeeSettings(employee_id="e-7", name="Ada", store_id="s-001", role="manager"),
    AlertRuleSettings.model_validate(
        {
            **_rule("sales_drop", window_minutes=60, ratio="0.5", min_baseline=100),
            "store_ids": ["s-001"],
            "severity": "critical",
        }
    ),
    KpiSelection(kpis=("revenue", "visitors", "conversion_rate")),
]


def _numbers(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [] if isinstance(value, str | bool) else [value]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.kind.value)
def test_item_round_trip_with_decimals(setting: SettingsModel) -> None:
    item = setting.to_item()

    assert item["pk"] == setting.kind.value
    assert item["sk"] == setting.item_id
    assert all(type(n) is Decimal for n in _numbers(item))
    assert type(setting).from_item(item) == setting


def test_items_carry_the_attributes_the_lambda_reads() -> None:
    business, store, product, employee, rule, kpis = (s.to_item() for s in SETTINGS)
    assert business == {
        "pk": "BUSINESS",
        "sk": "profile",
        "name": "Corner Shop",
        "timezone": "Europe/Paris",
        "currency": "EUR",
    }
    assert store == {
        "pk": "STORE",
        "sk": "s-001",
        "name": "Main St",
        "timezone": "Europe/Paris",
        "currency": "EUR",
    }
    assert product["reorder_point"] == Decimal(5)
    assert product["unit_price"] == Decimal("12.50")
    assert employee["store_id"] == "s-001"
    assert rule == {
        "pk": "ALERT_RULE",
        "sk": "r1",
        "type": "sales_drop",
        "severity": "critical",
        "cooldown_seconds": Decimal(3600),
        "params": {
            "window_minutes": Decimal(60),
            "ratio": Decimal("0.5"),
            "min_baseline": Decimal("100.00"),
        },
        "store_ids": ["s-001"],
        "enabled": True,
    }
    assert kpis == {
        "pk": "KPI",
        "sk": "selection",
        "kpis": ["revenue", "visitors", "conversion_rate"],
    }


def test_from_item_accepts_what_dynamodb_returns() -> None:
    """DynamoDB drops trailing zeros and may hold sets; newer attributes are ignored."""
    product = ProductSettings.from_item(
        {**SETTINGS[2].to_item(), "unit_price": Decimal("12.5"), "updated_by": "someone"}
    )
    assert product == SETTINGS[2]
    rule = AlertRuleSettings.from_item({**SETTINGS[4].to_item(), "store_ids": {"s-2", "s-1"}})
    assert rule.store_ids == ("s-1", "s-2")


def test_from_item_of_another_kind_is_refused() -> None:
    with pytest.raises(SettingsError, match="not a STORE"):
        StoreSettings.from_item(SETTINGS[2].to_item())


def test_describe_errors_prefixes_the_kind() -> None:
    with pytest.raises(ValidationError) as caught:
        ProductSettings.model_validate({**PRODUCT, "unit_price": "1.001", "name": ""})
    assert describe_errors(caught.value, "product") == [
        "product.name: must not be empty",
        "product.unit_price: must have at most 2 decimal places",
    ]


# --- default rules -------------------------------------------------------------------------------


def test_default_rules() -> None:
    rules = {r.type: r for r in load_default_rules()}

    assert set(rules) == {"low_stock", "traffic_spike", "sales_drop", "trend", "unknown_sku"}
    low, spike, drop = rules["low_stock"], rules["traffic_spike"], rules["sales_drop"]
    assert (low.severity, low.cooldown_seconds, low.params) == ("warning", 6 * 3600, {})
    assert (spike.severity, spike.cooldown_seconds) == ("info", 30 * 60)
    assert spike.params == {
        "window_minutes": 5,
        "baseline_minutes": 60,
        "ratio": 3,
        "min_count": 30,
        "counter": "page_views",
    }
    assert (drop.severity, drop.cooldown_seconds) == ("warning", 3 * 3600)
    assert drop.params == {"window_minutes": 60, "ratio": Decimal("0.5"), "min_baseline": 100}
    assert all(r.enabled and not r.store_ids for r in rules.values())


def test_invalid_rules_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    rules = json.loads(DEFAULT_ALERT_RULES.read_text())
    rules["rules"][2]["params"]["ratio"] = 2
    path.write_text(json.dumps(rules))

    with pytest.raises(SettingsError, match=r"rules\[2\]\.params\.ratio: must be < 1"):
        load_default_rules(path)
    path.write_text("{")
    with pytest.raises(SettingsError, match="cannot read default alert rules"):
        load_default_rules(path)


# --- the store against a scripted table ----------------------------------------------------------


class PagedTable:
    """Answers ``query`` in pages of one item, like a table over the 1 MB page limit."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items, self.calls = items, []

    def query(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        start = int(kwargs.get("ExclusiveStartKey", {}).get("i", 0))
        page: dict[str, Any] = {"Items": self.items[start : start + 1]}
        if start + 1 < len(self.items):
            page["LastEvaluatedKey"] = {"i": start + 1}
        return page


def test_list_follows_every_page() -> None:
    stores = [StoreSettings.model_validate({**STORE, "store_id": f"s-{n}"}) for n in range(3)]
    table = PagedTable([s.to_item() for s in stores])

    assert SettingsStore(table).list(SettingsKind.STORE) == stores
    assert len(table.calls) == 3


def test_list_valid_leaves_out_an_invalid_item_and_keeps_its_neighbours(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stores = [StoreSettings.model_validate({**STORE, "store_id": f"s-{n}"}) for n in range(2)]
    bad = {**stores[0].to_item(), "sk": "s-bad", "timezone": "Mars/Base"}
    table = PagedTable([stores[0].to_item(), bad, stores[1].to_item()])

    assert SettingsStore(table).list_valid(StoreSettings) == stores
    assert "invalid STORE item in the table: s-bad.timezone: unknown time zone" in caplog.text


def test_list_names_an_invalid_item() -> None:
    table = PagedTable([{**StoreSettings.model_validate(STORE).to_item(), "timezone": "Mars/Base"}])
    with pytest.raises(SettingsError, match=r"invalid STORE item in the table: s-001\.timezone"):
        SettingsStore(table).list(SettingsKind.STORE)
