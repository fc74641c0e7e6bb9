"""The dashboard's settings: the KPI selection and the alert thresholds.

Both go through ``SettingsStore`` and its models (``KpiSelection``, ``AlertRuleSettings``), so
the dashboard accepts exactly what the settings CLI accepts and the Lambda reads, with the same
error messages. Until a selection is saved the dashboard shows ``DEFAULT_KPIS``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from storepulse.dashboard.kpis import DEFAULT_KPIS, KPIS, Unit
from storepulse.layout import SettingsKind
from storepulse.settings import (
    KPI_CATALOGUE,
    AlertRuleSettings,
    KpiSelection,
    SettingsError,
    SettingsStore,
    Visibility,
    describe_errors,
)


class InvalidSettingsError(ValueError):
    """A setting the store refused; ``problems`` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class KpiInfo(BaseModel):
    id: str
    label: str
    unit: Unit
    description: str


class KpiSelectionView(BaseModel):
    kpis: list[str] = Field(description="the KPIs shown, in order")
    saved: bool = Field(description="false: nothing saved yet, these are the defaults")
    catalogue: list[KpiInfo] = Field(description="every KPI that can be chosen")


class KpiSelectionBody(BaseModel):
    kpis: list[Any] = Field(description="KPI ids, in the order to show them", min_length=1)


def catalogue() -> list[KpiInfo]:
    return [
        KpiInfo(id=k, label=KPIS[k].label, unit=KPIS[k].unit, description=KPIS[k].description)
        for k in KPI_CATALOGUE
    ]


def read_kpis(store: SettingsStore) -> KpiSelectionView:
    selection = store.get(SettingsKind.KPI)
    if isinstance(selection, KpiSelection):
        return KpiSelectionView(kpis=list(selection.kpis), saved=True, catalogue=catalogue())
    return KpiSelectionView(kpis=list(DEFAULT_KPIS), saved=False, catalogue=catalogue())


def write_kpis(store: SettingsStore, body: Mapping[str, Any]) -> KpiSelectionView:
    """Save the selection in ``body`` (``{"kpis": [...]}``, nothing else)."""
    try:
        selection = KpiSelection.model_validate(dict(body))
    except ValidationError as exc:
        raise InvalidSettingsError(describe_errors(exc, "kpi_selection")) from None
    store.upsert(selection)
    return read_kpis(store)


def rule_view(rule: AlertRuleSettings) -> dict[str, Any]:
    """Whole numbers as JSON integers, fractions as exact decimal strings."""
    return rule.model_dump(mode="json")


def read_rules(store: SettingsStore, visible: Visibility) -> list[dict[str, Any]]:
    """The rules that apply to a store in ``visible``, naming only those stores."""
    rules = [r for r in store.list(SettingsKind.ALERT_RULE) if isinstance(r, AlertRuleSettings)]
    return [rule_view(rule) for rule in _visible_rules(rules, visible)]


def _visible_rules(
    rules: Iterable[AlertRuleSettings], visible: Visibility
) -> Iterator[AlertRuleSettings]:
    for rule in rules:
        if not visible.limited or not rule.store_ids:  # no store_ids: every store, theirs too
            yield rule
        elif shown := visible.visible(rule.store_ids):
            yield rule.model_copy(update={"store_ids": tuple(shown)})


def write_rule(store: SettingsStore, rule_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Create or replace one rule; the id comes from the path, never from the body."""
    if "rule_id" in body and body["rule_id"] != rule_id:
        raise InvalidSettingsError(
            [f"alert_rule.rule_id: must be {rule_id!r} (the id in the path)"]
        )
    try:
        rule = AlertRuleSettings.model_validate({**body, "rule_id": rule_id})
        store.upsert(rule)
    except ValidationError as exc:
        raise InvalidSettingsError(describe_errors(exc, "alert_rule")) from None
    except SettingsError as exc:
        raise InvalidSettingsError([str(exc)]) from None
    return rule_view(rule)


def rule_schema() -> dict[str, Any]:
    """The request body of a rule, for the OpenAPI document."""
    return AlertRuleSettings.model_json_schema(mode="validation")
