"""Local Lambda runtime: the job of Lambda's Kinesis event source mapping, for the embedded AWS.

moto stores functions and event source mappings but never runs handler code without Docker, so
this runtime does what the mapping does on AWS: it lists the enabled Kinesis mappings, loads each
function's handler in-process, polls every shard and invokes the handler with the exact Lambda
event (``storepulse.stream.records.lambda_event``) and a ``LambdaContext``.

Semantics follow AWS's documentation for Kinesis event source mappings:

- one poller per shard, shards in parallel, records of a shard strictly in order; a child shard
  (split or merge) starts only once its parents are closed and fully processed;
- a batch holds up to BatchSize records and 6 MB of payload (the invocation limit), waiting up to
  MaximumBatchingWindowInSeconds to fill (0: invoke as soon as records exist);
- with ReportBatchItemFailures the shard resumes from the lowest reported sequence number (the rest
  of the batch is re-sent); an unknown, empty or null itemIdentifier fails the whole batch;
- a failed batch is retried, bisected first with BisectBatchOnFunctionError (a bisect is not a
  retry); past MaximumRetryAttempts or MaximumRecordAgeInSeconds its metadata goes to the OnFailure
  destination (SQS or SNS) and the shard moves on. Beyond AWS's metadata the record carries a
  ``replay`` section: the reason and the records themselves (``failures.on_failure_record``);
- the starting position applies while a shard has no checkpoint. LATEST is pinned, on first sight
  of the mapping, to that moment (an AT_TIMESTAMP iterator), so that a restart or a child shard
  never skips records (moto's LastModified is second-truncated and timezone-shifted: not usable).

Checkpoints (last processed sequence number per mapping and shard) are replaced atomically in
``<state dir>/lambda-runtime/checkpoints.json`` after every batch, so a restart resumes where the
last run stopped: nothing lost, nothing re-processed. Only a crash mid-batch re-delivers that
batch, exactly as Lambda would; the stream processor's exactly-once writes make that harmless.

Handlers: ``handlers={"function-name": callable}``, or else the file
``lambdas/<folder>/<module>.py`` for the function's Handler ``<module>.<function>``, where
``<folder>`` is the function's tag ``storepulse:lambda-folder`` or, without the tag, its name
without the ``storepulse-<env>-`` prefix, dashes as underscores (``storepulse-dev-stream-processor``
-> ``stream_processor``). The function's Environment variables are put in ``os.environ`` before its
handler is loaded and stay there (handlers cache clients built from them).

Not emulated: ParallelizationFactor (always 1), TumblingWindowInSeconds, FilterCriteria, enhanced
fan-out consumers, S3 on-failure destinations, and stopping a handler that outlives its Timeout
(logged as a warning; its result is kept).

CLI: ``python -m storepulse_local.lambda_runtime [--state-dir DIR] [--poll-interval 0.2]`` runs
until SIGTERM/SIGINT, waits for mappings while none exists, and logs per-shard stats every 10 s.

Modules, each importing only those above it:

- ``common``: the runtime's logger, its error and the client factory type.
- ``mappings``: a mapping and its function as the runtime uses them (``MappingConfig``,
  ``RetryPolicy``), which mappings are polled, and loading a function's handler.
- ``batching``: how many buffered records form a batch, and when it is ready.
- ``invocation``: calling a handler and reading its response (``Outcome``).
- ``failures``: retries and bisection of a failed batch (``BatchDriver``), on-failure records
  and their sending to SQS or SNS.
- ``checkpoints``: checkpoints per mapping and shard, the state directory's lock, where a shard
  starts reading, and which shards may start.
- ``shards``: one worker per shard (``ShardWorker``) and one runner per mapping
  (``MappingRunner``).
- ``runtime``: ``LocalLambdaRuntime``, which discovers mappings and runs them.
- ``__main__``: the CLI.
"""

from storepulse_local.lambda_runtime.common import LambdaRuntimeError
from storepulse_local.lambda_runtime.runtime import LocalLambdaRuntime

__all__ = ["LambdaRuntimeError", "LocalLambdaRuntime"]
