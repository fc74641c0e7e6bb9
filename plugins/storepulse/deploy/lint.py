"""cfn-lint through its Python API: the deploy DAG's first step and the template's unit test.

Linting before the change set catches invalid property values, unknown types and broken
references in seconds, without creating anything; CloudFormation would only report them
resource by resource, after a rollback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_REGIONS = ("us-east-1",)
ERROR = "error"


@dataclass(frozen=True)
class LintFinding:
    """One cfn-lint match. ``level``: error, warning or informational."""

    rule_id: str
    level: str
    message: str
    path: str
    line: int
    column: int

    @property
    def is_error(self) -> bool:
        return self.level == ERROR

    def __str__(self) -> str:
        return f"{self.rule_id} {self.message} ({Path(self.path).name}:{self.line}:{self.column})"


class TemplateLintError(ValueError):
    """cfn-lint found errors; ``findings`` holds every match (errors first)."""

    def __init__(self, template: Path, findings: Sequence[LintFinding]) -> None:
        errors = [f for f in findings if f.is_error]
        super().__init__(
            f"cfn-lint: {len(errors)} error(s) in {template}:\n"
            + "\n".join(f"  {f}" for f in errors)
        )
        self.findings = list(findings)


def lint_template(template: Path, *, regions: Sequence[str] = DEFAULT_REGIONS) -> list[LintFinding]:
    """Every cfn-lint finding for ``template`` in ``regions``, errors first."""
    from cfnlint.api import ManualArgs, lint_file  # ~1 s to import: only when linting

    matches = lint_file(Path(template), config=ManualArgs(regions=list(regions)))
    findings = [_finding(m) for m in matches]
    return sorted(findings, key=lambda f: (not f.is_error, f.line, f.column, f.rule_id))


def check_template(
    template: Path, *, regions: Sequence[str] = DEFAULT_REGIONS
) -> list[LintFinding]:
    """Lint ``template``; raise :class:`TemplateLintError` on any error, else return the
    findings (warnings and informational ones do not block a deploy)."""
    findings = lint_template(template, regions=regions)
    if any(f.is_error for f in findings):
        raise TemplateLintError(template, findings)
    return findings


def _finding(match: Any) -> LintFinding:
    return LintFinding(
        rule_id=match.rule.id,
        level=str(getattr(match.rule, "severity", "") or _level_of(match.rule.id)).lower(),
        message=str(match.message),
        path=str(match.filename),
        line=int(match.linenumber),
        column=int(match.columnnumber),
    )


def _level_of(rule_id: str) -> str:
    return {"E": ERROR, "W": "warning"}.get(rule_id[:1], "informational")
