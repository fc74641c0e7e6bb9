"""The nightly export's audit, end to end: read the staged files, run every suite, write the
results to the lake, and on a failure send the alert and raise (nothing is published)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

from storepulse.clock import Clock, system_clock
from storepulse.export.quality.alert import alert_message
from storepulse.export.quality.live import LiveRevenue
from storepulse.export.quality.reference import Reference
from storepulse.export.quality.report import summary_uri, write_results
from storepulse.export.quality.run import AuditResult, audit_day
from storepulse.export.quality.suites import read_staged

if TYPE_CHECKING:
    from storepulse.export.staging import StagedDataset

log = logging.getLogger(__name__)


class AuditFailedError(RuntimeError):
    """The day failed its audit (``result``); the message is its summary."""

    def __init__(self, result: AuditResult) -> None:
        super().__init__(result.summary())
        self.result = result


def audit_staged(
    fs: Any,
    root: str,
    bucket: str,
    day: date,
    reference: Reference,
    staged: Mapping[str, StagedDataset],
    *,
    context: Mapping[str, Any],
    send_alert: Callable[[dict[str, Any]], None],
    live: LiveRevenue | None = None,
    clock: Clock = system_clock,
) -> AuditResult:
    """Audit the staged data sets of ``day``; results go under ``root`` of the pyarrow
    filesystem ``fs`` (the lake ``bucket``, which the alert names). ``context`` (``run_id``,
    ``strategy``...) goes into every result document; ``send_alert`` gets ``alert_message``'s
    dict when the audit fails; ``live`` reads the tables now, for a day that moved during the
    export (``storepulse.export.quality.live``)."""
    tables = {name: read_staged(fs, report.files) for name, report in staged.items()}
    result = audit_day(tables, day, reference, staged, live)
    written = write_results(fs, root, result, context=context, staged=staged)
    log.info(
        "%d rows in %d data sets; %d suites, %d expectations evaluated, %d failed; "
        "%d result files under s3://%s/_quality/",
        sum(t.num_rows for t in tables.values()),
        len(tables),
        len(result.suites),
        result.evaluated,
        len(result.failures),
        len(written),
        bucket,
    )
    if not result.success:
        report = summary_uri(bucket, day)
        send_alert(alert_message(result, run_id=context["run_id"], report=report, clock=clock))
        raise AuditFailedError(result)
    return result
