"""The lake bucket's S3 lifecycle rules: declared in ``infra/lifecycle.json``, validated as S3
would, applied only when the bucket differs, and read back to prove it.

Why validate here: the embedded AWS stores any rule it is given (and never runs one), so an
invalid rule would pass every local run and fail on the first real deploy. The checks below are
the ones S3 makes on ``PutBucketLifecycleConfiguration``, from the Amazon S3 User Guide
("Lifecycle configuration elements"; "Transitioning objects using Amazon S3 Lifecycle", sections
"Supported lifecycle transitions" and "Constraints and considerations for transitions") and the
Amazon S3 API Reference ("PutBucketLifecycleConfiguration", "LifecycleRule",
"LifecycleRuleFilter", "LifecycleRuleAndOperator", "Transition", "LifecycleExpiration",
"NoncurrentVersionTransition", "NoncurrentVersionExpiration",
"AbortIncompleteMultipartUpload"):

- at most 1,000 rules; IDs unique, at most 255 characters (S3 makes IDs optional, this project
  does not: the diff is by ID);
- ``Status`` is ``Enabled`` or ``Disabled``; a rule has at least one action;
- a rule has a ``Filter`` or the deprecated top-level ``Prefix``, not both; a filter holds at
  most one of ``Prefix``, ``Tag``, ``ObjectSizeGreaterThan``, ``ObjectSizeLessThan``, ``And``
  (none: the whole bucket); ``And`` combines two or more predicates;
- transitions: each has ``Days`` (>= 0) or ``Date`` (midnight UTC) and a storage class, one
  transition per class and per day, never ``Days`` and ``Date`` mixed in a rule (expiration
  included); ``STANDARD_IA`` and ``ONEZONE_IA`` need 30 days or more; the classes follow the
  waterfall (STANDARD_IA, INTELLIGENT_TIERING, ONEZONE_IA, GLACIER_IR, GLACIER, DEEP_ARCHIVE;
  ONEZONE_IA goes to GLACIER or DEEP_ARCHIVE only), and an object stays 30 days in
  STANDARD_IA or ONEZONE_IA before its next transition;
- ``Expiration`` has exactly one of ``Days`` (> 0), ``Date``, ``ExpiredObjectDeleteMarker``,
  later than every transition; ``ExpiredObjectDeleteMarker`` not with a tag filter;
- the same for noncurrent versions (``NoncurrentDays``: > 0 to expire, >= 30 to STANDARD_IA or
  ONEZONE_IA; ``NewerNoncurrentVersions`` 1-100);
- ``AbortIncompleteMultipartUpload`` (``DaysAfterInitiation`` > 0) only with a prefix filter or
  none: an upload in progress has no tags and no size yet.

Rules on the bucket that are not declared are *drift*: always reported, then kept (merged into
what is applied) or removed, as the file's ``drift`` setting says.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from storepulse.config import REPO_ROOT

log = logging.getLogger(__name__)

LIFECYCLE_FILE = REPO_ROOT / "infra" / "lifecycle.json"

MAX_RULES = 1000
MAX_ID_LENGTH = 255
DRIFT_MODES = ("keep", "remove")
STATUSES = ("Enabled", "Disabled")
ACTIONS = (  # in the order of an object's life, which is how the log shows them
    "Transitions",
    "Expiration",
    "NoncurrentVersionTransitions",
    "NoncurrentVersionExpiration",
    "AbortIncompleteMultipartUpload",
)
RULE_KEYS = frozenset({"ID", "Filter", "Prefix", "Status", *ACTIONS})
FILTER_KEYS = ("Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan", "And")
AND_KEYS = frozenset({"Prefix", "Tags", "ObjectSizeGreaterThan", "ObjectSizeLessThan"})
FILE_KEYS = frozenset({"description", "notes", "drift", "rules"})

# Where each storage class may go next ("Supported lifecycle transitions"); STANDARD goes anywhere.
NEXT_CLASSES: dict[str, frozenset[str]] = {
    "STANDARD_IA": frozenset(
        {"INTELLIGENT_TIERING", "ONEZONE_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"}
    ),
    "INTELLIGENT_TIERING": frozenset({"ONEZONE_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"}),
    "ONEZONE_IA": frozenset({"GLACIER", "DEEP_ARCHIVE"}),
    "GLACIER_IR": frozenset({"GLACIER", "DEEP_ARCHIVE"}),
    "GLACIER": frozenset({"DEEP_ARCHIVE"}),
    "DEEP_ARCHIVE": frozenset(),
}
# Objects must be 30 days old to enter these classes, and stay 30 days before leaving them.
IA_CLASSES = frozenset({"STANDARD_IA", "ONEZONE_IA"})
IA_MIN_DAYS = 30

Rule = dict[str, Any]


class LifecycleError(Exception):
    """The lifecycle configuration cannot be applied."""


class LifecycleRuleError(LifecycleError):
    """Declared rules S3 would reject; one line per problem, each naming its rule."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        lines = [f"rule {rule_id!r}: {problem}" for rule_id, problem in self.problems]
        super().__init__(f"{len(lines)} invalid lifecycle rule problem(s):\n" + "\n".join(lines))


class LifecycleVerificationError(LifecycleError):
    """The bucket's rules read back differ from the ones just applied."""


# ------------------------------------------------------------------------------ the declared file


@dataclass(frozen=True)
class LifecycleConfig:
    """The declared rules and what to do with undeclared ones (plain data: it travels by XCom)."""

    rules: list[Rule]
    drift: str = "keep"

    def __post_init__(self) -> None:
        if self.drift not in DRIFT_MODES:
            raise LifecycleError(f"drift is {self.drift!r}: it must be one of {list(DRIFT_MODES)}")

    def to_dict(self) -> dict[str, Any]:
        return {"rules": self.rules, "drift": self.drift}


def parse_config(data: Mapping[str, Any]) -> LifecycleConfig:
    """A validated configuration from the file's data; raises ``LifecycleError`` if invalid."""
    unknown = sorted(set(data) - FILE_KEYS)
    if unknown:
        raise LifecycleError(f"unknown keys {unknown}; expected some of {sorted(FILE_KEYS)}")
    rules = data.get("rules")
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise LifecycleError("rules must be a list of S3 LifecycleRule objects")
    config = LifecycleConfig(rules=rules, drift=data.get("drift", "keep"))
    validate_rules(config.rules)
    return config


def load_config(path: Path = LIFECYCLE_FILE) -> LifecycleConfig:
    return parse_config(json.loads(path.read_text()))


# ------------------------------------------------------------------------------ validation


def validate_rules(rules: Sequence[Rule]) -> None:
    """Raise ``LifecycleRuleError`` listing every problem S3 would reject the rules for."""
    problems = [(_label(rule, i), p) for i, rule in enumerate(rules) for p in rule_problems(rule)]
    problems += _set_problems(rules)
    if problems:
        raise LifecycleRuleError(problems)


def _label(rule: Rule, index: int) -> str:
    rule_id = rule.get("ID")
    return rule_id if isinstance(rule_id, str) and rule_id else f"#{index + 1} (no ID)"


def _set_problems(rules: Sequence[Rule]) -> list[tuple[str, str]]:
    """Problems of the rules as a set: count and unique IDs."""
    problems = []
    if len(rules) > MAX_RULES:
        first_extra = _label(rules[MAX_RULES], MAX_RULES)
        problems.append(
            (first_extra, f"is rule {MAX_RULES + 1} of {len(rules)}: at most {MAX_RULES} rules")
        )
    seen: set[str] = set()
    for rule in rules:
        rule_id = rule.get("ID")
        if isinstance(rule_id, str) and rule_id in seen:
            problems.append((rule_id, "duplicate ID: IDs must be unique"))
        if isinstance(rule_id, str):
            seen.add(rule_id)
    return problems


def rule_problems(rule: Rule) -> list[str]:
    """What S3 would reject in one rule (empty: valid)."""
    if not isinstance(rule, dict):
        return ["is not an object"]
    problems = _shape_problems(rule) + _filter_problems(rule)
    problems += _transition_problems(rule, "Transitions", "Days")
    problems += _transition_problems(rule, "NoncurrentVersionTransitions", "NoncurrentDays")
    problems += _expiration_problems(rule) + _noncurrent_expiration_problems(rule)
    problems += _abort_problems(rule) + _mixed_date_problems(rule)
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shape_problems(rule: Rule) -> list[str]:
    problems = []
    unknown = sorted(set(rule) - RULE_KEYS)
    if unknown:
        problems.append(f"unknown keys {unknown} (S3 LifecycleRule keys: {sorted(RULE_KEYS)})")
    rule_id = rule.get("ID")
    if not isinstance(rule_id, str) or not rule_id:
        problems.append("has no ID: every declared rule needs a stable ID (the diff is by ID)")
    elif len(rule_id) > MAX_ID_LENGTH:
        problems.append(f"ID has {len(rule_id)} characters: at most {MAX_ID_LENGTH}")
    if rule.get("Status") not in STATUSES:
        problems.append(f"Status is {rule.get('Status')!r}: it must be Enabled or Disabled")
    if not any(rule.get(action) for action in ACTIONS):
        problems.append(f"has no action: give at least one of {', '.join(ACTIONS)}")
    return problems


# --------------------------------------------------------------------------- filter


def _filter_problems(rule: Rule) -> list[str]:
    if "Filter" in rule and "Prefix" in rule:
        return ["has both Filter and the deprecated top-level Prefix: keep Filter only"]
    if "Prefix" in rule:
        return [] if isinstance(rule["Prefix"], str) else ["Prefix must be a string"]
    if "Filter" not in rule:
        return ['has no Filter: give {"Prefix": "<zone>/"} ({"Prefix": ""}: the whole bucket)']
    found = rule["Filter"]
    if not isinstance(found, dict):
        return ["Filter must be an object"]
    unknown = sorted(set(found) - set(FILTER_KEYS))
    if unknown:
        return [f"Filter has unknown keys {unknown}; allowed: {', '.join(FILTER_KEYS)}"]
    if len(found) > 1:
        return [
            f"Filter has {', '.join(sorted(found))}: at most one of {', '.join(FILTER_KEYS)} "
            "(And combines several)"
        ]
    return _predicate_problems(found, "Filter") + _and_problems(found.get("And"))


def _predicate_problems(predicates: Mapping[str, Any], where: str) -> list[str]:
    problems = []
    if "Prefix" in predicates and not isinstance(predicates["Prefix"], str):
        problems.append(f"{where}.Prefix must be a string")
    if "Tag" in predicates:
        problems += _tag_problems(predicates["Tag"], f"{where}.Tag")
    for key in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
        if key in predicates and not (_is_int(predicates[key]) and predicates[key] >= 0):
            problems.append(f"{where}.{key} must be a whole number of bytes >= 0")
    return problems


def _tag_problems(tag: Any, where: str) -> list[str]:
    if not isinstance(tag, dict) or set(tag) != {"Key", "Value"}:
        return [f"{where} must be an object with Key and Value"]
    if not isinstance(tag["Key"], str) or not 1 <= len(tag["Key"]) <= 128:
        return [f"{where}.Key must be a string of 1-128 characters"]
    if not isinstance(tag["Value"], str) or len(tag["Value"]) > 256:
        return [f"{where}.Value must be a string of at most 256 characters"]
    return []


def _and_problems(combined: Any) -> list[str]:
    if combined is None:
        return []
    if not isinstance(combined, dict) or set(combined) - AND_KEYS:
        return [f"Filter.And must be an object with some of {', '.join(sorted(AND_KEYS))}"]
    tags = combined.get("Tags", [])
    if not isinstance(tags, list):
        return ["Filter.And.Tags must be a list"]
    problems = _predicate_problems(combined, "Filter.And")
    for i, tag in enumerate(tags):
        problems += _tag_problems(tag, f"Filter.And.Tags[{i}]")
    count = len(tags) + sum(k in combined for k in AND_KEYS - {"Tags"})
    if count < 2:
        problems.append("Filter.And combines two or more predicates: use the predicate alone")
    low, high = combined.get("ObjectSizeGreaterThan"), combined.get("ObjectSizeLessThan")
    if _is_int(low) and _is_int(high) and low >= high:
        problems.append("Filter.And: ObjectSizeGreaterThan must be less than ObjectSizeLessThan")
    return problems


def _filter_of(rule: Rule) -> dict[str, Any]:
    """The rule's filter, the deprecated top-level Prefix included ({}: the whole bucket)."""
    if "Prefix" in rule and "Filter" not in rule:
        return {"Prefix": rule["Prefix"]}
    found = rule.get("Filter")
    return found if isinstance(found, dict) else {}


def _uses_tags(rule: Rule) -> bool:
    found = _filter_of(rule)
    combined = found.get("And")
    return "Tag" in found or bool(isinstance(combined, dict) and combined.get("Tags"))


# --------------------------------------------------------------------------- actions


def _transition_problems(rule: Rule, key: str, days_key: str) -> list[str]:
    """Each transition well formed, then the sequence in time: classes, spacing."""
    transitions = rule.get(key)
    if transitions is None:
        return []
    if not isinstance(transitions, list) or not all(isinstance(t, dict) for t in transitions):
        return [f"{key} must be a list of objects"]
    problems = [p for t in transitions for p in _one_transition_problems(t, key, days_key)]
    if problems or len({"Date" in t for t in transitions}) > 1:  # mixed: reported on its own
        return problems
    classes = [t["StorageClass"] for t in transitions]
    if len(set(classes)) < len(classes):
        problems.append(f"{key}: one transition per storage class ({', '.join(classes)})")
    timed = sorted(transitions, key=lambda t: _when(t, days_key))
    for earlier, later in pairwise(timed):
        problems += _step_problems(earlier, later, key, days_key)
    return problems


TRANSITION_KEYS = {
    "Days": frozenset({"Days", "Date", "StorageClass"}),
    "NoncurrentDays": frozenset({"NoncurrentDays", "NewerNoncurrentVersions", "StorageClass"}),
}


def _one_transition_problems(transition: Rule, key: str, days_key: str) -> list[str]:
    storage_class = transition.get("StorageClass")
    unknown = sorted(set(transition) - TRANSITION_KEYS[days_key])
    if unknown:
        return [f"{key}: unknown keys {unknown} in the transition to {storage_class}"]
    if storage_class not in NEXT_CLASSES:
        return [f"{key}: StorageClass {storage_class!r} is not one of {', '.join(NEXT_CLASSES)}"]
    if days_key == "Days" and ("Days" in transition) == ("Date" in transition):
        return [f"{key}: the transition to {storage_class} needs exactly one of Days and Date"]
    if "Date" in transition:
        return _date_problems(transition["Date"], f"{key}: Date of {storage_class}")
    days = transition.get(days_key)
    if not _is_int(days) or days < 0:
        return [f"{key}: {days_key} of {storage_class} must be a whole number >= 0, not {days!r}"]
    newer = transition.get("NewerNoncurrentVersions", 1)
    if not _is_int(newer) or not 1 <= newer <= 100:
        return [f"{key}: NewerNoncurrentVersions of {storage_class} must be 1-100"]
    if storage_class in IA_CLASSES and days < IA_MIN_DAYS:
        return [
            f"{key}: {storage_class} after {days} days; S3 needs {IA_MIN_DAYS} days or more "
            f"before {storage_class}"
        ]
    return []


def _step_problems(earlier: Rule, later: Rule, key: str, days_key: str) -> list[str]:
    before, after = earlier["StorageClass"], later["StorageClass"]
    when_before, when_after = _when(earlier, days_key), _when(later, days_key)
    if when_before == when_after:
        return [f"{key}: {before} and {after} on the same day: one transition per day"]
    if after not in NEXT_CLASSES[before]:
        allowed = ", ".join(sorted(NEXT_CLASSES[before])) or "nothing"
        return [f"{key}: {before} cannot transition to {after} (it can go to {allowed})"]
    days_before, days_after = earlier.get(days_key), later.get(days_key)
    if before in IA_CLASSES and _is_int(days_before) and days_after - days_before < IA_MIN_DAYS:
        return [
            f"{key}: {after} after {days_after} days is less than {IA_MIN_DAYS} days after "
            f"{before} (day {days_before}): objects stay {IA_MIN_DAYS} days in {before}"
        ]
    return []


def _when(transition: Mapping[str, Any], days_key: str) -> Any:
    """A transition's time, comparable within one rule (Days and Date are never mixed)."""
    if "Date" in transition:
        return _parse_date(transition["Date"])
    return transition.get(days_key)


def _expiration_problems(rule: Rule) -> list[str]:
    expiration = rule.get("Expiration")
    if expiration is None:
        return []
    if not isinstance(expiration, dict):
        return ["Expiration must be an object"]
    given = sorted(k for k in ("Days", "Date", "ExpiredObjectDeleteMarker") if k in expiration)
    if set(expiration) - set(given) or len(given) != 1:
        return ["Expiration needs exactly one of Days, Date, ExpiredObjectDeleteMarker"]
    if "ExpiredObjectDeleteMarker" in expiration:
        return _delete_marker_problems(rule, expiration["ExpiredObjectDeleteMarker"])
    if "Date" in expiration:
        return _date_problems(expiration["Date"], "Expiration.Date") or _expires_after(
            rule, _parse_date(expiration["Date"]), "Date"
        )
    days = expiration["Days"]
    if not _is_int(days) or days <= 0:
        return [f"Expiration.Days must be a whole number > 0, not {days!r}"]
    return _expires_after(rule, days, "Days")


def _delete_marker_problems(rule: Rule, value: Any) -> list[str]:
    if not isinstance(value, bool):
        return ["Expiration.ExpiredObjectDeleteMarker must be true or false"]
    if _uses_tags(rule):
        return ["Expiration.ExpiredObjectDeleteMarker cannot be used with a tag filter"]
    return []


def _expires_after(rule: Rule, when: Any, unit: str) -> list[str]:
    transitions = rule.get("Transitions")
    if not isinstance(transitions, list) or _transition_problems(rule, "Transitions", "Days"):
        return []  # malformed transitions are reported on their own
    latest = [t for t in transitions if unit in t and _when(t, "Days") >= when]
    return [
        f"Expiration.{unit} ({_show(when)}) must be later than the transition to "
        f"{t['StorageClass']} ({_show(t[unit])})"
        for t in latest
    ]


def _noncurrent_expiration_problems(rule: Rule) -> list[str]:
    expiration = rule.get("NoncurrentVersionExpiration")
    if expiration is None:
        return []
    if not isinstance(expiration, dict) or set(expiration) - {
        "NoncurrentDays",
        "NewerNoncurrentVersions",
    }:
        return ["NoncurrentVersionExpiration takes NoncurrentDays and NewerNoncurrentVersions"]
    days = expiration.get("NoncurrentDays")
    if not _is_int(days) or days <= 0:
        return [f"NoncurrentVersionExpiration.NoncurrentDays must be > 0, not {days!r}"]
    newer = expiration.get("NewerNoncurrentVersions", 1)
    if not _is_int(newer) or not 1 <= newer <= 100:
        return ["NoncurrentVersionExpiration.NewerNoncurrentVersions must be 1-100"]
    transitions = rule.get("NoncurrentVersionTransitions")
    if not isinstance(transitions, list):
        return []
    return [
        f"NoncurrentVersionExpiration.NoncurrentDays ({days}) must be greater than the "
        f"noncurrent transition to {t['StorageClass']} ({t['NoncurrentDays']})"
        for t in transitions
        if isinstance(t, dict) and _is_int(t.get("NoncurrentDays")) and t["NoncurrentDays"] >= days
    ]


def _abort_problems(rule: Rule) -> list[str]:
    abort = rule.get("AbortIncompleteMultipartUpload")
    if abort is None:
        return []
    days = abort.get("DaysAfterInitiation") if isinstance(abort, dict) else None
    if not _is_int(days) or days <= 0:
        return [f"AbortIncompleteMultipartUpload.DaysAfterInitiation must be > 0, not {days!r}"]
    if set(_filter_of(rule)) - {"Prefix"}:
        return [
            "AbortIncompleteMultipartUpload needs a Prefix filter or none: an upload in "
            "progress has no tags and no size"
        ]
    return []


def _mixed_date_problems(rule: Rule) -> list[str]:
    expiration = rule.get("Expiration")
    timed = [*(rule.get("Transitions") or []), expiration if isinstance(expiration, dict) else {}]
    units = {unit for t in timed if isinstance(t, dict) for unit in ("Days", "Date") if unit in t}
    if len(units) > 1:
        return ["mixes Days and Date in its transitions and expiration: use one"]
    return []


# --------------------------------------------------------------------------- dates


def _parse_date(value: Any) -> datetime | None:
    """A lifecycle date as an aware UTC datetime (None if it is not one)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _date_problems(value: Any, where: str) -> list[str]:
    parsed = _parse_date(value)
    if parsed is None:
        return [f"{where} must be an ISO 8601 date, not {value!r}"]
    if parsed.time() != datetime.min.time():
        return [f"{where} must be at midnight UTC, not {_show(parsed)}"]
    return []


def _show(value: Any) -> str:
    return value.date().isoformat() if isinstance(value, datetime) else str(value)


# ------------------------------------------------------------------------------ normal form


def normalize_rule(rule: Rule) -> Rule:
    """The rule in one canonical form, so that equal rules compare equal whichever way S3 (or
    the embedded AWS) spells them: the filter always present (``{"Prefix": ""}`` for the whole
    bucket, the deprecated top-level Prefix moved into it), tags and transitions sorted, dates
    as UTC ISO strings, defaults (``ExpiredObjectDeleteMarker: false``) and empty actions
    dropped."""
    normal: Rule = {"ID": rule.get("ID", ""), "Status": rule.get("Status")}
    normal["Filter"] = _normal_filter(_filter_of(rule))
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
    return value if _is_int(value) else -1


def _normal_dates(value: Mapping[str, Any]) -> dict[str, Any]:
    normal = dict(value)
    if "Date" in normal and _parse_date(normal["Date"]) is not None:
        normal["Date"] = _parse_date(normal["Date"]).isoformat()  # type: ignore[union-attr]
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
                    _label(rules[MAX_RULES], MAX_RULES),
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
