"""Limit dashboard users to some stores (the grants are ``storepulse.settings.StoreAccess``).

    python -m storepulse.dashboard.access list
    python -m storepulse.dashboard.access set alice s-001 s-002
    python -m storepulse.dashboard.access set admin --all
    python -m storepulse.dashboard.access clear alice      # alice sees nothing again
    python -m storepulse.dashboard.access set bob s-001 --role manager --email bob@example.com

``--role`` (owner, manager, viewer) also makes USER a QuickSight user in that role's group, seeing
the same stores there (row-level security; the ``sync_quicksight_access`` DAG applies a change).

There is deliberately no HTTP endpoint that changes limits: whoever can run this command can
write the settings table anyway.
"""

from __future__ import annotations

import argparse
import json

from pydantic import ValidationError

from storepulse.settings import (
    ACCESS_ROLES,
    AccessStore,
    SettingsError,
    SettingsStore,
    StoreAccess,
    StoreSettings,
    describe_errors,
)

# --- command line ------------------------------------------------------------------------------


def _known_stores() -> list[str]:
    return [s.item_id for s in SettingsStore.connect().list_of(StoreSettings)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Limit dashboard users to some stores.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print every limited user as JSON")
    grant = commands.add_parser("set", help="let USER see the given stores, or --all of them")
    grant.add_argument("username")
    which = grant.add_mutually_exclusive_group(required=True)
    which.add_argument("store_ids", nargs="*", default=[])
    which.add_argument("--all", action="store_true", help="every store and the business total")
    grant.add_argument("--role", choices=ACCESS_ROLES, help="QuickSight user in this group")
    grant.add_argument("--email", help="the QuickSight user's email (with --role)")
    revoke = commands.add_parser("clear", help="remove USER's grant: they see nothing")
    revoke.add_argument("username")
    args = parser.parse_args(argv)
    store = AccessStore.connect()
    if args.command == "list":
        print(json.dumps([a.model_dump(mode="json") for a in store.list()], indent=2))
    elif args.command == "set":
        try:
            access = StoreAccess(
                username=args.username,
                store_ids=tuple(args.store_ids),
                all_stores=args.all,
                role=args.role,
                email=args.email,
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
