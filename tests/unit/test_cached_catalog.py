"""The stream processor's settings cache: re-read after its TTL, and at once for a store the copy
lacks (found by its first events, even just after a load), at most every few seconds."""

from __future__ import annotations

from storepulse.settings import CachedCatalog, Catalog


class Table:
    """A settings table whose stores the test changes; counts the reads."""

    def __init__(self) -> None:
        self.stores: dict = {}
        self.reads = 0

    def load(self) -> Catalog:
        self.reads += 1
        return Catalog("Europe/Paris", dict(self.stores), {}, ())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_copy_is_read_again_after_its_ttl() -> None:
    table, clock = Table(), Clock()
    cache = CachedCatalog(table.load, ttl=60, clock=clock)
    cache.load()
    clock.now += 59
    cache.load()
    assert table.reads == 1
    clock.now += 2
    cache.load()
    assert table.reads == 2


def test_a_store_added_just_after_a_load_is_found_by_its_first_events() -> None:
    """``make up``: the deploy's smoke event loads the catalogue, the demo store is seeded a
    second later, and its history arrives at once."""
    table, clock = Table(), Clock()
    cache = CachedCatalog(table.load, clock=clock)
    assert cache.load().stores == {}
    table.stores["s-001"] = object()
    clock.now += 1
    assert cache.reload(min_interval=5)
    assert "s-001" in cache.load().stores


def test_forced_reads_are_at_most_one_per_interval() -> None:
    table, clock = Table(), Clock()
    cache = CachedCatalog(table.load, clock=clock)
    cache.load()
    assert cache.reload(min_interval=5)
    clock.now += 4
    assert not cache.reload(min_interval=5)
    clock.now += 2
    assert cache.reload(min_interval=5)
    assert table.reads == 3
