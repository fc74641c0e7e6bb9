"""Which stores each dashboard user may see.

One item per limited user in the settings table: pk ``DASHBOARD_ACCESS``, sk the Airflow
username, attribute ``store_ids`` (a list). A user without an item sees every store and the
whole business; a user with one sees only those stores (an empty list: none), never the
business total, which would include the others. Limits are kept beside the business's other
settings, so they follow the environment (and its backups) rather than one Airflow install.

    python -m storepulse.dashboard.access list
    python -m storepulse.dashboard.access set alice s-001 s-002
    python -m storepulse.dashboard.access clear alice

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
from typing import Annotated, Any, Final

import boto3
from boto3.dynamodb.conditions import Key as KeyCondition
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from storepulse import aws
from storepulse.config import settings
from storepulse.events import Identifier, StoreId
from storepulse.layout import Table, table_name
from storepulse.settings_store import SettingsError, _unique, describe_errors

ACCESS_KIND: Final = "DASHBOARD_ACCESS"
CACHE_SECONDS: Final = 5.0  # a changed limit applies within this many seconds


class StoreAccess(BaseModel):
    """The stores one user may see."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: Identifier
    store_ids: Annotated[tuple[StoreId, ...], AfterValidator(_unique)]

    def to_item(self) -> dict[str, Any]:
        return {"pk": ACCESS_KIND, "sk": self.username, "store_ids": list(self.store_ids)}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> StoreAccess:
        stored = item.get("store_ids") or []
        return cls(username=item["sk"], store_ids=tuple(sorted(stored)))


@dataclass(frozen=True)
class Visibility:
    """What a user may see: ``store_ids`` None means everything, the business total included."""

    store_ids: frozenset[str] | None = None

    @property
    def limited(self) -> bool:
        return self.store_ids is not None

    def allows(self, store_id: str | None) -> bool:
        """``store_id`` None is the whole business."""
        if self.store_ids is None:
            return True
        return store_id is not None and store_id in self.store_ids

    def visible(self, store_ids: Iterable[str]) -> list[str]:
        return [s for s in store_ids if self.allows(s)]


EVERYTHING: Final = Visibility()


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
        result = EVERYTHING if access is None else Visibility(frozenset(access.store_ids))
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
        """Limit a user to stores that exist (a typo would silently hide everything)."""
        if missing := sorted(set(access.store_ids) - set(known_stores)):
            raise SettingsError(f"unknown store(s) {', '.join(missing)}; create the stores first")
        self.table.put_item(Item=access.to_item())
        self._forget(access.username)

    def delete(self, username: str) -> bool:
        """Lift a user's limit; False when there was none."""
        key = {"pk": ACCESS_KIND, "sk": username}
        response = self.table.delete_item(Key=key, ReturnValues="ALL_OLD")
        self._forget(username)
        return "Attributes" in response

    def _forget(self, username: str) -> None:
        with self._lock:
            self._cache.pop(username, None)


# --- command line ------------------------------------------------------------------------------


def _known_stores() -> list[str]:
    from storepulse.layout import SettingsKind
    from storepulse.settings_store import SettingsStore

    return [s.item_id for s in SettingsStore.connect().list(SettingsKind.STORE)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Limit dashboard users to some stores.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print every limited user as JSON")
    limit = commands.add_parser("set", help="limit USER to the given stores (none: no store)")
    limit.add_argument("username")
    limit.add_argument("store_ids", nargs="*")
    lift = commands.add_parser("clear", help="let USER see every store again")
    lift.add_argument("username")
    args = parser.parse_args(argv)
    store = AccessStore.connect()
    if args.command == "list":
        print(json.dumps([a.model_dump(mode="json") for a in store.list()], indent=2))
    elif args.command == "set":
        try:
            access = StoreAccess(username=args.username, store_ids=tuple(args.store_ids))
            store.put(access, _known_stores())
        except ValidationError as exc:
            raise SystemExit("error: " + "; ".join(describe_errors(exc, "access"))) from None
        except SettingsError as exc:
            raise SystemExit(f"error: {exc}") from None
    elif not store.delete(args.username):
        print(f"{args.username} had no limit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
