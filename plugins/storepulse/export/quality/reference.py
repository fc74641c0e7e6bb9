"""What the business declared, for the audit's known values: its stores, currencies and time
zone, taken from the settings' catalogue (``storepulse.settings``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from storepulse.settings import Catalog


@dataclass(frozen=True)
class Reference:
    """What the business declared: its stores, currencies and time zone (settings table)."""

    stores: frozenset[str]
    currencies: frozenset[str]
    timezone: str = "UTC"

    def to_dict(self) -> dict[str, Any]:
        return {
            "stores": sorted(self.stores),
            "currencies": sorted(self.currencies),
            "timezone": self.timezone,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        return cls(frozenset(data["stores"]), frozenset(data["currencies"]), data["timezone"])

    @classmethod
    def of(cls, catalog: Catalog) -> Reference:
        return cls(frozenset(catalog.stores), catalog.currencies, catalog.business_timezone)
