"""The lake bucket's lifecycle rules applied: the declared ones (validated by
``storepulse.lifecycle.validation``) compared with the bucket's in one normal form, applied only
when they differ, and read back to prove it.

Rules on the bucket that are not declared are *drift*: always reported, then kept (merged into
what is applied) or removed, as the file's ``drift`` setting says.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from storepulse.lifecycle.config import LifecycleConfig
from storepulse.lifecycle.validation import (
    ACTIONS,
    MAX_RULES,
    LifecycleError,
    LifecycleRuleError,
    Rule,
    filter_of,
    is_int,
    parse_date,
    rule_label,
    validate_rules,
)

log = logging.getLogger(__name__)


class LifecycleVerificationError(LifecycleError):
    """The bucket's rules read back differ from the ones just applied."""


# ------------------------------------------------------------------------------ normal form


def normalize_rule(rule: Rule) -> Rule:
    """The rule in one canonical form, so that equal rules compare equal whichever way S3 (or
    the embedded AWS) spells them: the filter always present (``{"Prefix": ""}`` for the whole
    bucket, the deprecated top-level Prefix moved into it), tags and transitions sorted, dates
    as UTC ISO strings, defaults (``ExpiredObjectDeleteMarker: false``) and empty actions
    dropped."""
    normal: Rule = {"ID": rule.get("ID", ""), "Status": rule.get("Status")}
    normal["Filter"] = _normal_filter(filter_of(rule))
    for action in ACTIONS:
        value = rule.get(action)
        if value:
            normal[action] = _normal_action(action, value)
    return {k: v for k, v in normal.items() if v not in (None, {}, [])}


def _normal_filter(found: Mapping[str, Any]) -> dict[str, Any]:
    if not found:
        return {"Prefix": ""}
    normal = dict(found)
    if isinstance(normal.get("And"), dict):
        combined = dict(normal["And"])
        if "Tags" in combined:
            combined["Tags"] = sorted(combined["Tags"], key=lambda t: (t["Key"], t["Value"]))
        normal["And"] = combined
    return normal


def _normal_action(action: str, value: Any) -> Any:
    if isinstance(value, list):
        items = [_normal_dates(item) for item in value]
        days = "NoncurrentDays" if action.startswith("Noncurrent") else "Days"
        return sorted(items, key=lambda t: (_days_or(t.get(days)), t.get("Date", ""), str(t)))
    normal = _normal_dates(value)
    if action == "Expiration" and normal.get("ExpiredObjectDeleteMarker") is False:
        del normal["ExpiredObjectDeleteMarker"]
    return normal


def _days_or(value: Any) -> int:
    return value if is_int(value) else -1


def _normal_dates(value: Mapping[str, Any]) -> dict[str, Any]:
    normal = dict(value)
    if "Date" in normal and parse_date(normal["Date"]) is not None:
        normal["Date"] = parse_date(normal["Date"]).isoformat()  # type: ignore[union-attr]
    return normal


def rules_by_id(rules: Iterable[Rule]) -> dict[str, Rule]:
    """Normalised rules keyed by ID: what two configurations are compared as (order ignored)."""
    return {normal["ID"]: normal for normal in map(normalize_rule, rules)}


# ------------------------------------------------------------------------------ diff and plan


@dataclass(frozen=True)
class RuleChange:
    """A declared rule that differs on the bucket: field -> (on the bucket, declared)."""

    rule_id: str
    fields: dict[str, tuple[Any, Any]]


@dataclass(frozen=True)
class LifecycleDiff:
    added: list[str]  # declared, not on the bucket
    changed: list[RuleChange]  # declared and on the bucket, different
    unchanged: list[str]
    drift: list[str]  # on the bucket, not declared


def diff_rules(current: Sequence[Rule], declared: Sequence[Rule]) -> LifecycleDiff:
    """Compare by rule ID, on the normal form of both sides."""
    have, want = rules_by_id(current), rules_by_id(declared)
    changed = [
        RuleChange(rule_id, _changed_fields(have[rule_id], rule))
        for rule_id, rule in want.items()
        if rule_id in have and have[rule_id] != rule
    ]
    return LifecycleDiff(
        added=[rule_id for rule_id in want if rule_id not in have],
        changed=changed,
        unchanged=[rule_id for rule_id, rule in want.items() if have.get(rule_id) == rule],
        drift=[rule_id for rule_id in have if rule_id not in want],
    )


def _changed_fields(old: Rule, new: Rule) -> dict[str, tuple[Any, Any]]:
    keys = [*new, *(k for k in old if k not in new)]
    return {k: (old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)}


@dataclass(frozen=True)
class LifecyclePlan:
    """What to apply: the declared rules plus, with ``drift: keep``, the undeclared ones."""

    diff: LifecycleDiff
    drift_mode: str
    rules: list[Rule]

    @property
    def removed(self) -> list[str]:
        return self.diff.drift if self.drift_mode == "remove" else []

    @property
    def kept_drift(self) -> list[str]:
        return self.diff.drift if self.drift_mode == "keep" else []

    @property
    def needs_apply(self) -> bool:
        return bool(self.diff.added or self.diff.changed or self.removed)


def plan_lifecycle(config: LifecycleConfig, current: Sequence[Rule]) -> LifecyclePlan:
    diff = diff_rules(current, config.rules)
    kept = [r for r in current if r.get("ID") in diff.drift] if config.drift == "keep" else []
    rules = [*config.rules, *kept]
    if len(rules) > MAX_RULES:  # the declared rules alone were checked: kept drift counts too
        raise LifecycleRuleError(
            [
                (
                    rule_label(rules[MAX_RULES], MAX_RULES),
                    f"is rule {MAX_RULES + 1} of {len(rules)} with the kept drift: "
                    f"at most {MAX_RULES} rules (remove drift, or set drift: remove)",
                )
            ]
        )
    return LifecyclePlan(diff=diff, drift_mode=config.drift, rules=rules)


def log_plan(plan: LifecyclePlan, bucket: str) -> None:
    """One line per rule that differs: + added, ~ changed (field: bucket -> declared), drift."""
    diff = plan.diff
    log.info(
        "s3://%s lifecycle: %d added, %d changed, %d unchanged, %d undeclared (drift=%s)",
        bucket,
        len(diff.added),
        len(diff.changed),
        len(diff.unchanged),
        len(diff.drift),
        plan.drift_mode,
    )
    declared = rules_by_id(plan.rules)
    for rule_id in diff.added:
        rule = {k: v for k, v in declared[rule_id].items() if k != "ID"}
        log.info("  + %s: %s", rule_id, _compact(rule))
    for change in diff.changed:
        for name, (old, new) in change.fields.items():
            log.info("  ~ %s: %s %s -> %s", change.rule_id, name, _compact(old), _compact(new))
    for rule_id in diff.drift:
        fate = "kept (drift=keep)" if plan.drift_mode == "keep" else "REMOVED (drift=remove)"
        log.warning("  ! %s: on the bucket, not in infra/lifecycle.json: %s", rule_id, fate)


def _compact(value: Any) -> str:
    return "absent" if value is None else json.dumps(value, separators=(", ", ": "), default=str)


@dataclass(frozen=True)
class BucketLifecycle:
    rules: list[Rule]
    # S3's bucket-wide minimum size for transitions: carried over, or a put would reset it.
    transition_minimum_size: str | None = None


def read_lifecycle(s3: Any, bucket: str) -> BucketLifecycle:
    """The bucket's lifecycle configuration (no rules if it has none)."""
    try:
        response = s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
            return BucketLifecycle(rules=[])
        raise
    return BucketLifecycle(
        rules=response.get("Rules", []),
        transition_minimum_size=response.get("TransitionDefaultMinimumObjectSize"),
    )


def write_lifecycle(s3: Any, bucket: str, rules: list[Rule], minimum_size: str | None) -> None:
    """Put the rules; no rules at all means deleting the configuration (S3 rejects an empty one)."""
    if not rules:
        s3.delete_bucket_lifecycle(Bucket=bucket)
        return
    extra = {"TransitionDefaultMinimumObjectSize": minimum_size} if minimum_size else {}
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": rules}, **extra
    )


def verify_lifecycle(
    s3: Any,
    bucket: str,
    expected: Sequence[Rule],
    *,
    attempts: int = 5,
    delay: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Read the rules back until they equal ``expected`` (S3 documents a propagation delay
    after a put); raise ``LifecycleVerificationError`` naming the rules that differ."""
    want = rules_by_id(expected)
    for attempt in range(1, attempts + 1):
        have = rules_by_id(read_lifecycle(s3, bucket).rules)
        if have == want:
            return
        if attempt < attempts:
            sleep(delay)
    differing = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
    raise LifecycleVerificationError(
        f"s3://{bucket}: after the put, these rules read back differently: {', '.join(differing)}"
    )


@dataclass(frozen=True)
class LifecycleResult:
    bucket: str
    plan: LifecyclePlan
    applied: bool
    dry_run: bool = False

    def summary(self) -> dict[str, Any]:
        """Plain data for XCom and the log."""
        diff = self.plan.diff
        return {
            "bucket": self.bucket,
            "dry_run": self.dry_run,
            "drift": self.plan.drift_mode,
            "added": diff.added,
            "changed": {c.rule_id: list(c.fields) for c in diff.changed},
            "removed": self.plan.removed,
            "kept_drift": self.plan.kept_drift,
            "unchanged": len(diff.unchanged),
            "applied": self.applied,
        }


def apply_lifecycle(
    s3: Any,
    bucket: str,
    config: LifecycleConfig,
    *,
    dry_run: bool = False,
    verify_attempts: int = 5,
    verify_delay: float = 2.0,
) -> LifecycleResult:
    """Validate, read, diff, log; put only when something differs; read back and verify.

    Idempotent: a second run finds nothing to do and makes no put."""
    validate_rules(config.rules)  # before any call: the embedded AWS would accept anything
    current = read_lifecycle(s3, bucket)
    plan = plan_lifecycle(config, current.rules)
    log_plan(plan, bucket)
    if dry_run or not plan.needs_apply:
        reason = "dry run: nothing applied" if dry_run else "the bucket is up to date: no put"
        log.info("s3://%s lifecycle: %s", bucket, reason)
        return LifecycleResult(bucket, plan, applied=False, dry_run=dry_run)
    write_lifecycle(s3, bucket, plan.rules, current.transition_minimum_size)
    verify_lifecycle(s3, bucket, plan.rules, attempts=verify_attempts, delay=verify_delay)
    log.info("s3://%s lifecycle: %d rules applied and read back equal", bucket, len(plan.rules))
    return LifecycleResult(bucket, plan, applied=True)
