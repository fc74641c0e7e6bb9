"""Manage the business's settings in the DynamoDB settings table.

    python -m storepulse.settings_cli [--table NAME] list KIND [--format table|json]
    python -m storepulse.settings_cli get KIND [ID]
    python -m storepulse.settings_cli upsert KIND [ID] (--json '{...}' | --file F)
    python -m storepulse.settings_cli delete KIND [ID] [--cascade]
    python -m storepulse.settings_cli seed-defaults [--file F]

KIND: business, store, product, employee, alert-rule, kpi. ID is the item's id (store_id, sku,
employee_id, rule_id); business and kpi have one item each and need none. ``upsert`` replaces the
whole item; an ID given on the command line fills in (or must match) the id field of the JSON.
JSON numbers are read as exact decimals. Every command writes all or nothing. A store that
employees, alert rules or dashboard grants still name is deleted only with ``--cascade`` (its
employees deleted, the store removed from the rules and grants, in one transaction).
Exit codes: 0 done; 1 not found; 2 invalid input or error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from storepulse import json_input
from storepulse.config import ConfigError, settings
from storepulse.layout import SettingsKind, Table, table_name
from storepulse.settings import (
    DEFAULT_ALERT_RULES,
    MODELS,
    SettingsError,
    SettingsModel,
    SettingsStore,
    describe_errors,
)

KINDS: Final = {
    "business": SettingsKind.BUSINESS,
    "store": SettingsKind.STORE,
    "product": SettingsKind.PRODUCT,
    "employee": SettingsKind.EMPLOYEE,
    "alert-rule": SettingsKind.ALERT_RULE,
    "kpi": SettingsKind.KPI,
}


class CliError(Exception):
    """A user-facing failure: printed as ``error: ...`` lines, exit code 2."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m storepulse.settings_cli",
        description="Manage the business's settings in the DynamoDB settings table.",
    )
    parser.add_argument("--table", help="settings table (default: the environment's)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    kind = argparse.ArgumentParser(add_help=False)
    kind.add_argument("kind", choices=KINDS, metavar="KIND", help=", ".join(KINDS))
    item = argparse.ArgumentParser(add_help=False, parents=[kind])
    item.add_argument("id", nargs="?", metavar="ID", help="item id (not for business, kpi)")

    listing = commands.add_parser("list", parents=[kind], help="list the items of a kind")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    commands.add_parser("get", parents=[item], help="print one item as JSON")
    upsert = commands.add_parser("upsert", parents=[item], help="create or replace an item")
    source = upsert.add_mutually_exclusive_group(required=True)
    source.add_argument("--json", help="the item as a JSON object")
    source.add_argument("--file", help="a file holding the JSON object, or - for stdin")
    delete = commands.add_parser("delete", parents=[item], help="delete an item")
    delete.add_argument(
        "--cascade",
        action="store_true",
        help="a store: also delete its employees and remove it from alert rules and grants",
    )
    seed = commands.add_parser("seed-defaults", help="create the missing default alert rules")
    seed.add_argument("--file", type=Path, default=DEFAULT_ALERT_RULES, help="rules file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        name = args.table or table_name(Table.SETTINGS)
    except ConfigError as exc:
        return _fail(str(exc))
    try:
        return COMMANDS[args.command](SettingsStore.connect(name), args)
    except CliError as exc:
        return _fail(*exc.lines)
    except (SettingsError, ConfigError, BotoCoreError) as exc:
        return _fail(str(exc))
    except ClientError as exc:
        return _fail(_client_error(exc, name))


def _client_error(exc: ClientError, name: str) -> str:
    error = exc.response.get("Error", {})
    if error.get("Code") == "ResourceNotFoundException":
        return (
            f"table {name!r} does not exist in region {settings().region}; deploy the real-time "
            "stack first (Airflow DAG deploy_realtime_stack), or pass --table"
        )
    return f"DynamoDB: {error.get('Code', 'error')}: {error.get('Message', exc)}"


def _fail(*lines: str) -> int:
    for line in lines:
        print(f"error: {line}", file=sys.stderr)
    return 2


# --- commands ----------------------------------------------------------------------------------


def _list(store: SettingsStore, args: argparse.Namespace) -> int:
    rows = [setting.model_dump(mode="json") for setting in store.list(KINDS[args.kind])]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif rows:
        print(render_table(rows))
    else:
        print(f"no {args.kind} settings")
    return 0


def _get(store: SettingsStore, args: argparse.Namespace) -> int:
    kind = KINDS[args.kind]
    setting = store.get(kind, _item_id(kind, args.id))
    if setting is None:
        return _not_found(args)
    print(json.dumps(setting.model_dump(mode="json"), indent=2))
    return 0


def _upsert(store: SettingsStore, args: argparse.Namespace) -> int:
    kind = KINDS[args.kind]
    setting = _validate(kind, args.kind, _with_id(kind, args.id, _read_object(args)))
    store.upsert(setting)
    print(f"upserted {args.kind} {setting.item_id}")
    return 0


def _delete(store: SettingsStore, args: argparse.Namespace) -> int:
    kind = KINDS[args.kind]
    item_id = _item_id(kind, args.id)
    if not store.delete(kind, item_id, cascade=args.cascade):
        return _not_found(args)
    print(f"deleted {args.kind} {item_id}")
    return 0


def _seed_defaults(store: SettingsStore, args: argparse.Namespace) -> int:
    created = store.seed_defaults(args.file)
    for rule in created:
        print(f"created alert-rule {rule.rule_id}")
    if not created:
        print("every default alert rule exists already")
    return 0


COMMANDS: Final = {
    "list": _list,
    "get": _get,
    "upsert": _upsert,
    "delete": _delete,
    "seed-defaults": _seed_defaults,
}


def _not_found(args: argparse.Namespace) -> int:
    print(f"not found: {args.kind} {args.id or ''}".rstrip(), file=sys.stderr)
    return 1


# --- input -------------------------------------------------------------------------------------


def _item_id(kind: SettingsKind, given: str | None) -> str:
    model = MODELS[kind]
    if model.id_field is None:
        if given not in (None, model.singleton_id):
            raise CliError(f"{kind.lower()} has a single item: give no ID")
        return model.singleton_id
    if not given:
        raise CliError(f"ID ({model.id_field}) is required")
    return given


def _read_object(args: argparse.Namespace) -> dict[str, Any]:
    source = "--json" if args.json is not None else args.file
    try:
        if args.json is not None:
            text = args.json
        elif args.file == "-":
            text = sys.stdin.read()
        else:
            text = Path(args.file).read_text(encoding="utf-8")
        data = json_input.loads(text)  # exact: 19.99 stays 19.99; nesting bounded
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    except ValueError as exc:  # JsonInputError, or a file that is not UTF-8
        raise CliError(f"{source}: {exc}") from None
    if not isinstance(data, dict):
        raise CliError(f"{source}: must be a JSON object")
    return data


def _with_id(kind: SettingsKind, given: str | None, data: dict[str, Any]) -> dict[str, Any]:
    """The ID argument fills in the id field, or must agree with it."""
    field = MODELS[kind].id_field
    if field is None:
        _item_id(kind, given)
        return data
    if given is None:
        return data
    if field in data and data[field] != given:
        raise CliError(f"ID {given!r} does not match {field} {data[field]!r} in the JSON")
    return {**data, field: given}


def _validate(kind: SettingsKind, kind_name: str, data: dict[str, Any]) -> SettingsModel:
    try:
        return MODELS[kind].model_validate(data)
    except ValidationError as exc:
        raise CliError(*describe_errors(exc, kind_name.replace("-", "_"))) from None


# --- output ------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def render_table(rows: list[dict[str, Any]]) -> str:
    """Aligned columns, one row per item, headed by the field names; an optional field no
    item sets is left out."""
    columns = [c for c in rows[0] if any(row[c] is not None for row in rows)]
    cells = [columns] + [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


if __name__ == "__main__":
    sys.exit(main())
