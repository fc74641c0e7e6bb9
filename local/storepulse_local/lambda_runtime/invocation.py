"""Invoking a handler and reading its response as Lambda does."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from storepulse.stream.records import StreamRecord
from storepulse_local.lambda_context import LambdaContext
from storepulse_local.lambda_runtime.common import FunctionError, log
from storepulse_local.lambda_runtime.mappings import Handler


class Result(StrEnum):
    SUCCESS = "success"
    PARTIAL = "partial"  # ReportBatchItemFailures: resume from resume_index
    FAILED = "failed"  # the handler raised, or its response fails the whole batch


@dataclass(frozen=True)
class Outcome:
    result: Result
    resume_index: int = 0
    function_error: bool = False  # the handler raised (AWS: functionError "Unhandled")
    error: str | None = None
    request_id: str | None = None

    def describe(self, records: Sequence[StreamRecord]) -> str:
        if self.result is Result.PARTIAL:
            return f"partial: resume at {records[self.resume_index].sequence_number}"
        return self.result.value if self.error is None else f"{self.result.value}: {self.error}"


SUCCESS: Final = Outcome(Result.SUCCESS)


def _failed(error: str, function_error: bool = False) -> Outcome:
    return Outcome(Result.FAILED, function_error=function_error, error=error)


def interpret_response(
    response: Any, sequence_numbers: Sequence[str], report_item_failures: bool
) -> Outcome:
    """Lambda's reading of a handler's response (AWS "Success and failure conditions")."""
    if not report_item_failures or response is None:
        return SUCCESS  # without ReportBatchItemFailures the response is ignored
    if not isinstance(response, dict):
        return _failed(f"response is not an object: {type(response).__name__}")
    failures = response.get("batchItemFailures")
    if failures is None or failures == []:
        return SUCCESS
    if not isinstance(failures, list):
        return _failed("batchItemFailures is not a list")
    positions = {seq: i for i, seq in enumerate(sequence_numbers)}
    indexes = []
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in positions:
            return _failed(f"invalid itemIdentifier {identifier!r}")
        indexes.append(positions[identifier])
    return Outcome(Result.PARTIAL, resume_index=min(indexes))


def call_handler(
    handler: Handler,
    event: dict[str, Any],
    context: LambdaContext,
    sequence_numbers: Sequence[str],
    report_item_failures: bool,
) -> Outcome:
    """Invoke the handler (a deployed function's worker, or a callable in this process); the
    response goes through JSON as it would between Lambda and the mapping, so an unserialisable
    response fails like AWS's Runtime.MarshalError."""
    try:
        response = handler(event, context)
    except FunctionError as exc:  # the worker logged the traceback already
        log.warning("%s failed: %s: %s", context.function_name, exc.error_type, exc)
        outcome = _failed(f"{exc.error_type}: {exc}", function_error=True)
    except Exception as exc:
        log.warning("%s raised", context.function_name, exc_info=True)
        outcome = _failed(f"{type(exc).__name__}: {exc}", function_error=True)
    else:
        outcome = _interpret_json(response, sequence_numbers, report_item_failures)
    return dataclasses.replace(outcome, request_id=context.aws_request_id)


def _interpret_json(
    response: Any, sequence_numbers: Sequence[str], report_item_failures: bool
) -> Outcome:
    try:
        response = json.loads(json.dumps(response))
    except (TypeError, ValueError) as exc:
        return _failed(f"Runtime.MarshalError: {exc}", function_error=True)
    return interpret_response(response, sequence_numbers, report_item_failures)
