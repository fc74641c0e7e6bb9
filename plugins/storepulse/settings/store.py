"""The one store of the settings table: every reader and writer of settings goes through it.

    store = SettingsStore.connect()  # the environment's settings table
    store.upsert(StoreSettings(store_id="s-001", name="Main St", timezone="Europe/Paris",
                               currency="EUR"))
    store.seed_defaults()  # creates the default alert rules that are missing

Every command writes all or nothing: each setting is checked against the others before the first
write, and a write of several items is one DynamoDB transaction. A store that employees, alert
rules or dashboard grants still name is not deleted unless asked to ``cascade``.

Reading fails closed with a message naming the item: ``list``/``get`` refuse an invalid item,
``list_valid`` (the Lambda's and the audit's catalogue) logs it and keeps the valid ones beside
it. ``ALERT_STATE`` items (alert cooldowns) belong to the Lambda and are not managed here.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

import boto3
from boto3.dynamodb.conditions import Key as KeyCondition
from botocore.exceptions import ClientError
from pydantic import ValidationError

from storepulse import aws
from storepulse.config import settings
from storepulse.layout import Key, SettingsKind, Table, settings_key, table_name
from storepulse.settings.models import (
    DEFAULT_ALERT_RULES,
    AlertRuleSettings,
    BusinessProfile,
    EmployeeSettings,
    SettingsError,
    SettingsModel,
    StoreSettings,
    describe_errors,
    load_default_rules,
    model_for,
)

log = logging.getLogger(__name__)

M = TypeVar("M", bound=SettingsModel)

MAX_TRANSACTION_ITEMS: Final = 100  # DynamoDB's limit per TransactWriteItems
REFERENCE_LABELS: Final = {  # what may name a store, as an error message calls it
    SettingsKind.EMPLOYEE: "employee(s)",
    SettingsKind.ALERT_RULE: "alert rule(s)",
    SettingsKind.DASHBOARD_ACCESS: "the dashboard grant(s) of",
}


def _key(kind: SettingsKind, item_id: str | None) -> Key:
    model = model_for(kind)
    item_id = item_id or model.singleton_id
    if not item_id:
        raise SettingsError(f"a {kind} needs an id ({model.id_field})")
    return settings_key(kind, item_id)


class SettingsStore:
    """Reads and writes settings items in one DynamoDB table (a boto3 ``Table`` resource)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    @classmethod
    def connect(cls, name: str | None = None) -> SettingsStore:
        """The store on table ``name`` (default: this environment's settings table)."""
        resource = boto3.resource(
            "dynamodb", region_name=settings().region, config=aws.DEFAULT_CONFIG
        )
        return cls(resource.Table(name or table_name(Table.SETTINGS)))

    def list(self, kind: SettingsKind) -> builtins.list[SettingsModel]:
        """Every item of ``kind``, in id order; an invalid item is refused, naming it."""
        return self.list_of(model_for(kind))

    def get(self, kind: SettingsKind, item_id: str | None = None) -> SettingsModel | None:
        """One item; ``item_id`` may be omitted for the business profile and KPI selection."""
        return self.get_of(model_for(kind), _key(kind, item_id).sk)

    def list_of(self, model: type[M]) -> builtins.list[M]:
        return [self._parse(model, item) for item in self._query(model.kind)]

    def get_of(self, model: type[M], item_id: str) -> M | None:
        key = settings_key(model.kind, item_id)
        item = self.table.get_item(Key=key.as_item(), ConsistentRead=True).get("Item")
        return None if item is None else self._parse(model, item)

    def list_valid(self, model: type[M]) -> builtins.list[M]:
        """Every valid item of ``model``'s kind: an invalid one is logged and left out (fails
        closed for itself alone), so one bad item never hides the valid ones beside it."""
        found = []
        for item in self._query(model.kind):
            try:
                found.append(self._parse(model, item))
            except SettingsError as exc:
                log.error("%s; left out", exc)
        return found

    def profile(self) -> BusinessProfile | None:
        """The business profile, or None when there is none or it is invalid (logged)."""
        try:
            return self.get_of(BusinessProfile, BusinessProfile.singleton_id)
        except SettingsError as exc:
            log.error("%s; left out", exc)
            return None

    def upsert(self, setting: SettingsModel) -> None:
        """Create or replace an item, after checking it against the related settings."""
        self._check(setting)
        self.table.put_item(Item=setting.to_item())

    def delete(self, kind: SettingsKind, item_id: str | None = None, cascade: bool = False) -> bool:
        """Delete an item; False when there was none. A store still named by employees, alert
        rules or dashboard grants is refused, unless ``cascade``: then, in one transaction, its
        employees are deleted and it is removed from the rules and grants (a rule or grant left
        without a store is deleted: an empty list would mean every store, or none)."""
        key = _key(kind, item_id)
        if kind is SettingsKind.STORE:
            return self._delete_store(key, cascade)
        response = self.table.delete_item(Key=key.as_item(), ReturnValues="ALL_OLD")
        return "Attributes" in response

    def seed_defaults(self, path: Path = DEFAULT_ALERT_RULES) -> builtins.list[AlertRuleSettings]:
        """Create the default rules that do not exist yet and return them, all in one transaction
        after every rule was checked. Existing rules, changed by the user or not, are left alone
        (to turn a default off, set ``enabled`` to false: a deleted one comes back with the next
        seed)."""
        rules = load_default_rules(path)
        for rule in rules:
            self._check(rule)
        existing = {item["sk"] for item in self._query(SettingsKind.ALERT_RULE)}
        created = [rule for rule in rules if rule.item_id not in existing]
        self._transact([self._put(rule.to_item(), new=True) for rule in created])
        return created

    # --- deleting a store ---

    def _delete_store(self, key: Key, cascade: bool) -> bool:
        if self.table.get_item(Key=key.as_item(), ConsistentRead=True).get("Item") is None:
            return False
        changes = self._store_references(key.sk)
        if changes and not cascade:
            names = "; ".join(
                f"{REFERENCE_LABELS[kind]} {', '.join(i['sk'] for i in items)}"
                for kind, items in changes.items()
            )
            raise SettingsError(
                f"store {key.sk!r} is still named by {names}; change those first, or delete "
                "with --cascade (employees deleted, the store removed from rules and grants)"
            )
        actions = [self._delete(key.as_item())]
        actions += [self._without_store(item, key.sk) for kind in changes for item in changes[kind]]
        self._transact(actions)
        return True

    def _store_references(self, store_id: str) -> dict[SettingsKind, builtins.list[Any]]:
        """The items that name ``store_id``, per kind (raw items: grants are not settings)."""
        found = {
            kind: [
                i
                for i in self._query(kind)
                if i.get("store_id") == store_id or store_id in (i.get("store_ids") or ())
            ]
            for kind in REFERENCE_LABELS
        }
        return {kind: items for kind, items in found.items() if items}

    def _without_store(self, item: dict[str, Any], store_id: str) -> dict[str, Any]:
        """The transaction action that removes ``store_id`` from ``item``."""
        remaining = [s for s in item.get("store_ids") or () if s != store_id]
        if item["pk"] == SettingsKind.EMPLOYEE or not remaining:
            return self._delete({"pk": item["pk"], "sk": item["sk"]})
        return self._put({**item, "store_ids": remaining})

    # --- transactions ---

    def _put(self, item: dict[str, Any], new: bool = False) -> dict[str, Any]:
        put: dict[str, Any] = {"TableName": self.table.name, "Item": item}
        if new:  # another writer got there first: the whole transaction is refused
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        return {"Put": put}

    def _delete(self, key: dict[str, Any]) -> dict[str, Any]:
        return {"Delete": {"TableName": self.table.name, "Key": key}}

    def _transact(self, actions: builtins.list[dict[str, Any]]) -> None:
        """Write every action or none."""
        if not actions:
            return
        if len(actions) > MAX_TRANSACTION_ITEMS:
            raise SettingsError(
                f"{len(actions)} items would change at once, more than one transaction "
                f"holds ({MAX_TRANSACTION_ITEMS}); change some of them first"
            )
        try:
            self.table.meta.client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            raise SettingsError(
                "the settings changed while this command ran; nothing was written, run it again"
            ) from None

    # --- cross-checks ---

    def _check(self, setting: SettingsModel) -> None:
        match setting:
            case BusinessProfile(currency=currency):
                others = sorted(s.item_id for s in self._stores() if s.currency != currency)
                if others:
                    raise SettingsError(
                        f"business currency {currency} differs from the currency of store(s) "
                        f"{', '.join(others)}; every store must use the business currency"
                    )
            case StoreSettings(store_id=store_id, currency=currency):
                business = self.get_of(BusinessProfile, BusinessProfile.singleton_id)
                if business is not None and business.currency != currency:
                    raise SettingsError(
                        f"store {store_id!r} has currency {currency} but the business uses "
                        f"{business.currency}; every store must use the business currency"
                    )
            case EmployeeSettings(employee_id=employee_id, store_id=store_id):
                if self.get(SettingsKind.STORE, store_id) is None:
                    raise SettingsError(
                        f"employee {employee_id!r}: store {store_id!r} does not exist; "
                        "create the store first"
                    )
            case AlertRuleSettings(rule_id=rule_id, store_ids=store_ids) if store_ids:
                known = {s.item_id for s in self._stores()}
                if missing := [s for s in store_ids if s not in known]:
                    raise SettingsError(
                        f"alert rule {rule_id!r}: unknown store(s) {', '.join(missing)}; "
                        "create the stores first"
                    )

    def _stores(self) -> builtins.list[StoreSettings]:
        return self.list_of(StoreSettings)

    # --- reading ---

    def _query(self, kind: SettingsKind) -> Iterable[dict[str, Any]]:
        condition = KeyCondition("pk").eq(kind.value)
        return aws.query_items(self.table, KeyConditionExpression=condition, ConsistentRead=True)

    @staticmethod
    def _parse(model: type[M], item: Mapping[str, Any]) -> M:
        """An item edited by hand into something invalid is reported, naming it."""
        try:
            return model.from_item(item)
        except ValidationError as exc:
            problems = "; ".join(describe_errors(exc, item["sk"]))
            raise SettingsError(f"invalid {model.kind} item in the table: {problems}") from None
