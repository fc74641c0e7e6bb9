"""The settings CLI and store on the embedded AWS, and the contract with the Lambda's catalogue."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, NamedTuple

import boto3
import pytest

from storepulse.aws import FAIL_FAST_CONFIG
from storepulse.config import settings
from storepulse.layout import SettingsKind, Table, table_name
from storepulse.settings import (
    DEFAULT_ALERT_RULES,
    AccessStore,
    AlertRuleSettings,
    BusinessProfile,
    ProductSettings,
    SettingsError,
    SettingsStore,
    StoreAccess,
    StoreSettings,
    TrafficSpikeParams,
    load_catalog,
    load_default_rules,
)
from storepulse.settings_cli import main
from storepulse_local.provision import create_tables

BUSINESS = {"name": "Corner Shop", "timezone": "Europe/Paris", "currency": "EUR"}
STORE = {"name": "Main St", "timezone": "America/New_York", "currency": "EUR"}


class Run(NamedTuple):
    code: int
    out: str
    err: str


@pytest.fixture
def table(aws_client: Any) -> Any:
    create_tables(aws_client("dynamodb"))
    resource = boto3.resource("dynamodb", region_name=settings().region, config=FAIL_FAST_CONFIG)
    return resource.Table(table_name(Table.SETTINGS))


@pytest.fixture
def cli(table: Any, capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*argv: str) -> Run:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


def _upsert(cli: Any, kind: str, item_id: str | None, data: dict[str, Any]) -> Run:
    return cli("upsert", kind, *([item_id] if item_id else []), "--json", json.dumps(data))


@pytest.fixture
def shop(cli: Any) -> Any:
    """A business with one store, s-001."""
    assert _upsert(cli, "business", None, BUSINESS).code == 0
    assert _upsert(cli, "store", "s-001", STORE).code == 0
    return cli


CASES = [  # kind, id, JSON, its replacement
    ("business", None, BUSINESS, {**BUSINESS, "name": "Corner Shop Ltd"}),
    ("store", "s-002", STORE, {**STORE, "timezone": "Asia/Tokyo"}),
    (
        "product",
        "mug-blue",
        {"name": "Blue mug", "category": "kitchen", "unit_price": 7.5, "reorder_point": 2},
        {"name": "Blue mug", "category": "kitchen", "unit_price": "8.00", "reorder_point": 4},
    ),
    (
        "employee",
        "e-1",
        {"name": "Ada", "store_id": "s-001", "role": "manager"},
        {"name": "Ada", "store_id": "s-001", "role": "owner"},
    ),
    (
        "alert-rule",
        "drop-main",
        {"type": "sales_drop", "params": {"ratio": 0.4}, "store_ids": ["s-001"]},
        {"type": "sales_drop", "params": {"ratio": 0.3}, "enabled": False},
    ),
    ("kpi", None, {"kpis": ["revenue", "orders"]}, {"kpis": ["visitors", "revenue"]}),
]


@pytest.mark.parametrize(("kind", "item_id", "data", "changed"), CASES, ids=[c[0] for c in CASES])
def test_upsert_list_get_delete(
    shop: Any, kind: str, item_id: str | None, data: dict[str, Any], changed: dict[str, Any]
) -> None:
    ref = [item_id] if item_id else []
    assert _upsert(shop, kind, item_id, data).code == 0

    got = shop("get", kind, *ref)
    assert got.code == 0
    assert _subset(json.loads(got.out), data)
    assert _upsert(shop, kind, item_id, changed).code == 0
    assert _subset(json.loads(shop("get", kind, *ref).out), changed)

    listed = json.loads(shop("list", kind, "--format", "json").out)
    assert json.loads(shop("get", kind, *ref).out) in listed
    table = shop("list", kind)
    assert table.code == 0
    assert table.out.splitlines()[0].split()[0] == next(iter(json.loads(got.out)))  # header

    assert shop("delete", kind, *ref) == Run(0, f"deleted {kind} {item_id or _single(kind)}\n", "")
    assert shop("get", kind, *ref).code == 1
    missing = shop("delete", kind, *ref)
    assert missing.code == 1
    assert "not found" in missing.err


def _single(kind: str) -> str:
    return {"business": "profile", "kpi": "selection"}[kind]


def _subset(shown: dict[str, Any], given: dict[str, Any]) -> bool:
    """``given`` (as typed) is what ``get`` shows, numbers compared exactly."""
    return all(
        _subset(shown[k], v) if isinstance(v, dict) else _same(shown[k], v)
        for k, v in given.items()
    )


def _same(shown: Any, given: Any) -> bool:
    if isinstance(given, float | int) and not isinstance(given, bool):
        return Decimal(str(shown)) == Decimal(str(given))
    return shown == given


def test_list_prints_a_readable_table(shop: Any) -> None:
    _upsert(shop, "store", "s-002", {**STORE, "name": "Harbour"})

    assert shop("list", "store").out.splitlines() == [
        "store_id  name     timezone          currency",
        "s-001     Main St  America/New_York  EUR",
        "s-002     Harbour  America/New_York  EUR",
    ]


def test_invalid_json_prints_the_errors_without_traceback(cli: Any) -> None:
    run = _upsert(cli, "product", "p-1", {"name": "", "category": "c", "unit_price": "1.999"})

    assert run.code == 2
    assert run.err.splitlines() == [
        "error: product.name: must not be empty",
        "error: product.unit_price: must have at most 2 decimal places",
    ]
    assert cli("get", "product", "p-1").code == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["upsert", "store", "s-1", "--json", "[1]"], "error: --json: must be a JSON object"),
        (["upsert", "store", "s-1", "--json", "{"], "error: --json: not valid JSON"),
        (["upsert", "store", "--json", "{}"], "error: store.store_id: missing"),
        (
            ["upsert", "store", "s-1", "--json", '{"store_id": "s-2"}'],
            "error: ID 's-1' does not match store_id 's-2'",
        ),
        (["get", "store"], "error: ID (store_id) is required"),
        (["get", "kpi", "other"], "error: kpi has a single item: give no ID"),
        (
            [
                "upsert",
                "alert-rule",
                "r",
                "--json",
                '{"type": "low_stock", "params": {"ratio": 2}}',
            ],
            "error: alert_rule.params.ratio: unknown field",
        ),
    ],
)
def test_bad_input_is_reported(cli: Any, argv: list[str], message: str) -> None:
    run = cli(*argv)
    assert (run.code, run.out) == (2, "")
    assert run.err.startswith(message)


def test_store_currency_must_match_the_business(shop: Any) -> None:
    run = _upsert(shop, "store", "s-002", {**STORE, "currency": "USD"})

    assert run == Run(
        2,
        "",
        "error: store 's-002' has currency USD but the business uses EUR; "
        "every store must use the business currency\n",
    )
    changed = _upsert(shop, "business", None, {**BUSINESS, "currency": "USD"})
    assert changed.code == 2
    assert "store(s) s-001" in changed.err


def test_store_currency_is_free_without_a_business_profile(cli: Any) -> None:
    assert _upsert(cli, "store", "s-009", {**STORE, "currency": "GBP"}).code == 0


def test_employee_store_must_exist(shop: Any) -> None:
    run = _upsert(shop, "employee", "e-1", {"name": "Bo", "store_id": "s-404", "role": "staff"})

    assert (run.code, run.err) == (
        2,
        "error: employee 'e-1': store 's-404' does not exist; create the store first\n",
    )


def test_rule_stores_must_exist(shop: Any) -> None:
    rule = {"type": "low_stock", "store_ids": ["s-001", "s-404", "s-405"]}
    run = _upsert(shop, "alert-rule", "low", rule)

    assert run.code == 2
    assert "alert rule 'low': unknown store(s) s-404, s-405" in run.err


def test_missing_table_is_named(embedded_aws: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--table", "nope-settings", "list", "store"]) == 2
    err = capsys.readouterr().err
    assert "table 'nope-settings' does not exist" in err
    assert "deploy_realtime_stack" in err


def test_seed_defaults_is_idempotent_and_keeps_changed_rules(cli: Any) -> None:
    first = cli("seed-defaults")
    assert first.code == 0
    assert first.out.splitlines() == [
        "created alert-rule low-stock",
        "created alert-rule traffic-spike",
        "created alert-rule sales-drop",
        "created alert-rule sales-trend",
        "created alert-rule traffic-trend",
        "created alert-rule conversion-trend",
        "created alert-rule unknown-sku",
    ]
    changed = {"type": "sales_drop", "severity": "critical", "params": {"ratio": "0.25"}}
    assert _upsert(cli, "alert-rule", "sales-drop", changed).code == 0
    assert cli("delete", "alert-rule", "low-stock").code == 0

    second = cli("seed-defaults")
    assert second.out == "created alert-rule low-stock\n"
    assert cli("seed-defaults").out == "every default alert rule exists already\n"
    kept = json.loads(cli("get", "alert-rule", "sales-drop").out)
    assert (kept["severity"], kept["params"]) == ("critical", {"ratio": "0.25"})


def test_the_lambda_reads_what_the_store_wrote(table: Any) -> None:
    store = SettingsStore(table)
    for setting in _settings():
        store.upsert(setting)
    created = store.seed_defaults()

    catalog = load_catalog(table)

    assert catalog.business_timezone == "Asia/Tokyo"
    assert {s.store_id: (s.timezone, s.currency, s.name) for s in catalog.stores.values()} == {
        "s-001": ("Europe/Paris", "JPY", "Paris"),
        "s-002": ("America/New_York", "JPY", "New York"),
    }
    assert {p.sku: (p.category, p.reorder_point) for p in catalog.products.values()} == {
        "coffee-1kg": ("grocery", 5),
        "mug-blue": ("kitchen", 0),
    }
    written = {r.rule_id: r for r in [*created, *store.list(SettingsKind.ALERT_RULE)]}
    assert (
        {r.rule_id for r in catalog.rules}
        == set(written)
        == {
            "low-stock",
            "traffic-spike",
            "sales-drop",
            "sales-trend",
            "traffic-trend",
            "conversion-trend",
            "unknown-sku",
            "paris-footfall",
        }
    )
    for rule in catalog.rules:  # the same validated model, every field equal
        assert rule == written[rule.rule_id]
    footfall = next(r for r in catalog.rules if r.rule_id == "paris-footfall")
    assert footfall.params == {"counter": "foot_traffic", "ratio": Decimal("2.5")}
    assert footfall.applies_to("s-001")
    assert not footfall.applies_to("s-002")
    spike = footfall.parameters(TrafficSpikeParams)  # the defaults fill what was not given
    assert (spike.window_minutes, spike.baseline_minutes, spike.min_count) == (5, 60, 30)
    assert (spike.counter, spike.ratio) == ("foot_traffic", Decimal("2.5"))


def _settings() -> list[Any]:
    return [
        BusinessProfile(name="Shop", timezone="Asia/Tokyo", currency="JPY"),
        StoreSettings(store_id="s-001", name="Paris", timezone="Europe/Paris", currency="JPY"),
        StoreSettings(
            store_id="s-002", name="New York", timezone="America/New_York", currency="JPY"
        ),
        ProductSettings.model_validate(
            {"sku": "coffee-1kg", "name": "Coffee", "category": "grocery", "unit_price": "9.90"}
            | {"reorder_point": 5}
        ),
        ProductSettings.model_validate(
            {"sku": "mug-blue", "name": "Mug", "category": "kitchen", "unit_price": 4}
        ),
        AlertRuleSettings.model_validate(
            {
                "rule_id": "paris-footfall",
                "type": "traffic_spike",
                "severity": "critical",
                "cooldown_seconds": 600,
                "params": {"counter": "foot_traffic", "ratio": "2.5"},
                "store_ids": ["s-001"],
            }
        ),
    ]


def test_store_refuses_internal_items(table: Any) -> None:
    with pytest.raises(SettingsError, match="internal"):
        SettingsStore(table).list(SettingsKind.ALERT_STATE)


# --- all or nothing ----------------------------------------------------------------------------


def test_seed_defaults_writes_every_rule_or_none(shop: Any, tmp_path: Any) -> None:
    rules = json.loads(DEFAULT_ALERT_RULES.read_text())
    rules["rules"][2]["store_ids"] = ["s-404"]  # the third rule fails its check
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(rules))

    run = shop("seed-defaults", "--file", str(path))

    assert run.code == 2
    assert "unknown store(s) s-404" in run.err
    assert shop("list", "alert-rule").out == "no alert-rule settings\n"  # not 2 of 3


def test_seed_defaults_refuses_a_race_as_a_whole(cli: Any, table: Any) -> None:
    store = SettingsStore(table)
    rules = load_default_rules()
    taken = rules[2].model_copy(update={"severity": "critical"})
    real_transact = table.meta.client.transact_write_items

    def racing(**kwargs: Any) -> Any:  # another writer creates the third rule meanwhile
        table.put_item(Item=taken.to_item())
        return real_transact(**kwargs)

    table.meta.client.transact_write_items = racing
    try:
        with pytest.raises(SettingsError, match="nothing was written"):
            store.seed_defaults()
    finally:
        table.meta.client.transact_write_items = real_transact
    assert [r.item_id for r in store.list(SettingsKind.ALERT_RULE)] == [taken.rule_id]


@pytest.fixture
def referenced(shop: Any, table: Any) -> Any:
    """s-001 and s-002, an employee and rules and dashboard grants that name them."""
    assert _upsert(shop, "store", "s-002", STORE).code == 0
    assert (
        _upsert(shop, "employee", "e-1", {"name": "Bo", "store_id": "s-001", "role": "x"}).code == 0
    )
    assert (
        _upsert(shop, "employee", "e-2", {"name": "Al", "store_id": "s-002", "role": "x"}).code == 0
    )
    for rule_id, stores in (("one", ["s-001"]), ("both", ["s-001", "s-002"]), ("all", [])):
        rule = {"type": "low_stock", "store_ids": stores}
        assert _upsert(shop, "alert-rule", rule_id, rule).code == 0
    access = AccessStore(table)
    for grant in (
        StoreAccess(username="alice", store_ids=("s-001",)),
        StoreAccess(username="bob", store_ids=("s-001", "s-002")),
        StoreAccess(username="admin", all_stores=True),
    ):
        access.put(grant, ["s-001", "s-002"])
    return shop


def _state(cli: Any, table: Any) -> dict[str, Any]:
    def listed(kind: str) -> dict[str, Any]:
        rows = json.loads(cli("list", kind, "--format", "json").out)
        return {next(iter(r.values())): r.get("store_ids", r.get("store_id")) for r in rows}

    grants = {a.username: (a.store_ids, a.all_stores) for a in AccessStore(table).list()}
    return {
        "stores": list(listed("store")),
        "employees": listed("employee"),
        "rules": listed("alert-rule"),
        "grants": grants,
    }


def test_a_store_still_named_elsewhere_is_not_deleted(referenced: Any, table: Any) -> None:
    before = _state(referenced, table)

    run = referenced("delete", "store", "s-001")

    assert run.code == 2
    assert run.err == (
        "error: store 's-001' is still named by employee(s) e-1; alert rule(s) both, one; "
        "the dashboard grant(s) of alice, bob; change those first, or delete with --cascade "
        "(employees deleted, the store removed from rules and grants)\n"
    )
    assert _state(referenced, table) == before


def test_cascade_deletes_a_store_with_what_names_it(referenced: Any, table: Any) -> None:
    run = referenced("delete", "store", "s-001", "--cascade")

    assert (run.code, run.out) == (0, "deleted store s-001\n")
    assert _state(referenced, table) == {
        "stores": ["s-002"],
        "employees": {"e-2": "s-002"},
        "rules": {"all": [], "both": ["s-002"]},  # "one" would have meant every store
        "grants": {"admin": ((), True), "bob": (("s-002",), False)},  # alice: no grant
    }
    assert referenced("delete", "store", "s-001", "--cascade").code == 1


def test_deeply_nested_json_is_an_error_not_a_traceback(cli: Any, tmp_path: Any) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000)
    for source in (["--json", "{" * 100_000], ["--file", str(path)]):
        run = cli("upsert", "store", "s-1", *source)
        assert (run.code, run.out) == (2, "")
        assert run.err.endswith(": nested deeper than 32 levels\n"), run.err


def test_the_access_cli_grants_every_store_only_explicitly(
    shop: Any, table: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from storepulse.dashboard import access

    assert access.main(["set", "admin", "--all"]) == 0
    assert access.main(["set", "alice", "s-001"]) == 0
    for argv in (["set", "bob"], ["set", "bob", "s-001", "--all"]):
        with pytest.raises(SystemExit):  # a grant names its stores, or says all of them
            access.main(argv)
    with pytest.raises(SystemExit, match="unknown store"):
        access.main(["set", "bob", "s-404"])
    capsys.readouterr()
    assert access.main(["list"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"username": "admin", "store_ids": [], "all_stores": True, "role": None, "email": None},
        {
            "username": "alice",
            "store_ids": ["s-001"],
            "all_stores": False,
            "role": None,
            "email": None,
        },
    ]
    assert access.main(["clear", "alice"]) == 0
    assert not AccessStore(table).visibility("alice").granted  # cleared: sees nothing
