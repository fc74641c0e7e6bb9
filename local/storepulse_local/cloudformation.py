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
