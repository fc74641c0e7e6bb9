"""Dashboard grants: fail closed without a grant, cached per user for a few seconds, and a change
made through the store applies at once."""

from __future__ import annotations

from typing import Any

import pytest

from storepulse.settings import NOTHING, AccessStore, SettingsError, StoreAccess


class Table:
    """The item calls ``AccessStore`` makes, on a dict; counts the reads."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.reads = 0

    def get_item(self, Key: dict[str, str], **_: Any) -> dict[str, Any]:  # noqa: N803
        self.reads += 1
        item = self.items.get((Key["pk"], Key["sk"]))
        return {} if item is None else {"Item": item}

    def put_item(self, Item: dict[str, Any]) -> None:  # noqa: N803
        self.items[(Item["pk"], Item["sk"])] = Item

    def delete_item(self, Key: dict[str, str], **_: Any) -> dict[str, Any]:  # noqa: N803
        old = self.items.pop((Key["pk"], Key["sk"]), None)
        return {} if old is None else {"Attributes": old}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_no_grant_sees_nothing_and_grants_are_cached_per_user() -> None:
    table, clock = Table(), Clock()
    access = AccessStore(table, cache_seconds=5, clock=clock)

    assert access.visibility("alice") == NOTHING
    table.put_item(StoreAccess(username="alice", store_ids=("s-1",)).to_item())  # by hand
    assert access.visibility("alice") == NOTHING  # cached
    assert table.reads == 1
    clock.now += 5
    assert access.visibility("alice").visible(["s-1", "s-2"]) == ["s-1"]
    assert not access.visibility("alice").allows(None)  # never the business total
    assert table.reads == 2


def test_a_change_through_the_store_applies_at_once() -> None:
    access = AccessStore(Table(), cache_seconds=60, clock=Clock())
    assert not access.visibility("bob").granted

    access.put(StoreAccess(username="bob", all_stores=True), known_stores=["s-1"])
    assert access.visibility("bob").allows(None)
    assert access.delete("bob") and not access.visibility("bob").granted
    with pytest.raises(SettingsError, match="unknown store"):
        access.put(StoreAccess(username="bob", store_ids=("s-9",)), known_stores=["s-1"])
