"""Evaluating a CloudFormation template's intrinsic functions and conditions (``Ref``,
``Fn::Sub``, ``Fn::GetAtt ...Arn``, ``Fn::If``, ``Fn::Join``) from parameters, pseudo parameters
and physical ids: to name failing resources, compare resources with the template and resolve
the template's IAM policies."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


class UnresolvedError(ValueError):
    """An intrinsic function whose value cannot be known here."""


_NO_VALUE = object()


@dataclass
class Intrinsics:
    """Evaluates the intrinsic functions our templates use (Ref, Fn::Sub, Fn::GetAtt ...Arn,
    Fn::If, Fn::Join, conditions) from parameters, pseudo parameters and physical ids.
    ``arn_of(logical_id)`` answers ``Fn::GetAtt X.Arn``; anything else raises UnresolvedError."""

    template: Mapping[str, Any]
    parameters: Mapping[str, str]
    pseudo: Mapping[str, str]
    physical_ids: Mapping[str, str]
    arn_of: Callable[[str], str] | None = None
    attribute_of: Callable[[str, str], str] | None = None  # other GetAtt (a table's StreamArn)
    _conditions: dict[str, bool] = field(default_factory=dict)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, Mapping) and len(value) == 1:
            ((name, argument),) = value.items()
            if name == "Ref" or name.startswith("Fn::"):
                return self._function(name, argument)
        if isinstance(value, Mapping):
            resolved = {k: self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not _NO_VALUE}
        if isinstance(value, list):
            return [v for v in map(self.resolve, value) if v is not _NO_VALUE]
        return value

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            definition = (self.template.get("Conditions") or {}).get(name)
            if definition is None:
                raise UnresolvedError(f"unknown condition {name}")
            self._conditions[name] = self._truth(definition)
        return self._conditions[name]

    def is_deployed(self, resource: Mapping[str, Any]) -> bool:
        """False for a resource whose Condition is false (so CloudFormation skipped it)."""
        return "Condition" not in resource or self.condition(resource["Condition"])

    def resolved_strings(self, value: Any) -> Iterator[str]:
        """Every string leaf of ``value`` that can be resolved, skipping the rest."""
        try:
            resolved = self.resolve(value)
        except UnresolvedError:
            if isinstance(value, Mapping) and len(value) == 1:
                return
            resolved = value
        if isinstance(resolved, str):
            yield resolved
        elif isinstance(resolved, Mapping):
            for item in resolved.values():
                yield from self.resolved_strings(item)
        elif isinstance(resolved, list):
            for item in resolved:
                yield from self.resolved_strings(item)

    def _function(self, name: str, argument: Any) -> Any:
        if name == "Ref":
            return self._ref(argument)
        if name == "Fn::Sub":
            return self._sub(argument)
        if name == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".")
            return self._get_att(logical_id, attribute)
        if name == "Fn::If":
            condition, when_true, when_false = argument
            return self.resolve(when_true if self.condition(condition) else when_false)
        if name == "Fn::Join":
            separator, items = argument
            return separator.join(str(self.resolve(item)) for item in items)
        raise UnresolvedError(name)

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        for source in (self.parameters, self.pseudo, self.physical_ids):
            if name in source:
                return source[name]
        raise UnresolvedError(f"Ref {name}")

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                return str(self._get_att(*name.split(".", 1)))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def _get_att(self, logical_id: str, attribute: str) -> str:
        if attribute == "Arn" and self.arn_of is not None:
            return self.arn_of(logical_id)
        if attribute != "Arn" and self.attribute_of is not None:
            return self.attribute_of(logical_id, attribute)
        raise UnresolvedError(f"GetAtt {logical_id}.{attribute}")

    def _truth(self, definition: Any) -> bool:
        ((name, argument),) = definition.items()
        if name == "Fn::Equals":
            left, right = (scalar_text(self.resolve(v)) for v in argument)
            return left == right
        if name == "Fn::Not":
            return not self._truth(argument[0])
        if name == "Fn::And":
            return all(self._truth(c) for c in argument)
        if name == "Fn::Or":
            return any(self._truth(c) for c in argument)
        if name == "Condition":
            return self.condition(argument)
        raise UnresolvedError(f"condition function {name}")


def pseudo_parameters(stack: Mapping[str, Any]) -> dict[str, str]:
    """AWS::AccountId, Region, Partition, StackName from the stack's id (an ARN)."""
    parts = str(stack.get("StackId", "")).split(":")
    if len(parts) < 6:
        return {}
    return {
        "AWS::Partition": parts[1],
        "AWS::Region": parts[3],
        "AWS::AccountId": parts[4],
        "AWS::StackName": str(stack.get("StackName", "")),
        "AWS::StackId": str(stack["StackId"]),
        "AWS::URLSuffix": "amazonaws.com",
    }


def scalar_text(value: Any) -> str:
    """A template scalar as CloudFormation renders it (``true``, ``512``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)
