"""Which stores each dashboard user may see.

One item per user in the settings table: pk ``DASHBOARD_ACCESS``, sk the Airflow username, and
either ``all_stores: true`` (every store and the whole business) or ``store_ids`` (a list: only
those stores, never the business total, which would include the others). Access fails closed: a
user without an item (never granted, or lost in a table restore) sees no store at all. Grants are
kept beside the business's other settings, so they follow the environment (and its backups)
rather than one Airflow install.

    python -m storepulse.dashboard.access list
    python -m storepulse.dashboard.access set alice s-001 s-002
    python -m storepulse.dashboard.access set admin --all
    python -m storepulse.dashboard.access clear alice      # alice sees nothing again

There is deliberately no HTTP endpoint that changes limits: whoever can run this command can
write the settings table anyway.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Self

import boto3
from boto3.dynamodb.conditions import Key as KeyCondition
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StrictBool,
    ValidationError,
    model_validator,
)

from storepulse import aws
from storepulse.config import settings
from storepulse.events import Identifier, StoreId
from storepulse.layout import SettingsKind, Table, table_name
from storepulse.settings_store import SettingsError, _unique, describe_errors

ACCESS_KIND: Final = SettingsKind.DASHBOARD_ACCESS.value
CACHE_SECONDS: Final = 5.0  # a changed limit applies within this many seconds


class StoreAccess(BaseModel):
    """The stores one user may see: ``all_stores``, or exactly ``store_ids``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: Identifier
    store_ids: Annotated[tuple[StoreId, ...], AfterValidator(_unique)] = ()
    all_stores: StrictBool = False

    @model_validator(mode="after")
    def _one_kind_of_grant(self) -> Self:
        if self.all_stores and self.store_ids:
            raise ValueError("either all stores or a list of stores, not both")
        return self

    def to_item(self) -> dict[str, Any]:
        if self.all_stores:
            return {"pk": ACCESS_KIND, "sk": self.username, "all_stores": True}
        return {"pk": ACCESS_KIND, "sk": self.username, "store_ids": list(self.store_ids)}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> StoreAccess:
        stored = item.get("store_ids") or []
        return cls(
            username=item["sk"],
            store_ids=tuple(sorted(stored)),
            all_stores=item.get("all_stores") is True,  # only an explicit true grants all
        )

    @property
    def visibility(self) -> Visibility:
        return EVERYTHING if self.all_stores else Visibility(frozenset(self.store_ids))


@dataclass(frozen=True)
class Visibility:
    """What a user may see: ``store_ids`` None means everything, the business total included;
    an empty set means nothing."""

    store_ids: frozenset[str] | None = None

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
        self.table, self.cache_seconds, self.clock = table, cache_seconds, clock
        self._cache: dict[str, tuple[float, Visibility]] = {}
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, name: str | None = None) -> AccessStore:
        resource = boto3.resource(
            "dynamodb", region_name=settings().region, config=aws.DEFAULT_CONFIG
        )
        return cls(resource.Table(name or table_name(Table.SETTINGS)))

    def visibility(self, username: str) -> Visibility:
        now = self.clock()
        with self._lock:
            cached = self._cache.get(username)
        if cached and now - cached[0] < self.cache_seconds:
            return cached[1]
        access = self.get(username)
        result = NOTHING if access is None else access.visibility  # fails closed
        with self._lock:
            self._cache[username] = (now, result)
        return result

    def get(self, username: str) -> StoreAccess | None:
        key = {"pk": ACCESS_KIND, "sk": username}
        item = self.table.get_item(Key=key, ConsistentRead=True).get("Item")
        return None if item is None else StoreAccess.from_item(item)

    def list(self) -> list[StoreAccess]:
        condition = KeyCondition("pk").eq(ACCESS_KIND)
        kwargs: dict[str, Any] = {"KeyConditionExpression": condition, "ConsistentRead": True}
        found = []
        while True:
            page = self.table.query(**kwargs)
            found += [StoreAccess.from_item(item) for item in page["Items"]]
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def put(self, access: StoreAccess, known_stores: Iterable[str]) -> None:
        """Grant a user stores that exist (a typo would silently hide everything)."""
        if missing := sorted(set(access.store_ids) - set(known_stores)):
            raise SettingsError(f"unknown store(s) {', '.join(missing)}; create the stores first")
        self.table.put_item(Item=access.to_item())
        self._forget(access.username)

    def delete(self, username: str) -> bool:
        """Remove a user's grant (they see nothing); False when there was none."""
        key = {"pk": ACCESS_KIND, "sk": username}
        response = self.table.delete_item(Key=key, ReturnValues="ALL_OLD")
        self._forget(username)
        return "Attributes" in response

    def _forget(self, username: str) -> None:
        with self._lock:
            self._cache.pop(username, None)


# --- command line ------------------------------------------------------------------------------


def _known_stores() -> list[str]:
    from storepulse.settings_store import SettingsStore

    return [s.item_id for s in SettingsStore.connect().list(SettingsKind.STORE)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Limit dashboard users to some stores.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print every limited user as JSON")
    grant = commands.add_parser("set", help="let USER see the given stores, or --all of them")
    grant.add_argument("username")
    which = grant.add_mutually_exclusive_group(required=True)
    which.add_argument("store_ids", nargs="*", default=[])
    which.add_argument("--all", action="store_true", help="every store and the business total")
    revoke = commands.add_parser("clear", help="remove USER's grant: they see nothing")
    revoke.add_argument("username")
    args = parser.parse_args(argv)
    store = AccessStore.connect()
    if args.command == "list":
        print(json.dumps([a.model_dump(mode="json") for a in store.list()], indent=2))
    elif args.command == "set":
        try:
            access = StoreAccess(
                username=args.username, store_ids=tuple(args.store_ids), all_stores=args.all
            )
            store.put(access, _known_stores())
        except ValidationError as exc:
            raise SystemExit("error: " + "; ".join(describe_errors(exc, "access"))) from None
        except SettingsError as exc:
            raise SystemExit(f"error: {exc}") from None
    elif not store.delete(args.username):
        print(f"{args.username} had no grant")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
