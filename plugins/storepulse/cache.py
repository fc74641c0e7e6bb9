"""The one TTL cache of the readers that a refresh asks again and again (the dashboard's buckets,
its catalogue, the store grants). Hand-written because it can serve a stale value while a fresh
one loads in the background, a step cachetools' caches do not have."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class TtlCache:
    """Values kept for ``seconds``; with ``refresh`` (a pool), a stale value is served while a
    fresh one loads in the background, so a slow read never sits on a request's path twice."""

    def __init__(
        self,
        seconds: float,
        refresh: ThreadPoolExecutor | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 50_000,
    ) -> None:
        self.seconds, self.refresh, self.clock, self.max_entries = (
            seconds,
            refresh,
            clock,
            max_entries,
        )
        self._entries: dict[Any, tuple[float, Any]] = {}
        self._loading: set[Any] = set()
        self._lock = threading.Lock()

    def get(self, key: Any, load: Callable[[], Any]) -> Any:
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] < self.seconds:
                return entry[1]
            serve_stale = entry is not None and self.refresh is not None
            if serve_stale and key not in self._loading:
                self._loading.add(key)
                assert self.refresh is not None
                self.refresh.submit(self._reload, key, load)
        if serve_stale:
            assert entry is not None
            return entry[1]
        value = load()
        self.put(key, value, now)
        return value

    def peek(self, key: Any) -> tuple[bool, Any]:
        """(fresh, value) without loading."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or self.clock() - entry[0] >= self.seconds:
            return False, None
        return True, entry[1]

    def put(self, key: Any, value: Any, at: float | None = None) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._evict()
            self._entries[key] = (self.clock() if at is None else at, value)

    def forget(self, key: Any) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def _reload(self, key: Any, load: Callable[[], Any]) -> None:
        try:
            self.put(key, load())
        finally:
            with self._lock:
                self._loading.discard(key)

    def _evict(self) -> None:
        """Drop expired entries, then the oldest half if that was not enough."""
        now = self.clock()
        for key in [k for k, (at, _) in self._entries.items() if now - at >= self.seconds]:
            del self._entries[key]
        if len(self._entries) >= self.max_entries:
            for key in list(self._entries)[: len(self._entries) // 2]:
                del self._entries[key]
