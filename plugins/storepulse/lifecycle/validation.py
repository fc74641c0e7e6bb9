"""S3's own checks of lifecycle rules, made before anything is applied.

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
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

log = logging.getLogger(__name__)

MAX_RULES = 1000
MAX_ID_LENGTH = 255
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


# ------------------------------------------------------------------------------ validation


def validate_rules(rules: Sequence[Rule]) -> None:
    """Raise ``LifecycleRuleError`` listing every problem S3 would reject the rules for."""
    problems = [
        (rule_label(rule, i), p) for i, rule in enumerate(rules) for p in rule_problems(rule)
    ]
    problems += _set_problems(rules)
    if problems:
        raise LifecycleRuleError(problems)


def rule_label(rule: Rule, index: int) -> str:
    rule_id = rule.get("ID")
    return rule_id if isinstance(rule_id, str) and rule_id else f"#{index + 1} (no ID)"


def _set_problems(rules: Sequence[Rule]) -> list[tuple[str, str]]:
    """Problems of the rules as a set: count and unique IDs."""
    problems = []
    if len(rules) > MAX_RULES:
        first_extra = rule_label(rules[MAX_RULES], MAX_RULES)
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


def is_int(value: Any) -> bool:
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
        if key in predicates and not (is_int(predicates[key]) and predicates[key] >= 0):
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
    if is_int(low) and is_int(high) and low >= high:
        problems.append("Filter.And: ObjectSizeGreaterThan must be less than ObjectSizeLessThan")
    return problems


def filter_of(rule: Rule) -> dict[str, Any]:
    """The rule's filter, the deprecated top-level Prefix included ({}: the whole bucket)."""
    if "Prefix" in rule and "Filter" not in rule:
        return {"Prefix": rule["Prefix"]}
    found = rule.get("Filter")
    return found if isinstance(found, dict) else {}


def _uses_tags(rule: Rule) -> bool:
    found = filter_of(rule)
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
    if not is_int(days) or days < 0:
        return [f"{key}: {days_key} of {storage_class} must be a whole number >= 0, not {days!r}"]
    newer = transition.get("NewerNoncurrentVersions", 1)
    if not is_int(newer) or not 1 <= newer <= 100:
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
    if before in IA_CLASSES and is_int(days_before) and days_after - days_before < IA_MIN_DAYS:
        return [
            f"{key}: {after} after {days_after} days is less than {IA_MIN_DAYS} days after "
            f"{before} (day {days_before}): objects stay {IA_MIN_DAYS} days in {before}"
        ]
    return []


def _when(transition: Mapping[str, Any], days_key: str) -> Any:
    """A transition's time, comparable within one rule (Days and Date are never mixed)."""
    if "Date" in transition:
        return parse_date(transition["Date"])
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
            rule, parse_date(expiration["Date"]), "Date"
        )
    days = expiration["Days"]
    if not is_int(days) or days <= 0:
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
    if not is_int(days) or days <= 0:
        return [f"NoncurrentVersionExpiration.NoncurrentDays must be > 0, not {days!r}"]
    newer = expiration.get("NewerNoncurrentVersions", 1)
    if not is_int(newer) or not 1 <= newer <= 100:
        return ["NoncurrentVersionExpiration.NewerNoncurrentVersions must be 1-100"]
    transitions = rule.get("NoncurrentVersionTransitions")
    if not isinstance(transitions, list):
        return []
    return [
        f"NoncurrentVersionExpiration.NoncurrentDays ({days}) must be greater than the "
        f"noncurrent transition to {t['StorageClass']} ({t['NoncurrentDays']})"
        for t in transitions
        if isinstance(t, dict) and is_int(t.get("NoncurrentDays")) and t["NoncurrentDays"] >= days
    ]


def _abort_problems(rule: Rule) -> list[str]:
    abort = rule.get("AbortIncompleteMultipartUpload")
    if abort is None:
        return []
    days = abort.get("DaysAfterInitiation") if isinstance(abort, dict) else None
    if not is_int(days) or days <= 0:
        return [f"AbortIncompleteMultipartUpload.DaysAfterInitiation must be > 0, not {days!r}"]
    if set(filter_of(rule)) - {"Prefix"}:
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


def parse_date(value: Any) -> datetime | None:
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
    parsed = parse_date(value)
    if parsed is None:
        return [f"{where} must be an ISO 8601 date, not {value!r}"]
    if parsed.time() != datetime.min.time():
        return [f"{where} must be at midnight UTC, not {_show(parsed)}"]
    return []


def _show(value: Any) -> str:
    return value.date().isoformat() if isinstance(value, datetime) else str(value)
