"""Where the real-time path's latency goes: each event's time from PutRecords to its day total
visible, split into stages from the local runtime's batch timings (``BatchTiming``) and the
handler's own marks (``BatchReport.stages_ms``, in its "batch done" log line).

Per event: waiting behind the batch in flight (the shard is processed one invocation at a time),
waiting for the next poll of an idle shard, the GetRecords that read it, batch assembly, the
handler up to its claims and up to its counter writes (the total written), and the reader
noticing. Per invocation: what follows the counter writes (archive, alerts, checkpoint), which
the next batch waits behind.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.harness import percentile, print_table
from storepulse_local.lambda_runtime.shards import BatchTiming

FUNCTION_LOGGER = "storepulse_local.lambda_runtime.function"
HANDLER_STAGES = ("admitted", "claimed", "counted", "archived", "alerted")


@dataclass
class StageRecorder:
    """Collects the runtime's batch timings (``on_batch``) and the handlers' stage marks (from
    the function workers' log lines), keyed by request id."""

    batches: list[BatchTiming] = field(default_factory=list)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_batch(self, timing: BatchTiming) -> None:
        with self._lock:
            self.batches.append(timing)

    def attach(self) -> logging.Handler:
        recorder = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                recorder.take_log_line(record.getMessage())

        handler = _Handler(logging.INFO)
        logger = logging.getLogger(FUNCTION_LOGGER)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        return handler

    @staticmethod
    def detach(handler: logging.Handler) -> None:
        logging.getLogger(FUNCTION_LOGGER).removeHandler(handler)

    def take_log_line(self, line: str) -> None:
        if '"batch done"' not in line:
            return
        try:
            entry = json.loads(line)
        except ValueError:
            return
        marks = (entry.get("report") or {}).get("stages_ms")
        if entry.get("function_request_id") and marks:
            with self._lock:
                self.stages[entry["function_request_id"]] = marks


def event_stages(
    recorder: StageRecorder, puts: Mapping[str, float], visible: Mapping[str, float]
) -> dict[str, list[float]]:
    """Seconds per stage for every event (by sequence number) that became visible."""
    out: dict[str, list[float]] = {}
    previous_done = 0.0
    for batch in sorted(recorder.batches, key=lambda b: b.polled):
        marks = recorder.stages.get(batch.request_id or "", {})
        claimed, counted = marks.get("claimed", 0.0) / 1000, marks.get("counted", 0.0) / 1000
        for sequence in batch.sequence_numbers:
            if sequence not in puts or sequence not in visible:
                continue
            put = puts[sequence]
            free = max(put, previous_done)  # the shard worker is free for this event
            polled = max(batch.polled, free)
            parts = {
                "behind the batch in flight": free - put,
                "waiting for a poll": polled - free,
                "GetRecords": batch.read - polled,
                "batch to invocation": batch.invoked - batch.read,
                "handler: admit + claims": claimed,
                "handler: counter writes": counted - claimed,
                "reader notices": visible[sequence] - batch.invoked - counted,
            }
            for name, seconds in parts.items():
                out.setdefault(name, []).append(max(seconds, 0.0))
        previous_done = batch.checkpointed
    return out


def invocation_stages(recorder: StageRecorder) -> dict[str, list[float]]:
    """Seconds per invocation: the handler's marks, its whole duration, the checkpoint."""
    out: dict[str, list[float]] = {}
    for batch in recorder.batches:
        marks = recorder.stages.get(batch.request_id or "", {})
        rows = {
            f"handler {stage}": marks[stage] / 1000 for stage in HANDLER_STAGES if stage in marks
        }
        rows["invocation (handler + worker IPC)"] = batch.returned - batch.invoked
        rows["checkpoint"] = batch.checkpointed - batch.returned
        rows["records per batch"] = float(len(batch.sequence_numbers))
        for name, value in rows.items():
            out.setdefault(name, []).append(value)
    return out


def _summary(values: Sequence[float], scale: float) -> list[str]:
    return [f"{percentile(list(values), q) * scale:.0f}" for q in (0.5, 0.95)]


def print_breakdown(
    per_event: dict[str, list[float]], per_invocation: dict[str, list[float]]
) -> None:
    print("per event (ms; the p50s need not add up to the total's p50):")
    print_table(
        ["stage", "p50", "p95"],
        [[name, *_summary(values, 1000)] for name, values in per_event.items()],
    )
    print("per invocation (ms, records):")
    print_table(
        ["stage", "p50", "p95"],
        [
            [name, *_summary(values, 1 if name == "records per batch" else 1000)]
            for name, values in per_invocation.items()
        ],
    )


def summarise(
    recorder: StageRecorder, puts: Mapping[str, float], visible: Mapping[str, float]
) -> dict[str, Any]:
    per_event = event_stages(recorder, puts, visible)
    per_invocation = invocation_stages(recorder)
    return {
        "per_event_p50_ms": {k: percentile(v, 0.5) * 1000 for k, v in per_event.items() if v},
        "per_invocation_p50": {k: percentile(v, 0.5) for k, v in per_invocation.items() if v},
        "_per_event": per_event,
        "_per_invocation": per_invocation,
    }
