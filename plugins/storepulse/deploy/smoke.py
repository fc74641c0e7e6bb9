"""The deployed stack's end-to-end smoke test: one smoke event (``storepulse.stream.smoke``) put
on the stream must be answered by the stream processor after it made every kind of call the
real-time path makes (archive, claims, counter and stock writes, a query, an alert), so a
permission the function's role lacks fails the deploy."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from storepulse.clock import Clock, system_clock
from storepulse.deploy.stack import DeployError

log = logging.getLogger(__name__)


class SmokeTestError(DeployError):
    """The marked event did not come through in time."""


@dataclass(frozen=True)
class SmokeResult:
    event_id: str
    latency_seconds: float
    polls: int


def run_smoke_test(
    kinesis: Any,
    dynamodb: Any,
    *,
    stream_name: str,
    facts_table: str,
    timeout: float = 120.0,
    poll_interval: float = 1.0,
    clock: Clock = system_clock,
) -> SmokeResult:
    """Put one smoke event (``storepulse.stream.smoke``) on the stream and wait until the stream
    processor has answered it in the facts table with every step. ``dynamodb``: a boto3 client."""
    from storepulse.producer import KinesisProducer
    from storepulse.stream.smoke import STEPS, smoke_event, smoke_key

    event = smoke_event(clock)
    key = smoke_key(event.event_id)
    started = time.monotonic()
    KinesisProducer(stream_name=stream_name, client=kinesis).send([event])
    polls = 0
    while True:
        polls += 1
        item = dynamodb.get_item(
            TableName=facts_table,
            Key={"pk": {"S": key.pk}, "sk": {"S": key.sk}},
            ConsistentRead=True,
        ).get("Item")
        latency = time.monotonic() - started
        if item:
            _check_steps(event.event_id, item, STEPS)
            log.info("smoke event %s processed in %.2f s", event.event_id, latency)
            return SmokeResult(event.event_id, round(latency, 3), polls)
        if latency >= timeout:
            raise SmokeTestError(
                f"smoke event {event.event_id} sent to {stream_name} was not processed within "
                f"{timeout:.0f} s (no {key.pk} item in {facts_table}). Is the stream processor "
                "running? Locally, the project's Lambda runtime (storepulse_local.lambda_runtime) "
                "must be started, as `make up` does. If it runs, it fails on the event: its log "
                "says why (AccessDenied: a permission its role lacks), and after its retries the "
                "batch goes to the dead-letter queue."
            )
        time.sleep(poll_interval)


def _check_steps(event_id: str, item: dict[str, Any], expected: tuple[str, ...]) -> None:
    """The answer lists what the processor did (``steps``, a DynamoDB list of strings)."""
    done = [v["S"] for v in item.get("steps", {}).get("L", [])]
    missing = [step for step in expected if step not in done]
    if missing:
        raise SmokeTestError(
            f"smoke event {event_id} was answered without {', '.join(missing)} (done: "
            f"{', '.join(done) or 'nothing'}): a handler older than this check answers without "
            "steps, and 'alerted' needs the function's STOREPULSE_ALERT_TOPIC_ARN"
        )
