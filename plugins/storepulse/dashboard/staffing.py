"""Staffing from foot traffic: visitors per staff member in each local hour of one store's day.

Definitions (the API documents them too):

- **visitors**: the store's foot traffic (door entries) in the local hour, from the hour buckets
  the stream processor keeps; **typical** is the mean of the same hour on the same weekday over
  the previous ``WEEKS`` weeks that have any data (a new shop is not averaged with zeros).
- **staff**: the store's employees (settings) on duty in that hour: those whose ``shifts`` cover
  it, and those without shifts in every hour with visitors.
- **ratio**: visitors / staff; null without staff.
- **status** against the store's ``visitors_per_staff`` target (settings): ``under`` staffed when
  the ratio is above ``target * (1 + TOLERANCE)`` (or visitors come with nobody on duty),
  ``over`` staffed when below ``target * (1 - TOLERANCE)``, else ``ok``; null without a target.
  Judged for today's hours so far and for the typical day (what a roster plans for).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final, Literal

from pydantic import BaseModel, Field

from storepulse.dashboard.reader import Item
from storepulse.dashboard.today import parse_hour
from storepulse.layout import zone
from storepulse.settings import EmployeeSettings

WEEKS: Final = 4
TOLERANCE: Final = Decimal("0.25")
_RATIO = Decimal("0.01")

Status = Literal["under", "ok", "over"]


class StaffingHour(BaseModel):
    hour: int = Field(description="local hour of the day, 0-23")
    staff: int
    visitors: int = Field(description="today")
    typical_visitors: Decimal | None = Field(description="same weekday's mean; null: no history")
    ratio: Decimal | None = Field(description="today's visitors per staff member")
    typical_ratio: Decimal | None
    status: Status | None = Field(description="today against the target")
    typical_status: Status | None = Field(description="the typical day against the target")


class StaffingReport(BaseModel):
    store_id: str
    business_date: date
    target: Decimal | None = Field(description="visitors per staff member per hour; null: unset")
    tolerance: Decimal
    weeks: int = Field(description="same weekdays averaged (those with data)")
    hours: list[StaffingHour]
    understaffed_hours: list[int] = Field(description="local hours: typical day, else today")
    overstaffed_hours: list[int]


def visitors_by_hour(hours: Iterable[Item], timezone: str) -> dict[int, int]:
    """Foot traffic per local hour of day, from hour buckets (UTC hours)."""
    found: dict[int, int] = defaultdict(int)
    for item in hours:
        local = parse_hour(str(item["sk"])).astimezone(zone(timezone))
        found[local.hour] += int(item.get("foot_traffic", 0))
    return dict(found)


def _ratio(visitors: Decimal | int, staff: int) -> Decimal | None:
    if not staff:
        return None
    return (Decimal(visitors) / staff).quantize(_RATIO, rounding=ROUND_HALF_EVEN)


def judge(visitors: Decimal | int, staff: int, target: Decimal | None) -> Status | None:
    if target is None or (not visitors and not staff):
        return None
    if not staff:
        return "under"
    ratio = Decimal(visitors) / staff
    if ratio > target * (1 + TOLERANCE):
        return "under"
    if ratio < target * (1 - TOLERANCE):
        return "over"
    return "ok"


def _staff(employees: Sequence[EmployeeSettings], weekday: int, hour: int, busy: bool) -> int:
    return sum(
        1 for e in employees if (e.shifts and e.on_duty(weekday, hour)) or (not e.shifts and busy)
    )


def report(
    store_id: str,
    day: date,
    today: dict[int, int],
    past_days: Sequence[dict[int, int]],
    employees: Sequence[EmployeeSettings],
    target: Decimal | None,
    now_hour: int | None = None,
) -> StaffingReport:
    """``today`` and each of ``past_days`` (the same weekday, earlier weeks): visitors per local
    hour; ``employees``: the store's; ``now_hour``: the local hour so far (later hours of today
    are not judged yet; None: the whole day is over)."""
    weeks = [d for d in past_days if d]  # a day without any data is left out of the mean
    typical = {
        h: Decimal(sum(d.get(h, 0) for d in weeks)) / len(weeks)
        for h in {h for d in weeks for h in d}
    }
    weekday = day.weekday()
    rostered = {h for h in range(24) for e in employees if e.shifts and e.on_duty(weekday, h)}
    rows = []
    for hour in sorted(set(today) | set(typical) | rostered):
        usual = typical.get(hour)
        busy = bool(today.get(hour) or usual)
        staff = _staff(employees, weekday, hour, busy)
        mean = None if usual is None else usual.quantize(_RATIO, rounding=ROUND_HALF_EVEN)
        judged = now_hour is None or hour <= now_hour
        rows.append(
            StaffingHour(
                hour=hour,
                staff=staff,
                visitors=today.get(hour, 0),
                typical_visitors=mean,
                ratio=_ratio(today.get(hour, 0), staff),
                typical_ratio=None if usual is None else _ratio(usual, staff),
                status=judge(today.get(hour, 0), staff, target) if judged else None,
                typical_status=None if usual is None else judge(usual, staff, target),
            )
        )
    verdicts = {r.hour: r.typical_status or r.status for r in rows}
    return StaffingReport(
        store_id=store_id,
        business_date=day,
        target=target,
        tolerance=TOLERANCE,
        weeks=len(weeks),
        hours=rows,
        understaffed_hours=[h for h, v in verdicts.items() if v == "under"],
        overstaffed_hours=[h for h, v in verdicts.items() if v == "over"],
    )
