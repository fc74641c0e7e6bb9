"""Seed the settings table with the simulated business, so the stream processor knows its stores
and products (``make up`` and the tests do this before sending simulated traffic)."""

from __future__ import annotations

from storepulse.settings import (
    AlertRuleSettings,
    BusinessProfile,
    EmployeeSettings,
    ProductSettings,
    SettingsStore,
    Shift,
    StoreAccess,
    StoreSettings,
)
from storepulse.simulator.model import BusinessModel, Store


def roster(store: Store, index: int) -> tuple[Shift, ...]:
    """The simulated shifts of a store's ``index``-th employee: the manager (first) works the
    opening hours, the others alternate early (opening to midday) and late (midday to closing)
    shifts; one shift per distinct day's hours, on the weekdays with those hours."""
    days: dict[tuple[int, int], list[int]] = {}
    for weekday, hours in enumerate(store.hours):
        if hours is None:
            continue
        opens, closes = hours.opens.hour, hours.closes.hour + (1 if hours.closes.minute else 0)
        middle = (opens + closes) // 2
        span = (opens, closes) if index == 0 else (opens, middle) if index % 2 else (middle, closes)
        days.setdefault(span, []).append(weekday)
    return tuple(Shift(start=a, end=b, weekdays=tuple(w)) for (a, b), w in days.items())


def seed_settings(store: SettingsStore, model: BusinessModel, name: str = "Simulated shop") -> int:
    """Upsert the business profile, stores, products and employees; return how many items."""
    settings = [
        BusinessProfile(name=name, timezone=model.timezone, currency=model.stores[0].currency),
        *(
            StoreSettings(
                store_id=s.store_id, name=s.name, timezone=s.timezone, currency=s.currency
            )
            for s in model.stores
        ),
        *(
            ProductSettings(
                sku=p.sku,
                name=p.name,
                category=p.category,
                unit_price=p.unit_price,
                reorder_point=p.reorder_point,
            )
            for p in model.catalogue
        ),
        *(
            EmployeeSettings(
                employee_id=e.employee_id,
                name=e.name,
                store_id=e.store_id,
                role=e.role,
                shifts=roster(model.store(e.store_id), index),
            )
            for s in model.stores
            for index, e in enumerate(model.employees_of(s.store_id))
        ),
    ]
    for setting in settings:  # in this order: the store checks its currency against the profile
        store.upsert(setting)
    return len(settings)


def demo_grants(model: BusinessModel, admin: str) -> list[StoreAccess]:
    """The demo's one declaration of who sees what, on the dashboard and in QuickSight: the
    ``admin`` owns everything, and the first store's manager sees that store only, so the
    row-level security has a user to work on (``storepulse.quicksight.access``)."""
    first = model.stores[0].store_id
    manager = f"manager-{first}"
    return [
        StoreAccess(username=admin, all_stores=True, role="owner", email=f"{admin}@example.com"),
        StoreAccess(
            username=manager, store_ids=(first,), role="manager", email=f"{manager}@example.com"
        ),
    ]


# The demo's history holds one week of the same weekday (last week, filled a week behind the
# clock): its trend rules judge on that one (``storepulse.stream.trends``), not the defaults' two.
DEMO_TREND_MIN_WEEKS = 1


def demo_trend_rules(created: list[AlertRuleSettings]) -> list[AlertRuleSettings]:
    """The trend rules among the default rules the demo just created, judged on one past week."""
    return [
        AlertRuleSettings.model_validate(
            rule.model_dump() | {"params": rule.params | {"min_weeks": DEMO_TREND_MIN_WEEKS}}
        )
        for rule in created
        if rule.type == "trend"
    ]
