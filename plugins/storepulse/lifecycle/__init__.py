"""The lake bucket's S3 lifecycle rules: declared in ``infra/lifecycle.json`` (``config``),
validated as S3 would (``validation``: the embedded AWS stores any rule it is given, checked
2026-12: a 10-day STANDARD_IA transition, ``Expiration.Days`` 0, a rule without action, a bad
status or two rules with one ID are all accepted), applied only when the bucket differs, and read
back to prove it (``apply``)."""

from __future__ import annotations

from storepulse.lifecycle.apply import (
    BucketLifecycle,
    LifecycleResult,
    LifecycleVerificationError,
    apply_lifecycle,
    diff_rules,
    normalize_rule,
    plan_lifecycle,
    read_lifecycle,
    rules_by_id,
    verify_lifecycle,
)
from storepulse.lifecycle.config import LIFECYCLE_FILE, LifecycleConfig, load_config, parse_config
from storepulse.lifecycle.validation import (
    MAX_RULES,
    LifecycleError,
    LifecycleRuleError,
    rule_problems,
    validate_rules,
)

__all__ = [
    "LIFECYCLE_FILE",
    "MAX_RULES",
    "BucketLifecycle",
    "LifecycleConfig",
    "LifecycleError",
    "LifecycleResult",
    "LifecycleRuleError",
    "LifecycleVerificationError",
    "apply_lifecycle",
    "diff_rules",
    "load_config",
    "normalize_rule",
    "parse_config",
    "plan_lifecycle",
    "read_lifecycle",
    "rule_problems",
    "rules_by_id",
    "validate_rules",
    "verify_lifecycle",
]
