"""Trend alerts: an hour of a store against its moving baseline.

The baseline of an hour is the same local hour of the same weekday over the last ``weeks``
weeks: the median of those hours (robust to one unusual week) for a count or revenue, and the
pooled rate (purchases / sessions over all of them) for ``conversion``. A past week counts only
if its data covers the hour: the store had events that day (its day item exists: a week before
the store opened, or a closed holiday, is no evidence of a quiet hour) and after the hour (the
next hour's or the next day's item exists: a day cut short is no evidence either). Fewer than
``min_weeks`` such weeks: no verdict.

- **drop**: the completed hour is below ``drop_ratio`` times a baseline of at least
  ``min_volume`` (a quiet shop's quiet hour is never paged).
- **spike**: the hour exceeds ``spike_ratio`` times ``max(baseline, min_volume)``; counters only
  grow, so the running hour is judged too and a spike alerts while it happens.
- **conversion** (purchases / sessions): judged on completed hours, against the baseline's
  pooled rate, when the purchases that rate expects reach ``min_volume``.

The change must also be more than ``sigmas`` standard deviations of chance (Poisson, or what the
past weeks vary if more) in a count: the metric itself, orders for revenue (a few big baskets
are not a trend). Halving 6 sales is noise, halving 60 is news. Conversion's count, purchases,
is small: it is judged exactly, one-sided, at the same chance level (0.135% at 3 sigmas), against
the sessions and, for a drop, against the checkouts started (a payment failure leaves checkouts
unpaid: far less noise than purchases per session).

A completed hour is judged once the store's newest event is ``settle_minutes`` past its end
(late POS syncs land meanwhile). Where it is computed, so the Lambda stays fast: from the hour
and day items the stream already writes (``storepulse.layout.bucket_keys``), read with one
BatchGetItem per store and hour; a past week does not change, so each container caches the
baseline per store and hour (read again once the hour is complete) and judges a completed hour
once (``TrendWatch``). The running hour's
counters come from the batch's own writes. ``benchmarks/trend_alerts.py`` measures both.

The judgement (``judge``) is a pure function of hourly counters, which the tests and the
benchmark drive with the simulator's ground truth.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from storepulse.layout import Grain, Key, bucket_keys, utc_hour, zone
from storepulse.settings import AlertRuleSettings, Catalog, TrendParams
from storepulse.stream.aggregate import BatchAggregate
from storepulse.stream.alerts import Alert
from storepulse.stream.batch_io import batch_get

Counters = Mapping[str, Decimal]
HOUR = timedelta(hours=1)
_RATE_STEP = Decimal("0.000001")  # conversion rates to 6 places, as the lake holds them
_MAD_TO_SD = Decimal("1.4826")  # a normal distribution's sd per median absolute deviation
_CACHE_LIMIT = 4096  # entries per container: a few hundred bytes each


@dataclass(frozen=True)
class Finding:
    direction: str  # "drop" or "spike"
    value: Decimal
    baseline: Decimal
    weeks: int  # past weeks the baseline stands on


def _number(counters: Counters, name: str) -> Decimal:
    return Decimal(counters.get(name, 0))


def judge(
    params: TrendParams, current: Counters, history: Sequence[Counters], complete: bool
) -> Finding | None:
    """The verdict on one hour (``current``: its counters so far; ``history``: the same hour of
    the past weeks that have data; ``complete``: the hour is over)."""
    if len(history) < params.min_weeks:
        return None
    if params.metric == "conversion":
        return _judge_conversion(params, current, history) if complete else None
    value = _number(current, params.metric)
    baseline = _median(history, params.metric)
    # Revenue is judged by its orders for chance: a few big baskets are not a trend.
    counted = "orders" if params.metric == "revenue" else params.metric
    count, usual = _number(current, counted), _median(history, counted)
    chance = params.sigmas * _noise(usual, [_number(h, counted) for h in history])
    if (
        complete
        and params.direction != "spike"
        and baseline >= params.min_volume
        and value < params.drop_ratio * baseline
        and usual - count > chance
    ):
        return Finding("drop", value, baseline, len(history))
    if (
        params.direction != "drop"
        and value > params.spike_ratio * max(baseline, params.min_volume)
        and count - usual > chance
    ):
        return Finding("spike", value, baseline, len(history))
    return None


def _median(history: Sequence[Counters], name: str) -> Decimal:
    return Decimal(statistics.median(_number(h, name) for h in history))


def _noise(expected: Decimal, past: Sequence[Decimal]) -> Decimal:
    """The standard deviation of a count expected at ``expected`` by chance: Poisson, and at
    least what the past weeks themselves vary (1.4826 x their median absolute deviation:
    weeks with an empty shelf sell less). At least 1, so nothing is significant at zero."""
    centre = statistics.median(past)
    spread = _MAD_TO_SD * Decimal(statistics.median(abs(v - centre) for v in past))
    return max(expected.sqrt(), spread, Decimal(1))


def _judge_conversion(
    params: TrendParams, current: Counters, history: Sequence[Counters]
) -> Finding | None:
    """Purchases against the sessions times the baseline's rate: ``min_volume`` is the purchases
    expected (a conversion of 3% needs hundreds of sessions to tell a collapse). Chance is judged
    one-sided on the count of purchases, exactly: against a Poisson count expected from the
    sessions, or, for a drop, against the checkouts started times the baseline's paid share (a
    binomial: about two in three checkouts are paid, so 13 checkouts paying 1 purchase is news
    where 9 purchases expected from the sessions and 1 made is not yet). Either test suffices."""
    sessions = _number(current, "sessions")
    past_sessions = sum(_number(h, "sessions") for h in history)
    if not sessions or not past_sessions:
        return None
    purchases = _number(current, "purchases")
    rate = (purchases / sessions).quantize(_RATE_STEP)
    baseline = (sum(_number(h, "purchases") for h in history) / past_sessions).quantize(_RATE_STEP)
    expected = sessions * baseline
    if expected < params.min_volume:
        return None
    alpha = chance_level(params.sigmas)
    unlikely_low = (
        poisson_at_most(purchases, expected) < alpha
        or _paid_share_at_most(current, history, purchases) < alpha
    )
    if params.direction != "spike" and rate < params.drop_ratio * baseline and unlikely_low:
        return Finding("drop", rate, baseline, len(history))
    unlikely_high = 1 - poisson_at_most(purchases - 1, expected) < alpha
    if params.direction != "drop" and rate > params.spike_ratio * baseline and unlikely_high:
        return Finding("spike", rate, baseline, len(history))
    return None


def _paid_share_at_most(current: Counters, history: Sequence[Counters], paid: Decimal) -> float:
    """The chance of at most ``paid`` purchases from the checkouts started, at the share of
    checkouts the past weeks' same window paid (1.0: no checkouts to judge by)."""
    checkouts = _number(current, "checkouts")
    past_checkouts = sum(_number(h, "checkouts") for h in history)
    if not checkouts or not past_checkouts:
        return 1.0
    share = sum(_number(h, "purchases") for h in history) / past_checkouts
    if share >= 1:  # every checkout paid, or purchases of checkouts from the window before
        return 1.0
    return binomial_at_most(paid, checkouts, share)


def chance_level(sigmas: Decimal) -> float:
    """The one-sided tail of a normal distribution beyond ``sigmas`` (0.135% at 3): how unlikely
    by chance an exact test's count must be."""
    return 0.5 * math.erfc(float(sigmas) / math.sqrt(2))


def _log_sum(logs: Sequence[float]) -> float:
    top = max(logs)
    return top + math.log(sum(math.exp(x - top) for x in logs))


def poisson_at_most(count: Decimal, expected: Decimal) -> float:
    """P(X <= count) for a Poisson count of mean ``expected`` (summed in logs: no underflow at
    large means)."""
    if count < 0:
        return 0.0
    mean = float(expected)
    if mean <= 0:
        return 1.0
    logs = [k * math.log(mean) - mean - math.lgamma(k + 1) for k in range(int(count) + 1)]
    return min(1.0, math.exp(_log_sum(logs)))


def binomial_at_most(count: Decimal, trials: Decimal, share: Decimal) -> float:
    """P(X <= count) for the successes of ``trials`` tries of chance ``share`` (0 < share < 1)."""
    n, p = int(trials), float(share)
    if count < 0:
        return 0.0
    if count >= n:
        return 1.0
    logs = [
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
        for k in range(int(count) + 1)
    ]
    return min(1.0, math.exp(_log_sum(logs)))


def past_hours(hour: datetime, timezone: str, weeks: int) -> list[datetime]:
    """The UTC starts of the same local hour and weekday, 1 to ``weeks`` weeks before ``hour``
    (across a daylight-saving change, a UTC hour earlier or later)."""
    local = hour.astimezone(zone(timezone))
    return [
        datetime.combine(local.date() - timedelta(weeks=k), local.time(), tzinfo=zone(timezone))
        .astimezone(UTC)
        .replace(minute=0)
        for k in range(1, weeks + 1)
    ]


def hour_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def window(end: datetime, hours: int) -> list[datetime]:
    """The UTC starts of the ``hours`` hours that end with the hour starting at ``end``."""
    return [end - HOUR * back for back in range(hours - 1, -1, -1)]


def summed(hours: Iterable[Counters]) -> dict[str, Decimal]:
    total: dict[str, Decimal] = {}
    for counters in hours:
        for name, value in counters.items():
            if isinstance(value, Decimal | int):
                total[name] = total.get(name, Decimal(0)) + Decimal(value)
    return total


def window_history(
    hour_counters: Callable[[datetime], Counters],
    hour_seen: Callable[[datetime], bool],
    day_seen: Callable[[datetime], bool],
    end: datetime,
    timezone: str,
    params: TrendParams,
) -> list[Counters]:
    """The window ending at ``end`` in each past week whose data covers it, summed over its
    hours. Covered: the store had events that day (``day_seen``: the day item of the local day
    holding the hour), and its data goes on past the window (``hour_seen``: the next hour has
    events, or the next local day has): a day whose data stops early, still being filled or cut
    by an outage, is no evidence of a quiet hour after it."""
    columns = [past_hours(hour, timezone, params.weeks) for hour in window(end, params.hours)]
    return [
        summed(hour_counters(column[week]) for column in columns)
        for week in range(params.weeks)
        if _covered(columns[-1][week], timezone, hour_seen, day_seen)
    ]


def _covered(
    last: datetime,
    timezone: str,
    hour_seen: Callable[[datetime], bool],
    day_seen: Callable[[datetime], bool],
) -> bool:
    return day_seen(last) and (hour_seen(last + HOUR) or day_seen(next_day(last, timezone)))


def next_day(hour: datetime, timezone: str) -> datetime:
    """Noon of the local day after ``hour``'s (a moment on it, whatever the daylight saving)."""
    local = hour.astimezone(zone(timezone)).date() + timedelta(days=1)
    return datetime.combine(local, time(12), tzinfo=zone(timezone)).astimezone(UTC)


def _hour_key(store_id: str, hour: datetime, timezone: str) -> Key:
    return bucket_keys(store_id, hour, timezone)[Grain.HOUR]


def _day_key(store_id: str, hour: datetime, timezone: str) -> Key:
    return bucket_keys(store_id, hour, timezone)[Grain.DAY]


@dataclass(frozen=True)
class _Check:
    rule: AlertRuleSettings
    params: TrendParams
    store_id: str
    timezone: str
    hour: datetime  # the window's last hour
    complete: bool

    @property
    def baseline_key(self) -> tuple[str, datetime, int, int, bool]:
        # A completed hour reads its baseline again: past weeks may have been covered since
        # the running hour read it (late events, a day still being filled).
        return (self.store_id, self.hour, self.params.weeks, self.params.hours, self.complete)

    def current_keys(self) -> list[Key]:
        return [
            _hour_key(self.store_id, h, self.timezone) for h in window(self.hour, self.params.hours)
        ]

    def history(self, items: Mapping[Key, Counters]) -> list[Counters]:
        return window_history(
            lambda hour: items.get(_hour_key(self.store_id, hour, self.timezone), {}),
            lambda hour: _hour_key(self.store_id, hour, self.timezone) in items,
            lambda hour: _day_key(self.store_id, hour, self.timezone) in items,
            self.hour,
            self.timezone,
            self.params,
        )

    def history_keys(self) -> set[Key]:
        """The past weeks' hours of the window, their days, and what tells they are covered:
        the hour after the window and the next day."""
        keys = set()
        for hour in window(self.hour, self.params.hours):
            for past in past_hours(hour, self.timezone, self.params.weeks):
                keys |= {
                    _hour_key(self.store_id, past, self.timezone),
                    _day_key(self.store_id, past, self.timezone),
                }
        for last in past_hours(self.hour, self.timezone, self.params.weeks):
            keys |= {
                _hour_key(self.store_id, last + HOUR, self.timezone),
                _day_key(self.store_id, next_day(last, self.timezone), self.timezone),
            }
        return keys


def _checks(
    rule: AlertRuleSettings, store_id: str, timezone: str, latest: datetime
) -> list[_Check]:
    """What ``rule`` judges for a store whose newest event is at ``latest``: the window ending
    with the running hour (spikes of counters), and the one ending with the last hour
    completed ``settle_minutes`` ago."""
    params = rule.parameters(TrendParams)
    checks = []
    if params.direction != "drop" and params.metric != "conversion":
        checks.append(_Check(rule, params, store_id, timezone, hour_start(latest), complete=False))
    settled = hour_start(latest - timedelta(minutes=params.settle_minutes)) - HOUR
    checks.append(_Check(rule, params, store_id, timezone, settled, complete=True))
    return checks


class TrendWatch:
    """Judges the trend rules for the stores of a batch; one per Lambda container (it caches
    the baselines, which past weeks fix, and the completed windows it already judged)."""

    def __init__(self, dynamodb: Any, metrics_table: str) -> None:
        self.dynamodb, self.metrics_table = dynamodb, metrics_table
        self._history: dict[tuple[str, datetime, int, int, bool], list[Counters]] = {}
        self._judged: set[tuple[str, str, datetime]] = set()
        self.reads = 0  # BatchGetItem calls, for the benchmark

    def alerts(
        self,
        catalog: Catalog,
        latest_by_store: Mapping[str, datetime],
        written: Mapping[Key, Mapping[str, Any]],
    ) -> list[Alert]:
        """``written``: the items this batch wrote (after the write), by key."""
        checks = [
            check
            for rule in catalog.rules
            if rule.type == "trend"
            for store_id, latest in sorted(latest_by_store.items())
            if rule.applies_to(store_id) and store_id in catalog.stores
            for check in _checks(rule, store_id, catalog.stores[store_id].timezone, latest)
            if not (check.complete and self._judged_key(check) in self._judged)
        ]
        if not checks:
            return []
        items = self._load(checks, written)
        alerts = []
        for check in checks:
            current = summed(items.get(key, {}) for key in check.current_keys())
            finding = judge(
                check.params, current, self._history[check.baseline_key], check.complete
            )
            if check.complete:
                self._remember(self._judged, self._judged_key(check))
            if finding is not None:
                alerts.append(_alert(check, finding))
        return alerts

    @staticmethod
    def _judged_key(check: _Check) -> tuple[str, str, datetime]:
        return (check.rule.rule_id, check.store_id, check.hour)

    def _load(
        self, checks: list[_Check], written: Mapping[Key, Mapping[str, Any]]
    ) -> Mapping[Key, Mapping[str, Any]]:
        """Reads, in one BatchGetItem (100 keys a request), the judged hours the batch did not
        write and the past weeks not cached yet; fills the baseline cache; returns the items."""
        wanted: set[Key] = set()
        for check in checks:
            wanted |= {key for key in check.current_keys() if key not in written}
            if check.baseline_key not in self._history:
                wanted |= check.history_keys()
        found: dict[Key, Mapping[str, Any]] = {}
        if wanted:
            self.reads += 1
            found = batch_get(self.dynamodb, self.metrics_table, sorted(wanted, key=str))
        found |= written  # what the batch wrote is newer than what the read returned
        for check in checks:
            if check.baseline_key not in self._history:
                self._remember(self._history, check.baseline_key, check.history(found))
        return found

    @staticmethod
    def _remember(cache: Any, key: Any, value: Any = None) -> None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()  # old hours are not judged again: start afresh
        if isinstance(cache, set):
            cache.add(key)
        else:
            cache[key] = value


_METRIC_NAMES = {
    "revenue": "Revenue",
    "orders": "Orders",
    "sessions": "Visitors (sessions)",
    "page_views": "Page views",
    "foot_traffic": "Foot traffic",
    "conversion": "Conversion",
}


def _shown(value: Decimal, metric: str) -> str:
    if metric == "conversion":
        return f"{(value * 100).quantize(Decimal('0.1'))}%"
    return str(value.quantize(Decimal("0.01")) if metric == "revenue" else value.normalize())


def _alert(check: _Check, finding: Finding) -> Alert:
    metric = check.params.metric
    first = window(check.hour, check.params.hours)[0].astimezone(zone(check.timezone))
    local = check.hour.astimezone(zone(check.timezone))
    when = f"{first:%a %H}:00-{(local + HOUR):%H}:00"
    return Alert(
        check.rule,
        check.store_id,
        f"trend:{metric}",
        f"{_METRIC_NAMES[metric]} {finding.direction} at {check.store_id} {when}: "
        f"{_shown(finding.value, metric)} vs usual {_shown(finding.baseline, metric)}",
        {
            "metric": metric,
            "direction": finding.direction,
            "hour": utc_hour(check.hour),
            "hours": check.params.hours,
            "local_start": first.isoformat(),
            "complete": check.complete,
            "value": str(finding.value),
            "baseline": str(finding.baseline),
            "weeks": finding.weeks,
        },
        period=utc_hour(check.hour),
    )


def latest_events(agg: BatchAggregate) -> dict[str, datetime]:
    """The newest event time per store, traffic or sale: what the trend rules judge by (a
    store whose POS went quiet still sends web and door events)."""
    latest = dict(agg.latest_traffic)
    for store_id, moment in agg.latest_sales.items():
        latest[store_id] = max(moment, latest.get(store_id, moment))
    return latest
