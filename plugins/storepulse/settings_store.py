"""The business's settings (profile, stores, products, employees, alert rules, KPI selection):
validated models and a store on the DynamoDB settings table.

Each model maps to one item: pk = its ``SettingsKind``, sk = its id, and the attributes that
``storepulse.stream.catalog`` reads (the contract with the Lambda). Numbers are written as
``Decimal`` (never float), so an item written here equals the item DynamoDB gives back.

    store = SettingsStore.connect()  # the environment's settings table
    store.upsert(StoreSettings(store_id="s-001", name="Main St", timezone="Europe/Paris",
                               currency="EUR"))
    store.seed_defaults()  # creates the default alert rules that are missing

Every command writes all or nothing: each setting is checked against the others before the first
write, and a write of several items is one DynamoDB transaction. A store that employees, alert
rules or dashboard grants still name is not deleted unless asked to ``cascade``.

``ALERT_STATE`` items (alert cooldowns) belong to the Lambda and are not managed here;
``DASHBOARD_ACCESS`` items belong to ``storepulse.dashboard.access`` and are only updated here
when a store they name is deleted.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal, Self
from zoneinfo import available_timezones

import boto3
from boto3.dynamodb.conditions import Key as KeyCondition
from botocore.exceptions import ClientError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
)
from pydantic_core import PydanticCustomError

from storepulse import aws, json_input
from storepulse.config import REPO_ROOT, settings
from storepulse.events import (
    MAX_STOCK,
    Currency,
    Identifier,
    Money,
    PositiveMoney,
    StoreId,
    Text,
)
from storepulse.events import _message as _error_message  # same wording as event errors
from storepulse.layout import Key, SettingsKind, Table, settings_key, table_name

__all__ = [
    "DEFAULT_ALERT_RULES",
    "KPI_CATALOGUE",
    "MODELS",
    "AlertRuleSettings",
    "BusinessProfile",
    "EmployeeSettings",
    "KpiSelection",
    "ProductSettings",
    "SettingsError",
    "SettingsModel",
    "SettingsStore",
    "StoreSettings",
    "describe_errors",
    "load_default_rules",
    "model_for",
]

DEFAULT_ALERT_RULES: Final = REPO_ROOT / "infra" / "alert_rules.json"

KPI_CATALOGUE: Final = (
    "revenue",
    "orders",
    "average_order_value",
    "units",
    "visitors",  # sessions
    "conversion_rate",
    "cart_abandonment_rate",
    "foot_traffic",
    "refunds",
    "refund_amount",
    "page_views",
)

MAX_TRANSACTION_ITEMS: Final = 100  # DynamoDB's limit per TransactWriteItems
REFERENCE_LABELS: Final = {  # what may name a store, as an error message calls it
    SettingsKind.EMPLOYEE: "employee(s)",
    SettingsKind.ALERT_RULE: "alert rule(s)",
    SettingsKind.DASHBOARD_ACCESS: "the dashboard grant(s) of",
}

# The Lambda sums a window over the minute buckets of at most two local days (start and end), so
# no window may be longer than a day.
MAX_WINDOW_MINUTES: Final = 24 * 60


class SettingsError(ValueError):
    """A setting that cannot be stored or read; the message says which and why."""


# --- field types -------------------------------------------------------------------------------


def _integral(value: object) -> object:
    """DynamoDB returns every number as Decimal: accept whole Decimals where an int is due."""
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return value


def _exact_number(value: object) -> object:
    if isinstance(value, float):
        raise PydanticCustomError(
            "number_float", 'must be an integer or a decimal string such as "0.5", not a float'
        )
    if isinstance(value, bool):
        raise PydanticCustomError("number_type", "must be a number")
    return value


@cache
def _zones() -> frozenset[str]:
    # Membership, not ZoneInfo(name): on a case-insensitive disk "europe/paris" would load here
    # and then fail in the Lambda.
    return frozenset(available_timezones())


def _iana_zone(name: str) -> str:
    if name not in _zones():
        raise PydanticCustomError(
            "timezone",
            "unknown time zone '{name}' (use an IANA name such as 'Europe/Paris')",
            {"name": name},
        )
    return name


def _known_kpi(name: str) -> str:
    if name not in KPI_CATALOGUE:
        raise PydanticCustomError(
            "kpi",
            "unknown KPI '{name}' (known: {known})",
            {"name": name, "known": ", ".join(KPI_CATALOGUE)},
        )
    return name


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise PydanticCustomError("duplicate", "duplicate '{value}'", {"value": value})
        seen.add(value)
    return values


Count = Annotated[int, BeforeValidator(_integral), Strict()]
StockCount = Annotated[Count, Field(ge=0, le=MAX_STOCK)]
Minutes = Annotated[Count, Field(gt=0, le=MAX_WINDOW_MINUTES)]
Timezone = Annotated[str, Strict(), AfterValidator(_iana_zone)]
Ratio = Annotated[
    Decimal, BeforeValidator(_exact_number), Field(gt=0, max_digits=12, decimal_places=6)
]
KpiName = Annotated[str, Strict(), AfterValidator(_known_kpi)]
RuleId = StoreId  # same shape (no '#'): rule ids are joined with '#' in the cooldown keys

# --- alert rule params (see storepulse.stream.alerts for their meaning and defaults) ------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LowStockParams(_Frozen):
    reorder_point: StockCount | None = None  # overrides the products' own


class TrafficSpikeParams(_Frozen):
    window_minutes: Minutes | None = None
    baseline_minutes: Minutes | None = None
    ratio: Annotated[Ratio, Field(gt=1)] | None = None
    min_count: Annotated[Count, Field(gt=0, le=10**9)] | None = None
    counter: Literal["page_views", "foot_traffic", "sessions"] | None = None  # minute counters


class SalesDropParams(_Frozen):
    window_minutes: Minutes | None = None
    ratio: Annotated[Ratio, Field(lt=1)] | None = None
    min_baseline: PositiveMoney | None = None


RULE_PARAMS: Final[dict[str, type[_Frozen]]] = {
    "low_stock": LowStockParams,
    "traffic_spike": TrafficSpikeParams,
    "sales_drop": SalesDropParams,
}

# --- models ------------------------------------------------------------------------------------


class SettingsModel(_Frozen):
    """One settings item. ``id_field`` names the field that is the sort key; singletons (the
    business profile, the KPI selection) have none and a fixed ``singleton_id`` instead."""

    kind: ClassVar[SettingsKind]
    id_field: ClassVar[str | None] = None
    singleton_id: ClassVar[str] = ""

    @property
    def item_id(self) -> str:
        return getattr(self, self.id_field) if self.id_field else self.singleton_id

    @property
    def key(self) -> Key:
        return settings_key(self.kind, self.item_id)

    def to_item(self) -> dict[str, Any]:
        """The DynamoDB item (the id lives in ``sk`` only; numbers as Decimal)."""
        attributes = self.model_dump(exclude={self.id_field} if self.id_field else None)
        return {**self.key.as_item(), **_to_dynamo(attributes)}

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Self:
        """Validate an item read from the table; attributes this model does not know (written by
        a newer version) are ignored."""
        if item.get("pk") != cls.kind.value:
            raise SettingsError(f"item {item.get('pk')}/{item.get('sk')} is not a {cls.kind}")
        data = {name: item[name] for name in cls.model_fields if name in item}
        if cls.id_field:
            data[cls.id_field] = item["sk"]
        return cls.model_validate(_from_dynamo(data))


class BusinessProfile(SettingsModel):
    kind: ClassVar[SettingsKind] = SettingsKind.BUSINESS
    singleton_id: ClassVar[str] = "profile"

    name: Text
    timezone: Timezone
    currency: Currency


class StoreSettings(SettingsModel):
    kind: ClassVar[SettingsKind] = SettingsKind.STORE
    id_field: ClassVar[str | None] = "store_id"

    store_id: StoreId
    name: Text
    timezone: Timezone
    currency: Currency


class ProductSettings(SettingsModel):
    kind: ClassVar[SettingsKind] = SettingsKind.PRODUCT
    id_field: ClassVar[str | None] = "sku"

    sku: Identifier
    name: Text
    category: Identifier
    unit_price: Money
    reorder_point: StockCount = 0


class EmployeeSettings(SettingsModel):
    kind: ClassVar[SettingsKind] = SettingsKind.EMPLOYEE
    id_field: ClassVar[str | None] = "employee_id"

    employee_id: Identifier
    name: Text
    store_id: StoreId
    role: Text


class AlertRuleSettings(SettingsModel):
    """Defaults match what the Lambda assumes for a missing attribute."""

    kind: ClassVar[SettingsKind] = SettingsKind.ALERT_RULE
    id_field: ClassVar[str | None] = "rule_id"

    rule_id: RuleId
    type: Literal["low_stock", "traffic_spike", "sales_drop"]
    severity: Literal["info", "warning", "critical"] = "warning"
    cooldown_seconds: Annotated[Count, Field(ge=60, le=7 * 24 * 3600)] = 3600
    params: dict[str, Decimal | str] = Field(default_factory=dict)
    store_ids: Annotated[tuple[StoreId, ...], AfterValidator(_unique)] = ()  # empty: all stores
    enabled: StrictBool = True

    @field_validator("params", mode="before")
    @classmethod
    def _params_of_type(cls, value: Any, info: ValidationInfo) -> Any:
        """Only the keys the rule's type reads; numbers become Decimal (as DynamoDB holds them)."""
        params_model = RULE_PARAMS.get(info.data.get("type", ""))
        if params_model is None:  # the type itself is invalid and reported
            return {}
        if not isinstance(value, Mapping):
            raise PydanticCustomError("dict_type", "must be an object")
        validated = params_model.model_validate(dict(value)).model_dump(exclude_none=True)
        return {k: Decimal(v) if isinstance(v, int) else v for k, v in validated.items()}

    @field_serializer("params", when_used="json")
    def _params_json(self, params: dict[str, Decimal | str]) -> dict[str, int | str]:
        """Whole numbers as JSON integers, fractions as exact decimal strings."""
        return {k: v if isinstance(v, str) else _json_number(v) for k, v in params.items()}


class KpiSelection(SettingsModel):
    """The KPIs the dashboard shows, in order."""

    kind: ClassVar[SettingsKind] = SettingsKind.KPI
    singleton_id: ClassVar[str] = "selection"

    kpis: Annotated[tuple[KpiName, ...], Field(min_length=1), AfterValidator(_unique)]


MODELS: Final[dict[SettingsKind, type[SettingsModel]]] = {
    model.kind: model
    for model in (
        BusinessProfile,
        StoreSettings,
        ProductSettings,
        EmployeeSettings,
        AlertRuleSettings,
        KpiSelection,
    )
}


def model_for(kind: SettingsKind) -> type[SettingsModel]:
    try:
        return MODELS[kind]
    except KeyError:
        raise SettingsError(f"{kind} items are internal to the Lambda, not settings") from None


def _key(kind: SettingsKind, item_id: str | None) -> Key:
    model = model_for(kind)
    item_id = item_id or model.singleton_id
    if not item_id:
        raise SettingsError(f"a {kind} needs an id ({model.id_field})")
    return settings_key(kind, item_id)


# --- DynamoDB values ---------------------------------------------------------------------------


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, bool | str | Decimal) or value is None:
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Mapping):
        return {k: _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB: {value!r}")


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, set | frozenset):  # a string set written by hand
        return sorted(value)
    if isinstance(value, Mapping):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    return value


def _json_number(value: Decimal) -> int | str:
    whole = _integral(value)
    return whole if isinstance(whole, int) else str(value)


# --- errors ------------------------------------------------------------------------------------


def describe_errors(exc: ValidationError, prefix: str) -> list[str]:
    """One line per problem, e.g. ``product.unit_price: must have at most 2 decimal places``."""
    lines = []
    for error in exc.errors(include_url=False):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        message = _error_message(error["type"], error.get("ctx") or {}, error["msg"])
        lines.append(f"{prefix}{path}: {message}")
    return lines


# --- default alert rules -----------------------------------------------------------------------


def load_default_rules(path: Path = DEFAULT_ALERT_RULES) -> list[AlertRuleSettings]:
    """The rules declared in ``path`` (``{"rules": [...]}``); numbers are read as Decimal."""
    try:
        document = json_input.loads(path.read_text(encoding="utf-8"))
        rules = document["rules"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SettingsError(f"cannot read default alert rules from {path}: {exc}") from None
    models = []
    for index, rule in enumerate(rules):
        try:
            models.append(AlertRuleSettings.model_validate(rule))
        except ValidationError as exc:
            lines = "; ".join(describe_errors(exc, f"rules[{index}]"))
            raise SettingsError(f"invalid default alert rule in {path}: {lines}") from None
    return models


# --- the store ---------------------------------------------------------------------------------


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
        """Every item of ``kind``, in id order."""
        model = model_for(kind)
        return [self._parse(model, item) for item in self._query(kind)]

    def get(self, kind: SettingsKind, item_id: str | None = None) -> SettingsModel | None:
        """One item; ``item_id`` may be omitted for the business profile and KPI selection."""
        key = _key(kind, item_id)
        item = self.table.get_item(Key=key.as_item(), ConsistentRead=True).get("Item")
        return None if item is None else self._parse(model_for(kind), item)

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
                business = self.get(SettingsKind.BUSINESS)
                if isinstance(business, BusinessProfile) and business.currency != currency:
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
        return [s for s in self.list(SettingsKind.STORE) if isinstance(s, StoreSettings)]

    # --- reading ---

    def _query(self, kind: SettingsKind) -> Iterable[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": KeyCondition("pk").eq(kind.value),
            "ConsistentRead": True,
        }
        while True:
            page = self.table.query(**kwargs)
            yield from page["Items"]
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    @staticmethod
    def _parse(model: type[SettingsModel], item: Mapping[str, Any]) -> SettingsModel:
        """An item edited by hand into something invalid is reported, naming it."""
        try:
            return model.from_item(item)
        except ValidationError as exc:
            problems = "; ".join(describe_errors(exc, item["sk"]))
            raise SettingsError(f"invalid {model.kind} item in the table: {problems}") from None
