"""The declared lifecycle rules, ``infra/lifecycle.json``: read and validated."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storepulse.config import REPO_ROOT
from storepulse.lifecycle.validation import LifecycleError, Rule, validate_rules

log = logging.getLogger(__name__)

LIFECYCLE_FILE = REPO_ROOT / "infra" / "lifecycle.json"
FILE_KEYS = frozenset({"description", "notes", "drift", "rules"})
DRIFT_MODES = ("keep", "remove")


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
