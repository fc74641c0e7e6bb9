"""The SNS alert of a failed audit."""

from __future__ import annotations

import json
from typing import Any

from storepulse.clock import Clock, system_clock
from storepulse.export.quality.run import AuditResult


def alert_message(
    result: AuditResult, *, run_id: str, report: str, clock: Clock = system_clock
) -> dict[str, Any]:
    """The SNS alert of a failed audit, in the shape of the real-time path's alerts: a JSON
    message, ``type`` and ``severity`` attributes. Returns ``subject``, ``message`` and
    ``attributes`` (plain strings, as ``SnsHook.publish_to_target`` takes them)."""
    title = f"Nightly export of {result.day.isoformat()} failed its audit"
    message = {
        "type": "data_quality",
        "severity": "critical",
        "title": title,
        "day": result.day.isoformat(),
        "run_id": run_id,
        "sent_at": clock().isoformat(),
        "details": {
            "evaluated": result.evaluated,
            "failed": [str(f) for f in result.failures],
            "report": report,
            "published": "nothing: the lake keeps its previous partitions",
        },
    }
    return {
        "subject": title[:100],
        "message": json.dumps(message),
        "attributes": {"type": "data_quality", "severity": "critical"},
    }
