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
WARNING = "warning"
# cfn-lint's Lambda runtime lifecycle rules compare AWS's published deprecation dates with the
# day the linter runs: they say when the calendar reaches the template, not that the template is
# wrong. They are reported as warnings (the deploy log shows them, with the successor runtime),
# so the same template lints the same on any day; AWS itself refuses a blocked runtime when the
# change set runs (the embedded AWS does not: see infra/local/embedded_aws_gaps.json).
CALENDAR_RULES = frozenset({"E2531", "E2533", "W2531"})


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

    @property
    def calendar(self) -> bool:
        """A runtime lifecycle date reached, not a fault of the template."""
        return self.rule_id in CALENDAR_RULES

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
    level = str(getattr(match.rule, "severity", "") or _level_of(match.rule.id)).lower()
    return LintFinding(
        rule_id=match.rule.id,
        level=WARNING if match.rule.id in CALENDAR_RULES else level,
        message=str(match.message),
        path=str(match.filename),
        line=int(match.linenumber),
        column=int(match.columnnumber),
    )


def _level_of(rule_id: str) -> str:
    return {"E": ERROR, "W": WARNING}.get(rule_id[:1], "informational")
