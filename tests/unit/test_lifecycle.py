"""Lifecycle rules: the declared file, validation as S3 would do it, normal form, diff and plan."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from storepulse.capture.compaction import STATE
from storepulse.config import REPO_ROOT
from storepulse.lake.paths import CHANGES, QUARANTINE_CHANGES, QUARANTINE_EVENTS, RAW_EVENTS
from storepulse.lifecycle import (
    LIFECYCLE_FILE,
    MAX_RULES,
    LifecycleConfig,
    LifecycleError,
    LifecycleRuleError,
    LifecycleVerificationError,
    diff_rules,
    load_config,
    normalize_rule,
    parse_config,
    plan_lifecycle,
    rule_problems,
    validate_rules,
    verify_lifecycle,
)

Rule = dict[str, Any]
CHANGES_RETENTION_DAYS = 14  # what the README states


def _rule(rule_id: str = "r", **actions: Any) -> Rule:
    rule: Rule = {"ID": rule_id, "Filter": {"Prefix": "zone/"}, "Status": "Enabled"}
    return rule | (actions or {"Expiration": {"Days": 10}})


def _transitions(*steps: tuple[int, str]) -> list[dict[str, Any]]:
    return [{"Days": days, "StorageClass": storage_class} for days, storage_class in steps]


def _rejected(rules: list[Rule]) -> str:
    with pytest.raises(LifecycleRuleError) as caught:
        validate_rules(rules)
    return str(caught.value)


# ------------------------------------------------------------------------------ the declared file


def test_the_declared_file_is_valid_and_covers_every_zone() -> None:
    config = load_config()
    by_id = {rule["ID"]: rule for rule in config.rules}
    prefixes = {rule_id: rule["Filter"]["Prefix"] for rule_id, rule in by_id.items()}
    assert prefixes == {
        "storepulse-raw": "raw/",
        "storepulse-quarantine": "quarantine/",
        "storepulse-staging": "staging/",
        "storepulse-changes": "changes/",
        "storepulse-curated": "curated/",
        "storepulse-quality": "_quality/",
        "storepulse-abort-incomplete-multipart": "",
        "storepulse-noncurrent-versions": "",
    }
    assert config.drift == "keep"
    assert {rule["Status"] for rule in config.rules} == {"Enabled"}
    raw = by_id["storepulse-raw"]
    assert raw["Transitions"] == _transitions((30, "STANDARD_IA"), (90, "GLACIER"))
    assert raw["Expiration"] == {"Days": 400}
    assert "Expiration" not in by_id["storepulse-curated"]  # queried: never deleted nor archived
    assert by_id["storepulse-changes"]["Expiration"] == {"Days": CHANGES_RETENTION_DAYS}


def test_the_zone_prefixes_cover_what_the_stream_writes() -> None:
    """A prefix without its slash would also match ``raw-backup/``; one with a typo, nothing."""
    prefixes = {rule["ID"]: rule["Filter"]["Prefix"] for rule in load_config().rules}
    assert f"{RAW_EVENTS}/".startswith(prefixes["storepulse-raw"])
    assert f"{QUARANTINE_EVENTS}/".startswith(prefixes["storepulse-quarantine"])
    assert f"{QUARANTINE_CHANGES}/".startswith(prefixes["storepulse-quarantine"])
    assert f"{CHANGES}/".startswith(prefixes["storepulse-changes"])
    assert f"{STATE}/".startswith(prefixes["storepulse-changes"])  # the compaction's state too
    assert all(p.endswith("/") for p in prefixes.values() if p)


def test_the_readme_states_the_retention_of_the_change_files() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert f"expires `changes/` after {CHANGES_RETENTION_DAYS} days" in readme


def test_every_declared_rule_has_a_note() -> None:
    data = json.loads(LIFECYCLE_FILE.read_text())
    assert set(data["notes"]) == {rule["ID"] for rule in data["rules"]}


def test_the_drift_setting_is_keep_or_remove() -> None:
    data = json.loads(LIFECYCLE_FILE.read_text())
    assert parse_config({**data, "drift": "remove"}).drift == "remove"
    assert parse_config({"rules": data["rules"]}).drift == "keep"  # the default
    with pytest.raises(LifecycleError, match="drift is 'delete'"):
        parse_config({**data, "drift": "delete"})
    with pytest.raises(LifecycleError, match="unknown keys"):
        parse_config({**data, "rule": []})


# ------------------------------------------------------------------------------ validation


def test_duplicate_ids_are_rejected_by_name() -> None:
    message = _rejected([_rule("same"), _rule("other"), _rule("same")])
    assert "rule 'same': duplicate ID" in message


def test_ids_are_required_and_at_most_255_characters() -> None:
    no_id = _rule()
    del no_id["ID"]
    assert "rule '#1 (no ID)': has no ID" in _rejected([no_id])
    assert "ID has 256 characters: at most 255" in _rejected([_rule("x" * 256)])
    validate_rules([_rule("x" * 255)])


@pytest.mark.parametrize("storage_class", ["STANDARD_IA", "ONEZONE_IA"])
def test_infrequent_access_before_30_days_is_rejected(storage_class: str) -> None:
    rule = _rule("early-ia", Transitions=_transitions((29, storage_class)))
    message = _rejected([rule])
    assert f"rule 'early-ia': Transitions: {storage_class} after 29 days" in message
    assert "30 days or more" in message
    validate_rules([_rule("ok", Transitions=_transitions((30, storage_class)))])


def test_other_classes_may_transition_on_day_0() -> None:
    validate_rules([_rule("now", Transitions=_transitions((0, "GLACIER_IR")))])


@pytest.mark.parametrize("days", [90, 60])
def test_expiration_must_come_after_every_transition(days: int) -> None:
    rule = _rule(
        "expires-early",
        Transitions=_transitions((30, "STANDARD_IA"), (90, "GLACIER")),
        Expiration={"Days": days},
    )
    message = _rejected([rule])
    assert f"rule 'expires-early': Expiration.Days ({days}) must be later than" in message
    assert "GLACIER (90)" in message


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ({"Prefix": "raw/", "Tag": {"Key": "k", "Value": "v"}}, "at most one of Prefix, Tag"),
        ({"prefix": "raw/"}, "Filter has unknown keys ['prefix']"),
        ({"Prefix": 7}, "Filter.Prefix must be a string"),
        ({"Tag": {"Key": "k"}}, "Filter.Tag must be an object with Key and Value"),
        ({"And": {"Prefix": "raw/"}}, "Filter.And combines two or more predicates"),
        ({"ObjectSizeGreaterThan": -1}, "ObjectSizeGreaterThan must be a whole number"),
        ("raw/", "Filter must be an object"),
    ],
)
def test_bad_filter_shapes_are_rejected(filter_: Any, expected: str) -> None:
    rule = _rule("bad-filter") | {"Filter": filter_}
    message = _rejected([rule])
    assert "rule 'bad-filter': " in message
    assert expected in message


def test_a_rule_needs_a_filter_or_the_old_prefix_but_not_both() -> None:
    no_filter = _rule("nothing")
    del no_filter["Filter"]
    assert "rule 'nothing': has no Filter" in _rejected([no_filter])
    both = _rule("both") | {"Prefix": "raw/"}
    assert "rule 'both': has both Filter and the deprecated top-level Prefix" in _rejected([both])
    legacy = _rule("legacy") | {"Prefix": "raw/"}
    del legacy["Filter"]
    validate_rules([legacy])


def test_valid_filters_are_accepted() -> None:
    tags = [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
    validate_rules(
        [
            _rule("whole-bucket") | {"Filter": {}},
            _rule("tag") | {"Filter": {"Tag": {"Key": "a", "Value": "1"}}},
            _rule("and") | {"Filter": {"And": {"Prefix": "raw/", "Tags": tags}}},
            _rule("size") | {"Filter": {"ObjectSizeGreaterThan": 1024}},
        ]
    )


def test_more_than_1000_rules_are_rejected_naming_the_first_extra_rule() -> None:
    rules = [_rule(f"rule-{i:04d}") for i in range(MAX_RULES + 1)]
    message = _rejected(rules)
    assert "rule 'rule-1000': is rule 1001 of 1001: at most 1000 rules" in message
    validate_rules(rules[:MAX_RULES])


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([(90, "STANDARD_IA"), (30, "GLACIER")], "GLACIER cannot transition to STANDARD_IA"),
        ([(30, "ONEZONE_IA"), (90, "GLACIER_IR")], "ONEZONE_IA cannot transition to GLACIER_IR"),
        ([(30, "STANDARD_IA"), (45, "GLACIER")], "GLACIER after 45 days is less than 30 days"),
        ([(30, "GLACIER"), (30, "DEEP_ARCHIVE")], "on the same day"),
        ([(30, "GLACIER"), (90, "GLACIER")], "one transition per storage class"),
        ([(30, "COLD")], "StorageClass 'COLD' is not one of"),
        ([(-1, "GLACIER")], "Days of GLACIER must be a whole number >= 0"),
    ],
)
def test_transitions_follow_the_storage_class_waterfall(
    steps: list[tuple[int, str]], expected: str
) -> None:
    message = _rejected([_rule("waterfall", Transitions=_transitions(*steps))])
    assert "rule 'waterfall': Transitions: " in message
    assert expected in message


def test_a_valid_waterfall_is_accepted_in_any_list_order() -> None:
    steps = _transitions(
        (180, "DEEP_ARCHIVE"), (30, "STANDARD_IA"), (60, "INTELLIGENT_TIERING"), (90, "GLACIER")
    )
    validate_rules([_rule("waterfall", Transitions=steps, Expiration={"Days": 365})])


def test_multipart_abort_needs_a_prefix_filter_or_none() -> None:
    abort = {"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}
    tagged = _rule("tagged", **abort) | {"Filter": {"Tag": {"Key": "k", "Value": "v"}}}
    assert "rule 'tagged': AbortIncompleteMultipartUpload needs a Prefix filter" in _rejected(
        [tagged]
    )
    validate_rules([_rule("prefixed", **abort), _rule("all", **abort) | {"Filter": {}}])
    zero = _rule("zero", AbortIncompleteMultipartUpload={"DaysAfterInitiation": 0})
    assert "DaysAfterInitiation must be > 0" in _rejected([zero])


def test_noncurrent_versions() -> None:
    zero = _rule("zero", NoncurrentVersionExpiration={"NoncurrentDays": 0})
    assert "rule 'zero': NoncurrentVersionExpiration.NoncurrentDays must be > 0" in _rejected(
        [zero]
    )
    early = _rule(
        "early",
        NoncurrentVersionTransitions=[{"NoncurrentDays": 10, "StorageClass": "STANDARD_IA"}],
    )
    assert "STANDARD_IA after 10 days" in _rejected([early])
    late = _rule(
        "late",
        NoncurrentVersionTransitions=[{"NoncurrentDays": 30, "StorageClass": "GLACIER"}],
        NoncurrentVersionExpiration={"NoncurrentDays": 30},
    )
    assert "must be greater than the noncurrent transition to GLACIER (30)" in _rejected([late])


def test_status_action_expiration_and_dates() -> None:
    assert "Status is 'On'" in _rejected([_rule("s") | {"Status": "On"}])
    inert = {"ID": "inert", "Filter": {}, "Status": "Enabled"}
    assert "rule 'inert': has no action" in _rejected([inert])
    both = _rule("both", Expiration={"Days": 10, "ExpiredObjectDeleteMarker": True})
    assert "Expiration needs exactly one of" in _rejected([both])
    assert "Expiration.Days must be a whole number > 0" in _rejected(
        [_rule("zero", Expiration={"Days": 0})]
    )
    noon = _rule("noon", Expiration={"Date": "2027-01-01T12:00:00Z"})
    assert "must be at midnight UTC" in _rejected([noon])
    mixed = _rule(
        "mixed",
        Transitions=[{"Date": "2027-01-01T00:00:00Z", "StorageClass": "GLACIER"}],
        Expiration={"Days": 400},
    )
    assert "mixes Days and Date" in _rejected([mixed])
    tagged = _rule("tagged", Expiration={"ExpiredObjectDeleteMarker": True}) | {
        "Filter": {"Tag": {"Key": "k", "Value": "v"}}
    }
    assert "ExpiredObjectDeleteMarker cannot be used with a tag filter" in _rejected([tagged])
    typo = _rule("typo", Transition=_transitions((30, "GLACIER")))
    assert "unknown keys ['Transition']" in _rejected([typo])


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(LifecycleRuleError) as caught:
        validate_rules([_rule("a") | {"Status": "on"}, _rule("b", Expiration={"Days": -1})])
    assert [rule_id for rule_id, _ in caught.value.problems] == ["a", "b"]


def test_rule_problems_of_a_valid_rule_is_empty() -> None:
    assert rule_problems(load_config().rules[0]) == []


# ------------------------------------------------------------------------------ normal form, diff


def test_equal_rules_spelt_differently_normalise_equal() -> None:
    declared = _rule("whole") | {"Filter": {"Prefix": ""}}
    spellings = [
        _rule("whole") | {"Filter": {}},
        {k: v for k, v in declared.items() if k != "Filter"},
        {k: v for k, v in declared.items() if k != "Filter"} | {"Prefix": ""},
    ]
    for spelling in spellings:
        assert normalize_rule(spelling) == normalize_rule(declared), spelling


def test_normal_form_sorts_transitions_and_tags_and_drops_defaults() -> None:
    a = _rule(
        "a",
        Transitions=_transitions((90, "GLACIER"), (30, "STANDARD_IA")),
        Expiration={"Days": 400, "ExpiredObjectDeleteMarker": False},
    ) | {"Filter": {"And": {"Tags": [{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "1"}]}}}
    b = copy.deepcopy(a)
    b["Transitions"].reverse()
    b["Expiration"] = {"Days": 400}
    b["Filter"]["And"]["Tags"].reverse()
    assert normalize_rule(a) == normalize_rule(b)
    assert normalize_rule(a)["Transitions"][0]["StorageClass"] == "STANDARD_IA"


def test_dates_compare_as_instants() -> None:
    text = _rule("d", Expiration={"Date": "2027-01-01T00:00:00Z"})
    parsed = _rule("d", Expiration={"Date": datetime(2027, 1, 1, tzinfo=UTC)})
    assert normalize_rule(text) == normalize_rule(parsed)


def test_diff_is_by_id_whatever_the_order() -> None:
    declared = [_rule("a"), _rule("b"), _rule("c")]
    current = [_rule("c"), _rule("a") | {"Filter": {"Prefix": "zone/"}}, _rule("b")]
    diff = diff_rules(current, declared)
    assert (diff.added, diff.changed, diff.drift) == ([], [], [])
    assert diff.unchanged == ["a", "b", "c"]


def test_diff_names_added_changed_fields_and_drift() -> None:
    declared = [_rule("new"), _rule("same"), _rule("edited", Expiration={"Days": 3})]
    current = [
        _rule("same"),
        _rule("edited", Expiration={"Days": 7}) | {"Status": "Disabled"},
        _rule("by-hand"),
    ]
    diff = diff_rules(current, declared)
    assert diff.added == ["new"]
    assert diff.unchanged == ["same"]
    assert diff.drift == ["by-hand"]
    [change] = diff.changed
    assert change.rule_id == "edited"
    assert change.fields == {
        "Status": ("Disabled", "Enabled"),
        "Expiration": ({"Days": 7}, {"Days": 3}),
    }


def test_a_field_only_on_the_bucket_is_a_change_too() -> None:
    current = [_rule("r", Expiration={"Days": 10}, Transitions=_transitions((0, "GLACIER")))]
    [change] = diff_rules(current, [_rule("r")]).changed
    assert change.fields == {"Transitions": (_transitions((0, "GLACIER")), None)}


# ------------------------------------------------------------------------------ plan


def test_drift_is_kept_without_a_put_when_nothing_else_differs() -> None:
    declared = [_rule("a")]
    plan = plan_lifecycle(LifecycleConfig(declared, "keep"), [_rule("a"), _rule("by-hand")])
    assert plan.kept_drift == ["by-hand"]
    assert plan.removed == []
    assert not plan.needs_apply
    assert [r["ID"] for r in plan.rules] == ["a", "by-hand"]


def test_drift_is_removed_with_drift_remove() -> None:
    plan = plan_lifecycle(LifecycleConfig([_rule("a")], "remove"), [_rule("a"), _rule("by-hand")])
    assert (plan.removed, plan.kept_drift, plan.needs_apply) == (["by-hand"], [], True)
    assert [r["ID"] for r in plan.rules] == ["a"]


def test_kept_drift_counts_towards_the_1000_rules() -> None:
    declared = [_rule(f"d-{i}") for i in range(MAX_RULES)]
    expected = r"rule 'by-hand': is rule 1001 of 1001 with the kept drift"
    with pytest.raises(LifecycleRuleError, match=expected):
        plan_lifecycle(LifecycleConfig(declared), [_rule("by-hand")])


def test_a_config_with_an_unknown_drift_mode_cannot_be_built() -> None:
    with pytest.raises(LifecycleError, match="drift is 'drop'"):
        LifecycleConfig([_rule("a")], "drop")


# ------------------------------------------------------------------------------ verification


class _FakeS3:
    """Answers get_bucket_lifecycle_configuration with the given rules, one answer per call."""

    def __init__(self, *answers: list[Rule]) -> None:
        self.answers = list(answers)

    def get_bucket_lifecycle_configuration(self, Bucket: str) -> dict[str, Any]:  # noqa: N803
        return {"Rules": self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]}


def test_verification_waits_for_the_rules_to_propagate() -> None:
    sleeps: list[float] = []
    s3 = _FakeS3([_rule("old")], [_rule("new")])
    verify_lifecycle(s3, "lake", [_rule("new")], attempts=3, delay=0.5, sleep=sleeps.append)
    assert sleeps == [0.5]


def test_verification_fails_naming_the_rules_that_differ() -> None:
    sleeps: list[float] = []
    s3 = _FakeS3([_rule("a"), _rule("b", Expiration={"Days": 1})])
    with pytest.raises(LifecycleVerificationError, match=r"s3://lake: .+: b$"):
        verify_lifecycle(s3, "lake", [_rule("a"), _rule("b")], attempts=3, sleep=sleeps.append)
    assert len(sleeps) == 2
