"""The incremental strategy's arithmetic: when a day opens, how a span becomes the exports AWS
accepts, which day an item belongs to, the items a day is staged from, and the embedded AWS's
lines for a window of its change log."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, date, datetime, timedelta

from storepulse.export.incremental import (
    MAX_WINDOW,
    MIN_WINDOW,
    ChangeSet,
    SnapshotSeed,
    _key,
    chained_windows,
    day_items,
    day_opens,
    item_day,
    logical_date_of,
    nightly_run_of,
)
from storepulse.export.quality.sample import SampleCheck, sample
from storepulse_local.dynamodb_export import incremental_lines

DAY = date(2026, 11, 26)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def test_a_day_opens_at_its_first_local_midnight_less_the_clock_margin() -> None:
    assert day_opens(DAY, ["America/New_York", "Europe/Paris"]) == at(25, 22)
    assert day_opens(DAY, []) == at(25, 23)  # UTC
    summer = day_opens(date(2026, 7, 1), ["Europe/Paris"])
    assert summer == datetime(2026, 6, 30, 21, tzinfo=UTC)  # CEST: UTC+2


def test_a_span_becomes_chained_exports_aws_accepts() -> None:
    windows = chained_windows(at(25, 22), at(28, 1))  # 51 h
    assert [(w.start, w.end) for w in windows] == [
        (at(25, 22), at(26, 22)),
        (at(26, 22), at(27, 22)),
        (at(27, 22), at(28, 1)),
    ]
    short = chained_windows(at(26, 1), at(26, 1, 10))
    assert [(w.start, w.end) for w in short] == [(at(26, 0, 55), at(26, 1, 10))]  # widened
    tail = chained_windows(at(25, 22), at(26, 22, 5))  # 24 h 05: a 5-minute tail widened back
    assert tail[-1].end - tail[-1].start == MIN_WINDOW and tail[-1].end == at(26, 22, 5)
    for window in (*windows, *short, *tail):
        assert MIN_WINDOW <= window.end - window.start <= MAX_WINDOW


def test_the_day_of_an_item() -> None:
    assert item_day({"pk": "ORDER#o-1", "sk": "ORDER", "business_date": "2026-11-26"}) == DAY
    assert item_day({"pk": "S#s-1#DAY#2026", "sk": "2026-11-26"}) == DAY
    assert item_day({"pk": "S#s-1#MIX#2026", "sk": "2026-11-26#2"}) == DAY
    assert item_day({"pk": "S#s-1", "sk": "tea-100g"}) is None  # a stock level: a snapshot


def test_the_run_of_a_day_in_the_business_time_zone() -> None:
    assert logical_date_of(DAY, "Europe/Paris") == at(26, 0)
    assert logical_date_of(DAY, "America/New_York") == at(27, 0)  # 19:00 on the 26th there


def test_the_run_cleared_for_a_late_day_is_the_one_the_scheduler_made() -> None:
    """Airflow 3 names a scheduled run by its interval's end (``run_after``), not its logical
    date: the scheduled run of the interval [26th, 27th) is ``scheduled__2026-11-27T...``."""
    paris = nightly_run_of(DAY, "Europe/Paris")
    assert (paris.logical_date, paris.run_after) == (at(26, 0), at(27, 0))
    assert paris.run_id == "scheduled__2026-11-27T00:00:00+00:00"
    new_york = nightly_run_of(DAY, "America/New_York")
    assert new_york.run_id == "scheduled__2026-11-28T00:00:00+00:00"


def test_a_day_is_staged_from_the_changes_and_the_unchanged_seed() -> None:
    changed = {"pk": "CUSTOMER#c-1", "sk": "PROFILE", "segment": "vip"}
    kept = {"pk": "CUSTOMER#c-2", "sk": "PROFILE", "segment": "new"}
    gone = {"pk": "CUSTOMER#c-3", "sk": "PROFILE", "segment": "new"}
    changes = ChangeSet(
        {
            _key({"pk": "CUSTOMER#c-1", "sk": "PROFILE"}): changed,
            _key({"pk": "CUSTOMER#c-3", "sk": "PROFILE"}): None,  # deleted in the window
        }
    )
    seed = SnapshotSeed(
        {
            _key({"pk": i["pk"], "sk": i["sk"]}): i | {"segment": "old"}
            for i in (changed, kept, gone)
        }
    )
    items = list(day_items(changes, seed)())
    assert items == [changed, kept | {"segment": "old"}]


def _z(item: dict) -> bytes:
    return zlib.compress(json.dumps({k: {"S": v} for k, v in item.items()}).encode())


def test_the_embedded_aws_lines_of_a_window() -> None:
    key = json.dumps({"pk": {"S": "a"}})
    t0 = at(26, 8).timestamp()
    log = [
        (t0, key, None, _z({"pk": "a", "v": "1"})),  # before the window
        (t0 + 3600, key, _z({"pk": "a", "v": "1"}), _z({"pk": "a", "v": "2"})),
        (t0 + 3700, key, _z({"pk": "a", "v": "2"}), _z({"pk": "a", "v": "3"})),
        (t0 + 9000, key, _z({"pk": "a", "v": "3"}), None),  # after the window
    ]
    start, end = t0 + 1800, t0 + 7200
    (line,) = incremental_lines(log, start, end, "NEW_AND_OLD_IMAGES")
    assert line["OldImage"]["v"] == {"S": "1"} and line["NewImage"]["v"] == {"S": "3"}
    assert line["Metadata"]["WriteTimestampMicros"] == {"N": str(int((t0 + 3700) * 1e6))}
    (deleted,) = incremental_lines(log, t0 + 8000, t0 + 10000, "NEW_IMAGE")
    assert set(deleted) == {"Metadata", "Keys"}  # a deletion: no image in NEW_IMAGE view
    assert incremental_lines(log, t0 + 10000, t0 + 20000, "NEW_IMAGE") == []
    assert timedelta(seconds=end - start) >= MIN_WINDOW


def test_the_read_back_samples_evenly_and_fails_on_a_closed_days_majority() -> None:
    rows = [{"n": n} for n in range(100)]
    assert [r["n"] for r in sample(rows, 4)] == [0, 25, 50, 75]
    assert sample(rows[:3], 4) == rows[:3]
    assert SampleCheck("orders", 4, ("a", "b", "c")).failed
    assert not SampleCheck("orders", 4, ("a", "b")).failed  # late events during the run
    assert not SampleCheck("inventory_snapshot", 4, ("a", "b", "c", "d")).failed  # moves: logged
