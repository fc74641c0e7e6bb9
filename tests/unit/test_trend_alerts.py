"""Trend alerts judged on hourly series, anomaly injection in the simulator, and unknown SKUs.

The simulated scenario (one store, three Thursdays, one anomaly of each kind on the last) is
shared by the module; a simulated month with precision, recall and the false-positive rate is
``benchmarks/trend_alerts.py``."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from benchmarks.trend_alerts import HourlySeries, replay, score, trend_rules
from storepulse.layout import zone
from storepulse.settings import (
    AlertRuleSettings,
    ProductSettings,
    StoreSettings,
    TrendParams,
    catalog_of,
    describe_errors,
    load_default_rules,
)
from storepulse.simulator import BusinessModel, Simulator
from storepulse.simulator.anomalies import Anomaly
from storepulse.stream.aggregate import StockWrite
from storepulse.stream.alerts import ONCE, low_stock_alerts, unknown_sku_alerts
from storepulse.stream.trends import (
    binomial_at_most,
    chance_level,
    judge,
    past_hours,
    poisson_at_most,
    window_history,
)

D = Decimal


def params(**given: Any) -> TrendParams:
    return TrendParams.model_validate({"min_weeks": 2, "weeks": 4, **given})


def weeks(*values: int, name: str = "revenue") -> list[dict[str, Decimal]]:
    """Past hours of ``name``; revenue comes with an order per 10.00."""
    return [{name: D(v), **({"orders": D(v // 10)} if name == "revenue" else {})} for v in values]


# --- the judgement -------------------------------------------------------------------------------


def test_a_completed_hour_below_half_its_usual_value_is_a_drop() -> None:
    history = weeks(2000, 2200, 1800, 4000)
    found = judge(params(min_volume=100), {"revenue": D(900), "orders": D(90)}, history, True)
    assert found is not None
    assert (found.direction, found.value, found.baseline, found.weeks) == ("drop", 900, 2100, 4)


def test_a_drop_is_judged_only_once_the_hour_is_over() -> None:
    assert judge(params(min_volume=100), {"revenue": D(900)}, weeks(2000, 2200), False) is None


def test_a_quiet_hour_is_never_a_drop() -> None:
    """Below min_volume, halving is noise (3 sales instead of 6), not news."""
    assert judge(params(min_volume=100), {"revenue": D(20)}, weeks(60, 70, 80), True) is None


def test_a_halving_within_chance_is_no_drop() -> None:
    """21 orders an hour usually; 9 this hour is within 3 standard deviations of chance."""
    hour = {"revenue": D(90), "orders": D(9)}
    assert judge(params(min_volume=100), hour, weeks(210, 200, 220), True) is None
    found = judge(params(min_volume=100, sigmas=1), hour, weeks(210, 200, 220), True)
    assert found is not None and found.direction == "drop"


def test_a_few_big_baskets_are_no_spike() -> None:
    """Revenue doubled by the usual number of orders: chance is judged on the orders."""
    history = weeks(500, 520, 480)
    assert judge(params(), {"revenue": D(1100), "orders": D(52)}, history, True) is None
    found = judge(params(), {"revenue": D(1100), "orders": D(110)}, history, False)
    assert found is not None and found.direction == "spike"


def test_a_spike_over_a_quiet_baseline_is_measured_against_min_volume() -> None:
    quiet = weeks(2, 3, 2, name="sessions")
    spike = params(metric="sessions", min_volume=20)
    assert judge(spike, {"sessions": D(35)}, quiet, True) is None  # 35 < 2 x 20
    found = judge(spike, {"sessions": D(45)}, quiet, False)  # the running hour alerts too
    assert found is not None and found.direction == "spike"


def test_the_median_ignores_one_unusual_past_week() -> None:
    """Last month's injected spike in week 2 does not hide this week's drop."""
    history = weeks(2000, 20000, 2100, 1900)
    found = judge(params(min_volume=50), {"revenue": D(900), "orders": D(90)}, history, True)
    assert found is not None and found.baseline == 2050


def test_too_little_history_gives_no_verdict() -> None:
    assert judge(params(min_volume=50), {"revenue": D(0)}, weeks(500), True) is None


def test_direction_limits_what_alerts() -> None:
    history = weeks(200, 200)
    assert judge(params(direction="spike"), {"revenue": D(10)}, history, True) is None
    assert judge(params(direction="drop"), {"revenue": D(900)}, history, True) is None


def test_conversion_is_purchases_per_session_pooled_over_the_weeks() -> None:
    history = [{"sessions": D(500), "purchases": D(50)}, {"sessions": D(300), "purchases": D(30)}]
    rule = params(metric="conversion", direction="drop", drop_ratio="0.4", min_volume=20)
    collapsed = judge(rule, {"sessions": D(400), "purchases": D(10)}, history, True)
    assert collapsed is not None
    assert (collapsed.value, collapsed.baseline) == (D("0.025"), D("0.1"))
    assert judge(rule, {"sessions": D(400), "purchases": D(30)}, history, True) is None
    # 100 sessions expect 10 purchases at 10%: below min_volume (20 expected purchases)
    assert judge(rule, {"sessions": D(100), "purchases": D(0)}, history, True) is None
    assert judge(rule, {"sessions": D(400), "purchases": D(0)}, history, False) is None


def test_unpaid_checkouts_tell_a_collapse_that_the_sessions_alone_cannot() -> None:
    """9 purchases expected from the sessions and 2 made is within chance (P = 0.6%); 13
    checkouts of which two in three are usually paid, and only 2 paid, is not (P = 0.009%)."""
    past = {"sessions": D(300), "checkouts": D(39), "purchases": D(27)}
    rule = params(metric="conversion", direction="drop", drop_ratio="0.4", min_volume=5)
    hour = {"sessions": D(100), "purchases": D(2)}
    assert judge(rule, hour, [past, past], True) is None  # no checkouts counted: sessions only
    found = judge(rule, hour | {"checkouts": D(13)}, [past, past], True)
    assert found is not None and (found.value, found.baseline) == (D("0.02"), D("0.09"))


def test_the_chance_tests_are_exact_one_sided_tails() -> None:
    assert chance_level(D(3)) == pytest.approx(0.0013499, rel=1e-4)
    assert poisson_at_most(D(1), D(8)) == pytest.approx(9 * math.exp(-8))
    assert poisson_at_most(D(5000), D(10000)) == 0.0  # summed in logs: no underflow error
    assert poisson_at_most(D(10000), D(10000)) == pytest.approx(0.5, abs=0.01)
    assert binomial_at_most(D(1), D(3), D("0.5")) == pytest.approx(0.5)
    assert binomial_at_most(D(3), D(3), D("0.5")) == 1.0


def test_a_past_week_counts_only_where_its_data_covers_the_window() -> None:
    """The demo's last week is filled a week behind the clock: while today's 10:00 runs, last
    week's 10:00 is half-filled and 11:00 empty, so that week is no baseline yet; once 11:00
    (or the next day) has events, it is."""
    paris, now = "Europe/Paris", datetime(2026, 3, 12, 9, tzinfo=UTC)  # Thursday 10:00 in Paris
    last_week = now - timedelta(weeks=1)
    hours = {last_week: {"sessions": D(40)}}
    days = {last_week.date()}
    rule = params(metric="sessions", min_weeks=1)

    def history() -> list[Any]:
        return window_history(
            lambda h: hours.get(h, {}),
            lambda h: h in hours,
            lambda h: h.astimezone(zone(paris)).date() in days,
            now,
            paris,
            rule,
        )

    assert history() == []  # running: no verdict, however many sessions today has
    hours[last_week + timedelta(hours=1)] = {"sessions": D(3)}
    assert history() == [{"sessions": D(40)}]
    del hours[last_week + timedelta(hours=1)]
    days.add(last_week.date() + timedelta(days=1))  # the store closed early; the next day came
    assert history() == [{"sessions": D(40)}]


def test_the_demos_trend_rules_judge_on_its_one_past_week() -> None:
    from storepulse.simulator.seed import demo_trend_rules

    rules = demo_trend_rules(load_default_rules())
    assert {r.rule_id for r in rules} == {r.rule_id for r in trend_rules()}
    for rule in rules:
        demo, default = (
            rule.parameters(TrendParams),
            next(r for r in trend_rules() if r.rule_id == rule.rule_id).parameters(TrendParams),
        )
        assert demo == default.model_copy(update={"min_weeks": 1})
    sessions = next(r for r in rules if r.rule_id == "traffic-trend").parameters(TrendParams)
    found = judge(sessions, {"sessions": D(10)}, weeks(80, name="sessions"), True)
    assert found is not None and found.direction == "drop"


def test_past_hours_keep_the_local_hour_across_a_daylight_saving_change() -> None:
    """11:00 in Paris on Thursday 5 November (CET) was 11:00 CEST four weeks before: 09Z."""
    hour = datetime(2026, 11, 5, 10, tzinfo=UTC)
    assert past_hours(hour, "Europe/Paris", 2) == [
        datetime(2026, 10, 29, 10, tzinfo=UTC),
        datetime(2026, 10, 22, 9, tzinfo=UTC),
    ]


# --- the rule's settings -------------------------------------------------------------------------


def _rule_errors(**given: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        AlertRuleSettings.model_validate({"rule_id": "t", "type": "trend", "params": given})
    return describe_errors(caught.value, "rule")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"metric": "refunds"}, "rule.params.metric: must be 'revenue', 'orders', 'sessions',"),
        ({"drop_ratio": 1}, "rule.params.drop_ratio: must be < 1"),
        ({"spike_ratio": 1}, "rule.params.spike_ratio: must be > 1"),
        ({"weeks": 13}, "rule.params.weeks: must be <= 12"),
        ({"min_volume": 0}, "rule.params.min_volume: must be > 0"),
        ({"drop_ratio": 0.5}, "rule.params.drop_ratio: must be an integer or a decimal string"),
        ({"min_weeks": 5}, "rule.params: min_weeks (5) must be <= weeks (4)"),
        ({"window_minutes": 5}, "rule.params.window_minutes: unknown field"),
    ],
)
def test_bad_trend_params_are_refused(given: dict[str, Any], message: str) -> None:
    errors = _rule_errors(**given)
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_default_rules_cover_sales_traffic_conversion_and_unknown_skus() -> None:
    rules = {r.rule_id: r for r in load_default_rules()}
    metrics = {r.parameters(TrendParams).metric for r in rules.values() if r.type == "trend"}
    assert metrics == {"revenue", "sessions", "conversion"}
    assert rules["unknown-sku"].type == "unknown_sku"


# --- the simulator's anomalies -------------------------------------------------------------------

MODEL = BusinessModel.generate(7, stores=1)
START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday; no daylight-saving change for 3 weeks


def test_without_anomalies_in_its_window_a_simulation_is_unchanged() -> None:
    later = Anomaly("spike", "s-001", START + timedelta(days=3), START + timedelta(days=4), 3.0)
    end = START + timedelta(hours=6)
    plain = [e.to_json() for e in Simulator(MODEL, 7, START).events_between(START, end)]
    sim = Simulator(MODEL, 7, START, anomalies=[later])
    assert [e.to_json() for e in sim.events_between(START, end)] == plain
    assert sim.ground_truth.to_dict()["anomalies"] == [later.to_dict()]


def test_anomalies_are_checked() -> None:
    with pytest.raises(ValueError, match="a drop needs a factor < 1"):
        Anomaly("drop", "s-001", START, START + timedelta(hours=1), 2.0)
    with pytest.raises(KeyError, match="unknown store 's-404'"):
        Simulator(
            MODEL,
            7,
            START,
            anomalies=[Anomaly("spike", "s-404", START, START + timedelta(hours=1), 3.0)],
        )


# Three Thursdays a week apart, each simulated alone from 08:00 to 22:00 (a day costs seconds, a
# month minutes): two are the baseline, the third has a drop, a conversion collapse and a spike.
# At this rate a 3-hour window expects about 15 web purchases: enough to tell a collapse.
THURSDAYS = [datetime(2026, 3, 5, tzinfo=UTC) + timedelta(weeks=n) for n in range(3)]
RATE = 0.3


def _local(day: datetime, hour: int) -> datetime:
    return day.replace(hour=hour - 1)  # Paris is UTC+1 in March (before the 29th)


@pytest.fixture(scope="module")
def scenario() -> tuple[list[Anomaly], HourlySeries]:
    day = THURSDAYS[-1]
    anomalies = [
        # in this order: a spike empties shelves, and an empty shelf sells nothing online
        Anomaly("drop", "s-001", _local(day, 10), _local(day, 12), 0.2),
        Anomaly("conversion_collapse", "s-001", _local(day, 14), _local(day, 17), 0.1),
        Anomaly("spike", "s-001", _local(day, 18), _local(day, 20), 3.0),
    ]
    series = HourlySeries({"s-001": "Europe/Paris"})
    for start in THURSDAYS:
        injected = anomalies if start == day else []
        opens, closes = _local(start, 8), _local(start, 22)
        sim = Simulator(MODEL, 7, opens, rate=RATE, anomalies=injected)
        for event in sim.events_between(opens, closes):
            series.add(event)
    return anomalies, series


def test_injected_anomalies_fire_and_other_hours_stay_quiet(scenario) -> None:
    anomalies, series = scenario
    day = THURSDAYS[-1]
    fired, _ = replay(trend_rules(), series, day, day + timedelta(days=1))
    result = score(anomalies, fired)
    assert result.recall_by_kind == {"conversion_collapse": 1.0, "drop": 1.0, "spike": 1.0}
    assert result.alerts == result.true_alerts, [(a.rule.rule_id, a.hour, a.finding) for a in fired]


# --- unknown SKUs --------------------------------------------------------------------------------

CATALOG = catalog_of(
    None,
    [StoreSettings(store_id="s-001", name="s", timezone="Europe/Paris", currency="EUR")],
    [ProductSettings(sku="tea", name="Tea", category="t", unit_price=D("4.00"), reorder_point=3)],
    [AlertRuleSettings(rule_id="low", type="low_stock")],
)


def test_an_unknown_sku_is_a_data_problem_not_a_stock_alert() -> None:
    stock = [StockWrite("shard", "s-001", sku) for sku in ("tea", "ghost-1", "ghost-1")]
    (alert,) = unknown_sku_alerts(CATALOG, stock)
    assert (alert.rule.type, alert.subject, alert.period, alert.per_store) == (
        "unknown_sku",
        "unknown-sku:ghost-1",
        ONCE,
        False,
    )
    items = [
        {"store_id": "s-001", "sku": "ghost-1", "on_hand": D(-4)},
        {"store_id": "s-001", "sku": "tea", "on_hand": D(2)},
    ]
    assert [a.subject for a in low_stock_alerts(CATALOG, items)] == ["tea"]
