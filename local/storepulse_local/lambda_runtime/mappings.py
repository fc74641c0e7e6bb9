"""Kinesis event source mappings as the runtime uses them, and which are polled."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from storepulse_local.lambda_runtime.sources import (
    PolledRecord,
    Source,
    source_of,
    stream_name,
)

Handler = Callable[[dict[str, Any], Any], Any]

# How often Lambda reads a caught-up shard (AWS's documentation): a Kinesis shared-throughput
# mapping about once a second, a DynamoDB stream 4 times a second. An enhanced fan-out consumer
# has records pushed within ~70 ms (SubscribeToShard, absent from moto:
# infra/local/embedded_aws_gaps.json): the runtime waits on the embedded AWS for a put on the
# shard (``push``) and reads an idle shard anyway every RECORD_WAIT_SECONDS; against an endpoint
# without that wait it reads an idle shard every ENHANCED_FAN_OUT_POLL_SECONDS. A caught-up
# DynamoDB stream is waited on the same way (up to RECORD_WAIT_SECONDS a wait), then read at the
# poll's ticks.
SHARED_THROUGHPUT_POLL_SECONDS: Final = 1.0
RECORD_WAIT_SECONDS: Final = 1.0
ENHANCED_FAN_OUT_POLL_SECONDS: Final = 0.07
DYNAMODB_STREAMS_POLL_SECONDS: Final = 0.25

POLLED_STATES: Final = frozenset({"Enabled", "Enabling"})
TRANSITIONAL_STATES: Final = frozenset({"Creating", "Updating"})  # keep whatever we were doing


def is_kinesis_stream(arn: str) -> bool:
    parts = arn.split(":", 5)
    return len(parts) == 6 and parts[2] == "kinesis" and parts[5].startswith("stream/")


def is_polled_source(arn: str) -> bool:
    """A Kinesis stream or a DynamoDB table's stream: the sources this runtime polls."""
    return source_of(arn) is not None


def wants_polling(state: str | None, running: bool) -> bool:
    """Poll Enabled/Enabling mappings; in a transition (Creating, Updating) keep the current
    decision; anything else (Disabled, Disabling, Deleting) is not polled."""
    if state in POLLED_STATES:
        return True
    return running and state in TRANSITIONAL_STATES


def _value(source: Mapping[str, Any], key: str, default: Any) -> Any:
    """``source[key]`` unless missing or null (0 and False are real values here)."""
    value = source.get(key)
    return default if value is None else value


@dataclass(frozen=True)
class RetryPolicy:
    """What to do with a failed batch; -1 means infinite, as in the mapping's API."""

    max_retry_attempts: int = -1
    max_record_age_seconds: int = -1
    bisect_on_error: bool = False
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0

    def exhausted(self, retries: int) -> bool:
        return 0 <= self.max_retry_attempts <= retries

    def expired_prefix(self, records: Sequence[PolledRecord], now: float) -> int:
        """How many leading records are older than the maximum age (arrival order = age order)."""
        if self.max_record_age_seconds < 0:
            return 0
        limit = now - self.max_record_age_seconds
        return next(
            (i for i, r in enumerate(records) if r.arrived_at.timestamp() >= limit), len(records)
        )

    def backoff(self, retry: int) -> float:
        return min(self.backoff_seconds * 2 ** (retry - 1), self.max_backoff_seconds)


@dataclass(frozen=True)
class MappingConfig:
    """One stream event source mapping (Kinesis or DynamoDB Streams) and its function."""

    uuid: str
    stream_arn: str
    function_name: str
    function_arn: str
    handler: str
    role_arn: str
    environment: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    timeout: int = 3
    memory_size: int = 128
    code_sha256: str = ""
    version: str = "$LATEST"
    starting_position: str = "TRIM_HORIZON"
    starting_timestamp: datetime | None = None
    batch_size: int = 100
    batching_window: float = 0.0
    report_item_failures: bool = False
    policy: RetryPolicy = RetryPolicy()
    on_failure: str | None = None
    ignored: tuple[str, ...] = ()  # settings present on the mapping that are not emulated

    @property
    def region(self) -> str:
        return self.stream_arn.split(":")[3]

    @property
    def stream_name(self) -> str:
        """The Kinesis stream's name, or the DynamoDB table's."""
        return stream_name(self.stream_arn)

    @property
    def source(self) -> Source:
        source = source_of(self.stream_arn)
        assert source is not None, self.stream_arn  # only polled mappings get here
        return source

    @property
    def enhanced_fan_out(self) -> bool:
        """The mapping reads through a stream consumer (its ARN is the consumer's)."""
        return is_kinesis_stream(self.stream_arn) and "/consumer/" in self.stream_arn

    @property
    def idle_poll_seconds(self) -> float:
        """How long Lambda leaves a caught-up shard of this mapping before reading it again
        (through a consumer: the longest wait for a push)."""
        if not is_kinesis_stream(self.stream_arn):
            return DYNAMODB_STREAMS_POLL_SECONDS
        if self.enhanced_fan_out:
            return RECORD_WAIT_SECONDS
        return SHARED_THROUGHPUT_POLL_SECONDS

    @property
    def account_id(self) -> str:
        return self.role_arn.split(":")[4] or self.stream_arn.split(":")[4]

    @classmethod
    def from_aws(
        cls, mapping: Mapping[str, Any], function: Mapping[str, Any], backoff: float = 0.5
    ) -> MappingConfig:
        """From ``list_event_source_mappings`` and ``get_function`` answers."""
        conf = function["Configuration"]
        return cls(
            uuid=mapping["UUID"],
            stream_arn=mapping["EventSourceArn"],
            function_name=conf["FunctionName"],
            function_arn=conf["FunctionArn"],
            handler=conf["Handler"],
            role_arn=conf["Role"],
            # Lambda's variables are strings; moto's CloudFormation passes a Number parameter
            # through as a number (infra/local/embedded_aws_gaps.json).
            environment={
                name: str(value)
                for name, value in (conf.get("Environment", {}).get("Variables") or {}).items()
            },
            tags=dict(function.get("Tags") or {}),
            timeout=int(_value(conf, "Timeout", 3)),
            memory_size=int(_value(conf, "MemorySize", 128)),
            code_sha256=conf.get("CodeSha256") or "",
            version=_value(conf, "Version", "$LATEST"),
            starting_position=_value(mapping, "StartingPosition", "TRIM_HORIZON"),
            starting_timestamp=mapping.get("StartingPositionTimestamp"),
            batch_size=int(_value(mapping, "BatchSize", 100)),
            batching_window=float(_value(mapping, "MaximumBatchingWindowInSeconds", 0)),
            report_item_failures="ReportBatchItemFailures"
            in (mapping.get("FunctionResponseTypes") or []),
            policy=RetryPolicy(
                max_retry_attempts=int(_value(mapping, "MaximumRetryAttempts", -1)),
                max_record_age_seconds=int(_value(mapping, "MaximumRecordAgeInSeconds", -1)),
                bisect_on_error=bool(_value(mapping, "BisectBatchOnFunctionError", False)),
                backoff_seconds=backoff,
            ),
            on_failure=(mapping.get("DestinationConfig") or {})
            .get("OnFailure", {})
            .get("Destination")
            or None,
            ignored=_ignored_settings(mapping),
        )


def _ignored_settings(mapping: Mapping[str, Any]) -> tuple[str, ...]:
    ignored = [k for k in ("FilterCriteria", "TumblingWindowInSeconds") if mapping.get(k)]
    if _value(mapping, "ParallelizationFactor", 1) != 1:
        ignored.append("ParallelizationFactor")
    return tuple(ignored)
