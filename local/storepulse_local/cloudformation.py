"""What moto's CloudFormation does not do and AWS does, filled inside the embedded AWS so that the
production code never has to ask where it runs (``infra/local/embedded_aws_gaps.json``).

- Outputs and exports after a change set: moto computes a stack's outputs when the stack object
  is made, which for a CREATE change set is before it has a template, and never again; so a stack
  deployed through change sets lists no outputs and exports nothing. AWS computes them after every
  create and update: so does the patched ``execute_change_set``.
- Resources of the types moto skips (``embedded_aws_gaps.json``, ``types``): moto lists each as
  an entry without logical id, type or physical id, and lists resources whose condition is false
  the same way. The patched listing names the skipped ones (logical id, type, no physical id) and
  leaves out the ones not created by their condition, as AWS does; the deploy's verification
  reports a resource listed without a physical id as a known gap when its type is in the file.
- A table's ``PointInTimeRecoverySpecification`` and ``TimeToLiveSpecification``: moto's
  ``AWS::DynamoDB::Table`` ignores both (and has no update at all: an update of a table's
  properties left ``None`` in the stack's resource map). The patched table applies them on create
  and on update, as AWS does (DescribeTimeToLive said DISABLED for the stack's tables, and
  ``storepulse_local.dynamodb_ttl`` deletes expired items of tables whose TTL is on).
- A key's ``KeyPolicy``: moto hands it to KMS as the template's mapping where KMS keeps JSON text,
  so every later call on the key (DescribeKey, GetKeyPolicy, ...) answered 500. AWS stores the
  policy as JSON, and so does the patched key.
- A condition that an update flips (a parameter such as ``EnhancedFanOut`` changed): moto's
  update diffs the resources' JSON only, which such a change leaves alike, so a resource whose
  condition turned true was never created, one turned false never deleted, and an ``Fn::If``
  on it never re-read. The patched update does all three, after moto's; a mapping whose
  ``EventSourceArn`` changes is replaced, as on AWS (moto would keep the old source).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

_PATCHED = "_storepulse_patched"


def patch_once(
    owner: type, name: str, wrap: Callable[[Any], Callable[..., Any]], *, static: bool = False
) -> None:
    """``owner.name = wrap(original)``, once per process: the embedded AWS is built again for
    every test module, and a second patch would wrap the first."""
    original = getattr(owner, name)
    if getattr(original, _PATCHED, False):
        return
    patched = wrap(original)
    setattr(patched, _PATCHED, True)
    setattr(owner, name, staticmethod(patched) if static else patched)


def patch_cloudformation() -> None:
    """Apply the patches (once per process, however many servers start)."""
    _compute_outputs_after_change_sets()
    _list_skipped_resources_by_name()
    _honour_table_specifications()
    _store_key_policies_as_json()
    _apply_flipped_conditions_on_update()


def _compute_outputs_after_change_sets() -> None:
    from moto.cloudformation.models import CloudFormationBackend

    patch_once(CloudFormationBackend, "execute_change_set", _computing_outputs)


def _computing_outputs(execute: Callable[..., None]) -> Callable[..., None]:
    from moto.cloudformation.models import CloudFormationBackend

    def execute_and_compute_outputs(
        self: CloudFormationBackend, change_set_name: str, stack_name: str | None = None
    ) -> None:
        execute(self, change_set_name, stack_name)
        change_set = self.describe_change_set(change_set_name)
        stack = self.stacks[change_set.stack_id]
        stack._parse_template()  # moto set the new template's text only
        # moto keeps the creation's, so a change set back to them was refused as "no changes"
        stack.parameters = change_set.parameters
        stack.description = stack.template_dict.get("Description")
        for name in [n for n, e in self.exports.items() if e.exporting_stack_id == stack.stack_id]:
            del self.exports[name]  # the previous version's, replaced below
        stack.output_map = stack._create_output_map()
        self._validate_export_uniqueness(stack)
        for export in stack.exports:
            self.exports[export.name] = export

    return execute_and_compute_outputs


def _list_skipped_resources_by_name() -> None:
    from moto.cloudformation.models import CloudFormationBackend

    patch_once(CloudFormationBackend, "list_stack_resources", _listing_skipped_by_name)


def _listing_skipped_by_name(list_resources: Callable[..., Any]) -> Callable[..., Any]:
    from moto.cloudformation.models import CloudFormationBackend

    def list_with_names(self: CloudFormationBackend, stack_name_or_id: str) -> Any:
        stack, _ = list_resources(self, stack_name_or_id)
        resource_map = stack.resource_map
        created = resource_map._parsed_resources
        listed: list[Any] = []
        for logical_id, declared in (resource_map._resource_json_map or {}).items():
            if created.get(logical_id) is not None:  # moto stores None for some updates
                listed.append(created[logical_id])
                continue
            condition = declared.get("Condition")
            if condition and not resource_map.lazy_condition_map[condition]:
                continue  # not created by its condition: AWS does not list it
            skipped = SimpleNamespace(
                logical_resource_id=logical_id,
                physical_resource_id="",
                cf_resource_type=declared.get("Type", ""),
            )
            listed.append(skipped)
        return stack, listed

    return list_with_names


def _honour_table_specifications() -> None:
    from moto.dynamodb.models.table import Table

    patch_once(Table, "create_from_cloudformation_json", _creating_with_specifications, static=True)
    # Only recovery and TTL are updated; other property changes stay unapplied, as in moto before.
    Table.update_from_cloudformation_json = staticmethod(_update_specifications)  # type: ignore[method-assign,assignment]


def _apply_table_specifications(
    table_name: str, properties: dict[str, Any], account_id: str, region: str
) -> None:
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends[account_id][region]
    spec = properties.get("PointInTimeRecoverySpecification")
    if spec is not None:  # absent: AWS leaves recovery as it is (off for a new table)
        enabled = str(spec.get("PointInTimeRecoveryEnabled", False)).lower() == "true"
        backend.update_continuous_backups(
            table_name, {**spec, "PointInTimeRecoveryEnabled": enabled}
        )
    ttl = properties.get("TimeToLiveSpecification")
    if ttl is not None:  # absent: AWS leaves TTL as it is (off for a new table)
        enabled = str(ttl.get("Enabled", False)).lower() == "true"
        backend.update_time_to_live(table_name, {**ttl, "Enabled": enabled})


def _creating_with_specifications(create: Callable[..., Any]) -> Callable[..., Any]:
    def create_with_specifications(
        resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kw: Any
    ) -> Any:
        table = create(resource_name, cloudformation_json, account_id, region_name, **kw)
        properties = cloudformation_json.get("Properties") or {}
        _apply_table_specifications(table.name, properties, account_id, region_name)
        return table

    return create_with_specifications


def _update_specifications(
    original_resource: Any,
    new_resource_name: str,
    cloudformation_json: Any,
    account_id: str,
    region_name: str,
) -> Any:
    properties = cloudformation_json.get("Properties") or {}
    _apply_table_specifications(original_resource.name, properties, account_id, region_name)
    return original_resource


def _store_key_policies_as_json() -> None:
    from moto.kms.models import Key

    patch_once(Key, "create_from_cloudformation_json", _creating_with_json_policy, static=True)


def _creating_with_json_policy(create: Callable[..., Any]) -> Callable[..., Any]:
    def create_with_json_policy(
        resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kw: Any
    ) -> Any:
        properties = cloudformation_json.get("Properties") or {}
        if isinstance(properties.get("KeyPolicy"), dict):
            policy = json.dumps(properties["KeyPolicy"])
            cloudformation_json = {
                **cloudformation_json,
                "Properties": {**properties, "KeyPolicy": policy},
            }
        return create(resource_name, cloudformation_json, account_id, region_name, **kw)

    return create_with_json_policy


def _apply_flipped_conditions_on_update() -> None:
    from moto.cloudformation.parsing import ResourceMap

    patch_once(ResourceMap, "update", _updating_flipped_conditions)


def _condition_values(resource_map: Any) -> dict[str, bool]:
    conditions = resource_map.lazy_condition_map
    return {name: bool(conditions[name]) for name in conditions}


def _updating_flipped_conditions(update: Callable[..., None]) -> Callable[..., None]:
    def update_with_conditions(self: Any, template: Any, parameters: Any = None) -> None:
        before = _condition_values(self)
        update(self, template, parameters)
        after = _condition_values(self)
        flipped = {name for name, value in after.items() if before.get(name, value) != value}
        if flipped:
            _apply_flipped(self, flipped, after)

    return update_with_conditions


def _apply_flipped(resource_map: Any, flipped: set[str], conditions: dict[str, bool]) -> None:
    """Create what a flipped condition now declares, re-read what chooses by one (``Fn::If``),
    then delete what it no longer declares (after: a mapping may still have read from it)."""
    declared = resource_map._resource_json_map
    parsed = resource_map._parsed_resources
    gone = []
    for logical_id, resource_json in declared.items():
        condition = resource_json.get("Condition")
        if condition in flipped and conditions[condition]:
            _ = resource_map[logical_id]  # moto creates a resource on first access
        elif condition in flipped:
            gone.append(logical_id)
    for logical_id, resource_json in declared.items():
        if logical_id in parsed and _chooses_by(resource_json, flipped):
            parsed[logical_id] = _updated(resource_map, logical_id, resource_json)
    for logical_id in gone:
        if (resource := parsed.pop(logical_id, None)) is not None:
            resource_map._delete_resource(resource, declared[logical_id])


def _chooses_by(value: Any, conditions: set[str]) -> bool:
    if isinstance(value, dict):
        branch = value.get("Fn::If")
        if isinstance(branch, list) and branch and branch[0] in conditions:
            return True
        return any(_chooses_by(v, conditions) for v in value.values())
    if isinstance(value, list):
        return any(_chooses_by(v, conditions) for v in value)
    return False


def _updated(resource_map: Any, logical_id: str, resource_json: dict[str, Any]) -> Any:
    """The resource updated to its re-read properties; a mapping with another source replaced
    (AWS cannot move a mapping to another stream; moto would ignore the new source)."""
    from moto.cloudformation.parsing import clean_json, parse_and_update_resource

    account, region = resource_map._account_id, resource_map._region_name
    current = resource_map._parsed_resources[logical_id]
    if resource_json["Type"] == "AWS::Lambda::EventSourceMapping":
        source = clean_json(resource_json["Properties"]["EventSourceArn"], resource_map)
        if source != current.event_source_arn:
            del resource_map._parsed_resources[logical_id]
            replacement = resource_map[logical_id]
            current.delete(account, region)
            return replacement
    return parse_and_update_resource(logical_id, resource_json, resource_map, account, region)
