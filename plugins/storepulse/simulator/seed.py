"""Seed the settings table with the simulated business, so the stream processor knows its stores
and products (``make up`` and the tests do this before sending simulated traffic)."""

from __future__ import annotations

from storepulse.settings import (
    BusinessProfile,
    EmployeeSettings,
    ProductSettings,
    SettingsStore,
    StoreSettings,
)
from storepulse.simulator.model import BusinessModel


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
                employee_id=e.employee_id, name=e.name, store_id=e.store_id, role=e.role
            )
            for e in model.employees
        ),
    ]
    for setting in settings:  # in this order: the store checks its currency against the profile
        store.upsert(setting)
    return len(settings)
