"""Which stores each dashboard user may see, read through the settings store.

One ``StoreAccess`` item per user (pk ``DASHBOARD_ACCESS``, sk the Airflow username). Access fails
closed: a user without an item (never granted, or lost in a table restore) sees no store at all.
Grants are kept beside the business's other settings, so they follow the environment (and its
backups) rather than one Airflow install. The command line is ``storepulse.dashboard.access``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from storepulse.cache import TtlCache
from storepulse.layout import settings_key
from storepulse.settings.models import SettingsError, StoreAccess
from storepulse.settings.store import SettingsStore

CACHE_SECONDS: Final = 5.0  # a changed limit applies within this many seconds


@dataclass(frozen=True)
class Visibility:
    """What a user may see: ``store_ids`` None means everything, the business total included;
    an empty set means nothing."""

    store_ids: frozenset[str] | None = None

    @classmethod
    def of(cls, access: StoreAccess | None) -> Visibility:
        if access is None:  # fails closed
            return NOTHING
        return EVERYTHING if access.all_stores else cls(frozenset(access.store_ids))

    @property
    def limited(self) -> bool:
        return self.store_ids is not None

    def allows(self, store_id: str | None) -> bool:
        """``store_id`` None is the whole business."""
        if self.store_ids is None:
            return True
        return store_id is not None and store_id in self.store_ids

    @property
    def granted(self) -> bool:
        """False: no store at all (never granted, or the grant is gone)."""
        return self.store_ids is None or bool(self.store_ids)

    def visible(self, store_ids: Iterable[str]) -> list[str]:
        return [s for s in store_ids if self.allows(s)]


EVERYTHING: Final = Visibility()
NOTHING: Final = Visibility(frozenset())


class AccessStore:
    """Reads and writes the limits; reads are cached for ``CACHE_SECONDS`` per user, because the
    dashboard asks on every refresh (every 2 s per open page)."""

    def __init__(
        self,
        table: Any,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings, self.table = SettingsStore(table), table
        self._cache = TtlCache(cache_seconds, clock=clock)

    @classmethod
    def connect(cls, name: str | None = None) -> AccessStore:
        return cls(SettingsStore.connect(name).table)

    def visibility(self, username: str) -> Visibility:
        return self._cache.get(username, lambda: Visibility.of(self.get(username)))

    def get(self, username: str) -> StoreAccess | None:
        return self.settings.get_of(StoreAccess, username)

    def list(self) -> list[StoreAccess]:
        return self.settings.list_of(StoreAccess)

    def put(self, access: StoreAccess, known_stores: Iterable[str]) -> None:
        """Grant a user stores that exist (a typo would silently hide everything)."""
        if missing := sorted(set(access.store_ids) - set(known_stores)):
            raise SettingsError(f"unknown store(s) {', '.join(missing)}; create the stores first")
        self.table.put_item(Item=access.to_item())
        self._cache.forget(access.username)

    def delete(self, username: str) -> bool:
        """Remove a user's grant (they see nothing); False when there was none."""
        key = settings_key(StoreAccess.kind, username)
        response = self.table.delete_item(Key=key.as_item(), ReturnValues="ALL_OLD")
        self._cache.forget(username)
        return "Attributes" in response
