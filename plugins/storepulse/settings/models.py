"""The business's settings as validated models, with their defaults: the profile, stores,
products, employees, alert rules (and their parameters), the KPI selection and the dashboard's
store grants.

Each model maps to one item of the settings table: pk = its ``SettingsKind``, sk = its id.
Numbers are written as ``Decimal`` (never float), so an item written here equals the item
DynamoDB gives back. Reading and writing is ``storepulse.settings.store``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal, Self, TypeVar
from zoneinfo import available_timezones

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
    model_validator,
)
from pydantic_core import PydanticCustomError

from storepulse import json_input
from storepulse.config import REPO_ROOT
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
from storepulse.layout import Key, SettingsKind, settings_key

__all__ = [
    "ACCESS_ROLES",
    "DEFAULT_ALERT_RULES",
    "KPI_CATALOGUE",
    "MODELS",
    "RULE_PARAMS",
    "AlertRuleSettings",
    "BusinessProfile",
    "EmployeeSettings",
    "KpiSelection",
    "LowStockParams",
    "ProductSettings",
    "SalesDropParams",
    "SettingsError",
    "SettingsModel",
    "Shift",
    "StoreAccess",
    "StoreSettings",
    "TrafficSpikeParams",
    "TrendParams",
    "UnknownSkuParams",
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

# The Lambda sums a window over the minute buckets of at most two local days (start and end), so
# no window may be longer than a day.
MAX_WINDOW_MINUTES: Final = 24 * 60
# A trend rule reads, per past week, an hour item per hour of its window and a day item (hour
# items never expire): at most 12 x (3 + 1) keys per window judged.
MAX_TREND_WEEKS: Final = 12
MAX_TREND_HOURS: Final = 3


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
VisitorsPerStaff = Annotated[Ratio, Field(le=10_000)]
Weekday = Annotated[Count, Field(ge=0, le=6)]  # 0 = Monday
EVERY_DAY: Final = (0, 1, 2, 3, 4, 5, 6)
P = TypeVar("P", bound=BaseModel)
RuleId = StoreId  # same shape (no '#'): rule ids are joined with '#' in the cooldown keys

# --- alert rule params: what each rule type reads, with its defaults ----------------------------
# (see storepulse.stream.alerts for their meaning). A rule stores only the params it was given;
# ``AlertRuleSettings.parameters`` fills in the defaults.


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LowStockParams(_Frozen):
    reorder_point: StockCount | None = None  # overrides the products' own


class TrafficSpikeParams(_Frozen):
    window_minutes: Minutes = 5
    baseline_minutes: Minutes = 60
    ratio: Annotated[Ratio, Field(gt=1)] = Decimal(3)
    min_count: Annotated[Count, Field(gt=0, le=10**9)] = 30
    counter: Literal["page_views", "foot_traffic", "sessions"] = "page_views"  # minute counters


class SalesDropParams(_Frozen):
    window_minutes: Minutes = 60
    ratio: Annotated[Ratio, Field(lt=1)] = Decimal("0.5")
    min_baseline: PositiveMoney = Decimal(100)


Weeks = Annotated[Count, Field(ge=1, le=MAX_TREND_WEEKS)]
# A revenue in the store's currency, a count, or (for conversion) a number of sessions.
Volume = Annotated[
    Decimal, BeforeValidator(_exact_number), Field(gt=0, max_digits=14, decimal_places=2)
]


class TrendParams(_Frozen):
    metric: Literal["revenue", "orders", "sessions", "page_views", "foot_traffic", "conversion"] = (
        "revenue"
    )
    direction: Literal["drop", "spike", "both"] = "both"
    weeks: Weeks = 4
    min_weeks: Weeks = 2  # past weeks whose data covers the hour, needed to judge
    hours: Annotated[Count, Field(ge=1, le=MAX_TREND_HOURS)] = 1  # judged together (a window)
    drop_ratio: Annotated[Ratio, Field(lt=1)] = Decimal("0.5")
    spike_ratio: Annotated[Ratio, Field(gt=1)] = Decimal(2)
    min_volume: Volume = Decimal(30)
    # How many standard deviations of chance (Poisson counts) the change must also exceed
    # (conversion: an exact one-sided test at the same chance level, storepulse.stream.trends).
    sigmas: Annotated[Ratio, Field(le=10)] = Decimal(3)
    settle_minutes: Annotated[Count, Field(ge=0, le=120)] = 15

    @model_validator(mode="after")
    def _enough_weeks(self) -> Self:
        if self.min_weeks > self.weeks:
            raise PydanticCustomError(
                "min_weeks",
                "min_weeks ({min_weeks}) must be <= weeks ({weeks})",
                {"min_weeks": self.min_weeks, "weeks": self.weeks},
            )
        return self


class UnknownSkuParams(_Frozen):
    """No parameters: each unknown SKU is reported once."""


RuleParams = LowStockParams | TrafficSpikeParams | SalesDropParams | TrendParams | UnknownSkuParams
RULE_PARAMS: Final[dict[str, type[RuleParams]]] = {
    "low_stock": LowStockParams,
    "traffic_spike": TrafficSpikeParams,
    "sales_drop": SalesDropParams,
    "trend": TrendParams,
    "unknown_sku": UnknownSkuParams,
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
    # The owner's staffing target: visitors (foot traffic) per staff member per hour; None: the
    # dashboard shows the ratio without judging hours under- or over-staffed.
    visitors_per_staff: VisitorsPerStaff | None = None

    def to_item(self) -> dict[str, Any]:
        item = super().to_item()
        if item.get("visitors_per_staff") is None:  # unset: no attribute, as before it existed
            item.pop("visitors_per_staff", None)
        return item


class Shift(_Frozen):
    """Local hours ``start`` to ``end`` (exclusive) an employee works on ``weekdays``
    (0 = Monday)."""

    start: Annotated[Count, Field(ge=0, le=23)]
    end: Annotated[Count, Field(ge=1, le=24)]
    weekdays: Annotated[tuple[Weekday, ...], AfterValidator(_unique)] = EVERY_DAY

    @model_validator(mode="after")
    def _a_real_shift(self) -> Self:
        if self.start >= self.end:
            raise ValueError(f"a shift must start before it ends ({self.start} >= {self.end})")
        if not self.weekdays:
            raise ValueError("a shift needs at least one weekday")
        return self

    def covers(self, weekday: int, hour: int) -> bool:
        return weekday in self.weekdays and self.start <= hour < self.end


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
    shifts: tuple[Shift, ...] = ()  # none: counted as on duty in every hour with visitors

    def on_duty(self, weekday: int, hour: int) -> bool:
        return not self.shifts or any(s.covers(weekday, hour) for s in self.shifts)


class AlertRuleSettings(SettingsModel):
    """An item's missing attributes (and params) take these defaults, wherever it is read."""

    kind: ClassVar[SettingsKind] = SettingsKind.ALERT_RULE
    id_field: ClassVar[str | None] = "rule_id"

    rule_id: RuleId
    type: Literal["low_stock", "traffic_spike", "sales_drop", "trend", "unknown_sku"]
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
        given = {k: v for k, v in value.items() if v is not None}  # null: the default
        validated = params_model.model_validate(given).model_dump(exclude_unset=True)
        return {k: Decimal(v) if isinstance(v, int) else v for k, v in validated.items()}

    def parameters(self, model: type[P]) -> P:
        """The params as ``model`` (this rule type's), defaults filled in."""
        return model.model_validate(self.params)

    def applies_to(self, store_id: str) -> bool:
        return self.enabled and (not self.store_ids or store_id in self.store_ids)

    @field_serializer("params", when_used="json")
    def _params_json(self, params: dict[str, Decimal | str]) -> dict[str, int | str]:
        """Whole numbers as JSON integers, fractions as exact decimal strings."""
        return {k: v if isinstance(v, str) else _json_number(v) for k, v in params.items()}


class KpiSelection(SettingsModel):
    """The KPIs the dashboard shows, in order."""

    kind: ClassVar[SettingsKind] = SettingsKind.KPI
    singleton_id: ClassVar[str] = "selection"

    kpis: Annotated[tuple[KpiName, ...], Field(min_length=1), AfterValidator(_unique)]


AccessRole = Literal["owner", "manager", "viewer"]
ACCESS_ROLES: Final[tuple[str, ...]] = ("owner", "manager", "viewer")
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class StoreAccess(SettingsModel):
    """The stores one dashboard user may see: ``all_stores`` (every store and the business
    total), or exactly ``store_ids`` (never the business total, which includes the others).
    Managed by ``storepulse.dashboard.access``, not the settings CLI."""

    kind: ClassVar[SettingsKind] = SettingsKind.DASHBOARD_ACCESS
    id_field: ClassVar[str | None] = "username"

    username: Identifier
    store_ids: Annotated[tuple[StoreId, ...], AfterValidator(_unique)] = ()
    all_stores: StrictBool = False
    # QuickSight: the user of the same name, in the group of this role (None: dashboard only).
    # The same store limit becomes their row-level-security rules (storepulse.quicksight.access).
    role: AccessRole | None = None
    email: Annotated[str, Field(pattern=_EMAIL, max_length=254)] | None = None

    @model_validator(mode="after")
    def _one_kind_of_grant(self) -> Self:
        if self.all_stores and self.store_ids:
            raise ValueError("either all stores or a list of stores, not both")
        if self.role is not None and self.email is None:
            raise ValueError("a QuickSight role needs the user's email (QuickSight invites it)")
        if self.role == "owner" and not self.all_stores:
            # QuickSight lets data-set owners see every row whatever the rules say.
            raise ValueError("an owner sees every store: grant all stores, or another role")
        return self

    def to_item(self) -> dict[str, Any]:
        quicksight = {"role": self.role, "email": self.email} if self.role else {}
        if self.all_stores:
            return {**self.key.as_item(), "all_stores": True, **quicksight}
        return {**self.key.as_item(), "store_ids": list(self.store_ids), **quicksight}

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Self:
        stored = item.get("store_ids") or []
        return cls(
            username=item["sk"],
            store_ids=tuple(sorted(stored)),
            all_stores=item.get("all_stores") is True,  # only an explicit true grants all
            role=item.get("role"),
            email=item.get("email"),
        )


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
