"""Local Lambda runtime: the job of Lambda's stream event source mappings (Kinesis and DynamoDB
Streams), for the embedded AWS.

moto stores functions and event source mappings but never runs handler code without Docker, so
this runtime does what the mapping does on AWS: it lists the enabled Kinesis and DynamoDB Streams
mappings, polls every shard and invokes each function's handler with the exact Lambda event
(``storepulse.stream.records.lambda_event``; a DynamoDB Streams record as Lambda sends it,
``sources``) and context, running what was deployed (below). Both sources share everything
below; only listing shards, opening iterators, the records' shape and the on-failure record's
batch info (``KinesisBatchInfo``, ``DDBStreamBatchInfo``) differ (``sources``).

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

What runs: the function's deployed package. Its zip is fetched from the S3 object the function
was created or updated from, kept only if its SHA-256 is the function's CodeSha256, and unpacked
into ``<state dir>/lambda-runtime/code/<sha256>``; a new CodeSha256 (a redeploy) is noticed
within a discovery interval and fetched. The handler runs in its own interpreter
(``python -I -S``, ``bootstrap``) whose import path holds only that package and the
runtime-provided boto3/botocore and their dependencies (``<state dir>/lambda-runtime/
runtime-provided``, links into this virtualenv): a module missing from the zip fails with
Lambda's ``Runtime.ImportModuleError``. A worker starts once (cold start) and serves invocations
warm, one per concurrent invocation; its environment is the function's variables (as strings),
Lambda's own (AWS_REGION, AWS_LAMBDA_FUNCTION_NAME, _HANDLER...), ``AWS_ENDPOINT_URL`` passed
through, and the credentials of its execution role (``sts.assume_role`` signed as the Lambda
service, which the role trusts;
renewed by replacing the worker 5 minutes before they expire). Handler errors, init errors,
crashes and timeouts (the function's Timeout) are function errors, with AWS's error types.
``handlers={"function-name": callable}`` replaces a function by an in-process stand-in (tests of
the mapping's semantics).

A caught-up shard is read again at Lambda's cadence for its mapping
(``MappingConfig.idle_poll_seconds``): about once a second for a shared-throughput Kinesis mapping,
4 times a second for a DynamoDB stream; a shard that just returned records is read again at once.
Through an enhanced fan-out consumer (the mapping's source is the consumer's ARN) AWS pushes
records within ~70 ms; moto has no SubscribeToShard, so the shard's worker waits on the embedded
AWS until a put lands after its iterator (``push``), then reads with GetRecords. A
``poll_interval`` given to the runtime replaces every mapping's cadence and the push (tests).

Not emulated: ParallelizationFactor (always 1), TumblingWindowInSeconds, FilterCriteria,
SubscribeToShard itself (see above), S3 on-failure destinations, layers, memory limits, and
functions created with an inline ZipFile (the embedded AWS keeps no copy the runtime can fetch;
the deploy uses S3).

CLI: ``python -m storepulse_local.lambda_runtime [--state-dir DIR] [--poll-interval S]`` runs
until SIGTERM/SIGINT, waits for mappings while none exists, and logs per-shard stats every 10 s.

Modules, each importing only those above it:

- ``common``: the runtime's logger, its error and the client factory type.
- ``sources``: Kinesis and DynamoDB Streams: shards, iterators, records, events.
- ``mappings``: a mapping and its function as the runtime uses them (``MappingConfig``,
  ``RetryPolicy``), and which mappings are polled.
- ``push``: enhanced fan-out's push, emulated (the wait on the embedded AWS).
- ``package_cache``: fetching a function's deployed code and unpacking it per CodeSha256.
- ``bootstrap``: the worker interpreter's entry point (standard library only).
- ``worker``: the worker processes (``Worker``) and a function's pool of them
  (``DeployedFunction``), the runtime's handler for a deployed function.
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
