"""The settings as one read-only snapshot: what the stream processor, the export audit and the
dashboard read (time zones, stores, products, alert rules, the business's name and currency).

Loaded through ``SettingsStore.list_valid``: an invalid item is logged and left out, so its store
or product is unknown (its events are refused, its rows fail the audit) while the others work.
``CachedCatalog`` keeps one copy per Lambda container for ``ttl`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from storepulse.cache import TtlCache
from storepulse.settings.models import (
    AlertRuleSettings,
    BusinessProfile,
    ProductSettings,
    StoreSettings,
)
from storepulse.settings.store import SettingsStore

log = logging.getLogger(__name__)

# What a business without a profile yet gets: the clock's UTC, and a placeholder name.
DEFAULT_TIMEZONE: Final = "UTC"
DEFAULT_BUSINESS_NAME: Final = "StorePulse"
DEFAULT_CURRENCY: Final = "EUR"  # no profile and no store
_CATALOG: Final = "catalog"  # the one entry of CachedCatalog's cache


@dataclass(frozen=True)
class Catalog:
    business_timezone: str = DEFAULT_TIMEZONE
    stores: dict[str, StoreSettings] = field(default_factory=dict)
    products: dict[str, ProductSettings] = field(default_factory=dict)
    rules: tuple[AlertRuleSettings, ...] = ()
    business_name: str = DEFAULT_BUSINESS_NAME
    currency: str = DEFAULT_CURRENCY

    def timezone_of(self, store_id: str | None) -> str:
        """The store's time zone; None is the whole business."""
        return self.stores[store_id].timezone if store_id else self.business_timezone

    @property
    def currencies(self) -> frozenset[str]:
        return frozenset({self.currency, *(s.currency for s in self.stores.values())})


def catalog_of(
    profile: BusinessProfile | None,
    stores: Sequence[StoreSettings],
    products: Iterable[ProductSettings] = (),
    rules: Iterable[AlertRuleSettings] = (),
) -> Catalog:
    if profile is not None:
        business = {
            "business_timezone": profile.timezone,
            "business_name": profile.name,
            "currency": profile.currency,
        }
    else:  # no profile yet: the stores' currency (all stores share the business's)
        business = {"currency": stores[0].currency} if stores else {}
    return Catalog(
        stores={s.store_id: s for s in stores},
        products={p.sku: p for p in products},
        rules=tuple(rules),
        **business,
    )


def load_catalog(table: Any, rules: bool = True) -> Catalog:
    """Read the settings table (a boto3 ``Table``); ``rules`` False skips the alert rules."""
    store = SettingsStore(table)
    profile = store.profile()
    if profile is None:
        log.warning("no business profile in %s: business days in UTC", store.table.name)
    return catalog_of(
        profile,
        store.list_valid(StoreSettings),
        store.list_valid(ProductSettings),
        store.list_valid(AlertRuleSettings) if rules else [],
    )


class CachedCatalog:
    """``load()`` re-reads the table when the cached copy is older than ``ttl`` seconds (the
    project's ``TtlCache``, one entry); ``reload()`` re-reads at once, throttled."""

    def __init__(
        self,
        loader: Callable[[], Catalog],
        ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loader, self._clock = loader, clock
        self._cache = TtlCache(ttl, clock=clock)
        self._reloaded_at: float | None = None

    def load(self) -> Catalog:
        return self._cache.get(_CATALOG, self._loader)

    def reload(self, min_interval: float = 5.0) -> bool:
        """Re-read now (a record names a store the copy lacks), unless a re-read was forced
        less than ``min_interval`` seconds ago: a stream of unknown stores cannot turn every
        batch into a table read. Throttled on forced re-reads, not on the copy's age, so a store
        added just after a load is found by its first events. True if it re-read."""
        now = self._clock()
        if self._reloaded_at is not None and now - self._reloaded_at < min_interval:
            return False
        self._cache.put(_CATALOG, self._loader(), now)
        self._reloaded_at = now
        return True
