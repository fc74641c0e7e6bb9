"""The audit of a staged day: Great Expectations 1.x suites, as code, per curated data set.

Per data set (``DATASETS``), two suites:

``<dataset>.partition`` (one row describing the staged partition): **schema**, every column has
the exact Arrow type of the versioned schema (``decimal128(18, 2)``, ``timestamp[us, tz=UTC]``...;
pandas cannot spell decimal types for GE's type expectations, so the types are checked as
values of this row), columns in the schema's order, the files' ``storepulse.schema_version``;
and **every selected item became rows** (items the writer refused, see ``publish.stage_table``).

``<dataset>`` (the staged rows, read from the staged Parquet into pandas with Arrow dtypes, so
money stays ``Decimal``): **non-null** for every required column (keys included), a **unique key**
(``order_id`` for orders, ``(order_id, line_number)`` for lines...), **value ranges** (no negative
quantity, price, amount or counter; a sale line has quantity >= 1), **known values** (stores and
currencies from the settings table, sales channels from the event schema), every row in the
day's **partition**, and the **row count against the source**: what the items selected for the
day call for (one row per order, per order line...; counted while staging).

``reconciliation`` (per store): the day's order revenue, the sum of ``orders.total``, equals the
day's revenue metric the real-time path wrote (``daily_store_metrics.revenue``); a store missing
on one side counts as 0 there.

Inventory ``on_hand`` has no lower bound on purpose: a sale of a sku that was never counted takes
it below zero, which is information (a stock take is due), not corrupt data.

Everything runs on an ephemeral GE context (nothing on disk, nothing online). Results go to the
lake: ``_quality/<dataset>/dt=<day>/result.json`` and ``index.html`` (a compact table rendered
here: GE's Data Docs need a configured site), and a day overview in
``_quality/_summary/dt=<day>/``. great_expectations and pandas are imported when an audit runs.

Modules: ``reference`` (the known values, from the settings), ``suites`` (expectations and
frames), ``run`` (running them, the outcome), ``report`` (results and HTML in the lake),
``alert`` (the SNS alert) and ``audit`` (the nightly export's audit task, end to end).
"""

from storepulse.export.quality.alert import alert_message
from storepulse.export.quality.audit import AuditFailedError, audit_staged
from storepulse.export.quality.reference import Reference
from storepulse.export.quality.report import (
    QUALITY,
    render_html,
    render_summary_html,
    summary_uri,
    write_results,
)
from storepulse.export.quality.run import (
    RECONCILIATION,
    AuditResult,
    Failure,
    SuiteOutcome,
    audit_day,
)
from storepulse.export.quality.suites import (
    CHANNELS,
    LOWER_BOUNDS,
    data_expectations,
    partition_expectations,
    partition_frame,
    read_staged,
    reconciliation_expectations,
    reconciliation_frame,
)

__all__ = [
    "CHANNELS",
    "LOWER_BOUNDS",
    "QUALITY",
    "RECONCILIATION",
    "AuditFailedError",
    "AuditResult",
    "Failure",
    "Reference",
    "SuiteOutcome",
    "alert_message",
    "audit_day",
    "audit_staged",
    "data_expectations",
    "partition_expectations",
    "partition_frame",
    "read_staged",
    "reconciliation_expectations",
    "reconciliation_frame",
    "render_html",
    "render_summary_html",
    "summary_uri",
    "write_results",
]
