"""Anomalies injected into a simulation at known times, so trend alerts can be scored against
the ground truth (``Simulator(..., anomalies=...)``; ``GroundTruth.anomalies`` lists them).

- ``spike``: a store's walk-ins and web sessions times ``factor`` (> 1: a promotion went viral);
- ``drop``: the same with ``factor`` < 1 (a road closed, the webshop half down);
- ``conversion_collapse``: the chance that a web checkout is paid times ``factor`` (< 1: the
  payment provider fails), so sessions stay and purchases fall.

Without anomalies every factor is exactly 1.0, so a simulation is byte-identical to one made
before anomalies existed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from storepulse.simulator.model import BusinessModel

AnomalyKind = Literal["spike", "drop", "conversion_collapse"]
KINDS: Final[tuple[AnomalyKind, ...]] = ("spike", "drop", "conversion_collapse")
TRAFFIC_KINDS: Final = frozenset({"spike", "drop"})
# What ``plan`` injects: strong enough that an owner would want to hear of it.
DEFAULT_FACTORS: Final[dict[AnomalyKind, float]] = {
    "spike": 3.0,
    "drop": 0.2,
    "conversion_collapse": 0.1,
}


@dataclass(frozen=True)
class Anomaly:
    kind: AnomalyKind
    store_id: str
    start: datetime  # UTC, aware
    end: datetime
    factor: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"anomaly kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.start.tzinfo is None or not self.start < self.end:
            raise ValueError("an anomaly needs an aware start before its end")
        below_one = self.kind != "spike"
        if self.factor <= 0 or (self.factor < 1) != below_one or self.factor == 1:
            raise ValueError(f"a {self.kind} needs a factor {'< 1' if below_one else '> 1'} > 0")

    def active(self, store_id: str, at: datetime) -> bool:
        return store_id == self.store_id and self.start <= at < self.end

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "store_id": self.store_id,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "factor": self.factor,
        }


def factor(
    anomalies: Sequence[Anomaly], kinds: frozenset[str], store_id: str, at: datetime
) -> float:
    """The product of the factors of the ``kinds`` of anomaly active at ``at`` (1.0: none)."""
    result = 1.0
    for anomaly in anomalies:
        if anomaly.kind in kinds and anomaly.active(store_id, at):
            result *= anomaly.factor
    return result


def plan(
    model: BusinessModel,
    start: datetime,
    days: int,
    per_kind: int,
    *,
    seed: int = 1,
    hours: int = 3,
) -> list[Anomaly]:
    """``per_kind`` anomalies of each kind over ``days`` from ``start``, ``hours`` long, each in
    a store's opening hours (whole local hours), on distinct days, none overlapping another."""
    rng = random.Random(f"storepulse-anomalies:{seed}")
    slots = _open_slots(model, start, days, hours)
    rng.shuffle(slots)
    chosen: list[Anomaly] = []
    used_days: set[tuple[str, datetime]] = set()
    for kind in KINDS:
        for _ in range(per_kind):
            store_id, begin, day = next((s, b, d) for s, b, d in slots if (s, d) not in used_days)
            used_days.add((store_id, day))
            chosen.append(
                Anomaly(
                    kind, store_id, begin, begin + timedelta(hours=hours), DEFAULT_FACTORS[kind]
                )
            )
    return sorted(chosen, key=lambda a: (a.start, a.store_id))


def _open_slots(
    model: BusinessModel, start: datetime, days: int, hours: int
) -> list[tuple[str, datetime, datetime]]:
    """(store, UTC start, local midnight) of every whole local hour from which the store stays
    open ``hours`` hours."""
    slots = []
    for store in model.stores:
        first = start.astimezone(store.tz).date()
        for n in range(days):
            window = store.open_on(first + timedelta(days=n))
            if window is None:
                continue
            opens, closes = window
            moment = opens.replace(minute=0) + (timedelta(hours=1) if opens.minute else timedelta())
            midnight = datetime.combine(opens.date(), datetime.min.time(), store.tz)
            while moment + timedelta(hours=hours) <= closes:
                if moment >= start:
                    slots.append((store.store_id, moment.astimezone(UTC), midnight))
                moment += timedelta(hours=1)
    return slots
