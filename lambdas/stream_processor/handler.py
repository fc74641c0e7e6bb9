"""Lambda entry point for the Kinesis event source mapping (ReportBatchItemFailures enabled).

In: the Kinesis event envelope (base64 data, partition key, sequence number, arrival time).
Out: ``{"batchItemFailures": [{"itemIdentifier": <sequence number>}]}``: empty when the whole
batch is done; otherwise the record Lambda must resume from. Malformed, implausible (outside the
plausibility window) and conflicting records are quarantined with their reason, not failed:
whatever one record holds, it never blocks the shard. An AWS error raises, so the event source
mapping retries (and bisects) the batch; the exactly-once writes make that safe.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from storepulse.aws import DEFAULT_CONFIG
from storepulse.clock import Clock, system_clock
from storepulse.stream.processor import StreamProcessor, StreamResources
from storepulse.stream.records import records_from_event

logger = Logger(service="stream-processor")
metrics = Metrics(namespace="StorePulse", service="stream-processor")

CLOCK: Clock = system_clock
"""The time alerts and smoke answers are stamped with. Lambda's entry point takes no arguments,
so this is where a test injects its frozen clock (then clears ``processor``'s cache)."""


@cache
def processor() -> StreamProcessor:
    """Built once per container: clients, table handles and the settings cache are reused."""
    return StreamProcessor(
        dynamodb=boto3.resource("dynamodb", config=DEFAULT_CONFIG),
        s3=boto3.client("s3", config=DEFAULT_CONFIG),
        sns=boto3.client("sns", config=DEFAULT_CONFIG),
        resources=StreamResources.from_environment(),
        clock=CLOCK,
    )


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    report = processor().process(records_from_event(event))
    for name in (
        "records",
        "valid",
        "quarantined",
        "duplicates",
        "conflicts",
        "items_written",
        "items_replayed",
        "alerts_sent",
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=getattr(report, name))
    logger.info("batch done", extra={"report": report.__dict__})
    return {
        "batchItemFailures": [{"itemIdentifier": seq} for seq in report.failed_sequence_numbers]
    }
