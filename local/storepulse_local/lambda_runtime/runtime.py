"""``LocalLambdaRuntime``: discovers the stream event source mappings and runs them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from storepulse import aws
from storepulse.config import settings
from storepulse_local.iam import LAMBDA_SERVICE
from storepulse_local.lambda_runtime.checkpoints import (
    CHECKPOINT_FILE,
    CheckpointStore,
    StateDirLock,
)
from storepulse_local.lambda_runtime.common import ClientFactory, LambdaRuntimeError, log
from storepulse_local.lambda_runtime.failures import OnFailureSender
from storepulse_local.lambda_runtime.mappings import (
    Handler,
    MappingConfig,
    is_polled_source,
    wants_polling,
)
from storepulse_local.lambda_runtime.package_cache import PackageCache, deployed_code
from storepulse_local.lambda_runtime.shards import BatchTiming, MappingRunner, ShardStats
from storepulse_local.lambda_runtime.worker import (
    CREDENTIALS_MARGIN,
    CREDENTIALS_SECONDS,
    DeployedFunction,
    FunctionSpec,
    link_runtime_provided,
)

WAITING_LOG_SECONDS: Final = 30.0
# One connection per shard poller plus the coordinator; botocore's default pool holds 10.
CLIENT_CONFIG: Final = aws.DEFAULT_CONFIG.merge(Config(max_pool_connections=64))


def default_client(service: str) -> Any:
    """A client on the embedded AWS: ``AWS_ENDPOINT_URL``, else the embedded AWS's own port."""
    current = settings()
    endpoint = current.aws_endpoint_url or (
        current.embedded_aws_url if current.embedded_aws else None
    )
    return aws.client(service, config=CLIENT_CONFIG, endpoint_url=endpoint)


class LocalLambdaRuntime:
    """Runs every enabled Kinesis event source mapping of the embedded AWS in this process.

    ``start()`` polls in background threads; ``stop()`` lets each shard finish its invocation in
    flight (checkpoints are saved after every batch); ``run_until_idle()`` waits until every
    shard is caught up. Usable as a context manager.
    """

    def __init__(
        self,
        *,
        handlers: Mapping[str, Handler] | None = None,
        state_dir: Path | None = None,
        poll_interval: float | None = None,
        discovery_interval: float = 5.0,
        retry_backoff: float = 0.5,
        client: ClientFactory = default_client,
        credentials_seconds: int = CREDENTIALS_SECONDS,
        on_batch: Callable[[BatchTiming], None] | None = None,
    ) -> None:
        self.state_dir = state_dir or settings().state_dir / "lambda-runtime"
        self.poll_interval = poll_interval  # None: Lambda's cadence per mapping (idle_poll_seconds)
        self.discovery_interval = discovery_interval
        self.retry_backoff = retry_backoff
        self._handlers = dict(handlers or {})  # in-process stand-ins, by function name
        self._credentials_seconds = credentials_seconds
        self._on_batch = on_batch  # told of every committed batch's timing (benchmarks)
        self._packages = PackageCache(self.state_dir / "code")
        self._runtime_dir = self.state_dir / "runtime-provided"
        self._deployed: dict[str, DeployedFunction] = {}
        self._checked: dict[str, float] = {}  # mapping -> when its function was last read
        self._client_factory = client
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._sender = OnFailureSender(self._client)
        self._runners: dict[str, MappingRunner] = {}
        self._discover_lock = threading.RLock()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._lock = StateDirLock(self.state_dir)
        self._store: CheckpointStore | None = None
        self._thread: threading.Thread | None = None
        self._last_waiting_log = 0.0

    def __enter__(self) -> LocalLambdaRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _client(self, service: str) -> Any:
        with self._clients_lock:  # creating boto3 clients is not thread-safe; using them is
            if service not in self._clients:
                self._clients[service] = self._client_factory(service)
            return self._clients[service]

    # lifecycle

    def start(self) -> LocalLambdaRuntime:
        self._lock.acquire()
        try:
            self._store = CheckpointStore(self.state_dir / CHECKPOINT_FILE)
        except LambdaRuntimeError:
            self._lock.release()
            raise
        link_runtime_provided(self._runtime_dir)
        self._thread = threading.Thread(target=self._coordinate, name="lambda-runtime", daemon=True)
        self._thread.start()
        log.info("Lambda runtime started (state in %s)", self.state_dir)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Graceful: every shard ends its invocation in flight; checkpoints are already saved."""
        self._stopping.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        with self._discover_lock:
            for runner in self._runners.values():
                runner.signal_stop()
            for runner in self._runners.values():
                runner.join(timeout)
            for function in self._deployed.values():
                function.close()
        self._lock.release()
        log.info("Lambda runtime stopped")

    def _coordinate(self) -> None:
        while not self._stopping.is_set():
            try:
                self.discover()
            except (BotoCoreError, ClientError) as exc:
                log.warning("cannot list event source mappings: %s", exc)
            except Exception:  # the coordinator must outlive anything; the next pass retries
                log.exception("discovery pass failed")
            self._wake.wait(self.discovery_interval)
            self._wake.clear()

    # discovery

    def discover(self) -> int:
        """One pass: start and stop mappings as their state says, start shards that became
        ready. Returns how many mappings and shards were started or stopped."""
        with self._discover_lock:
            if self._stopping.is_set():
                return 0
            wanted = self._wanted_mappings()
            changes = self._stop_unwanted(wanted)
            for mapping_uuid, mapping in wanted.items():
                changes += self._refresh_mapping(mapping_uuid, mapping)
            self._log_waiting()
            return changes

    def _wanted_mappings(self) -> dict[str, dict[str, Any]]:
        pages = self._client("lambda").get_paginator("list_event_source_mappings").paginate()
        return {
            m["UUID"]: m
            for page in pages
            for m in page["EventSourceMappings"]
            if is_polled_source(m.get("EventSourceArn", ""))
            and wants_polling(m.get("State"), m["UUID"] in self._runners)
        }

    def _stop_unwanted(self, wanted: Mapping[str, Any]) -> int:
        gone = [u for u in self._runners if u not in wanted]
        for mapping_uuid in gone:
            runner = self._runners.pop(mapping_uuid)
            runner.signal_stop()
            runner.join()
            log.info("mapping %s disabled or deleted: stopped polling", mapping_uuid)
        return len(gone)

    def _refresh_mapping(self, mapping_uuid: str, mapping: dict[str, Any]) -> int:
        try:
            started = 0
            if mapping_uuid not in self._runners:
                self._runners[mapping_uuid] = self._start_mapping(mapping)
                started = 1
            else:
                self._check_deployment(self._runners[mapping_uuid], mapping)
            return started + self._runners[mapping_uuid].refresh_shards()
        except (BotoCoreError, ClientError, LambdaRuntimeError) as exc:
            log.error("mapping %s (%s): %s", mapping_uuid, mapping.get("EventSourceArn"), exc)
            return 0

    def _start_mapping(self, mapping: dict[str, Any]) -> MappingRunner:
        function = self._client("lambda").get_function(FunctionName=mapping["FunctionArn"])
        config = MappingConfig.from_aws(mapping, function, backoff=self.retry_backoff)
        handler = self._handler_for(config, function)
        assert self._store is not None
        runner = MappingRunner(
            config,
            handler,
            client=self._client,
            store=self._store,
            sender=self._sender,
            poll_interval=self.poll_interval,
            on_shard_finished=self._wake.set,
            on_batch=self._on_batch,
        )
        log.info(
            "polling %s for %s (mapping %s, batch size %d, window %.1f s, %s: idle shard read "
            "every %.2f s)",
            config.stream_name,
            config.function_name,
            config.uuid,
            config.batch_size,
            config.batching_window,
            "enhanced fan-out" if config.enhanced_fan_out else "shared throughput",
            runner.poll_interval,
        )
        if config.ignored:
            log.warning(
                "mapping %s: not emulated, ignored: %s", config.uuid, ", ".join(config.ignored)
            )
        return runner

    def _check_deployment(self, runner: MappingRunner, mapping: dict[str, Any]) -> None:
        """A redeploy (new CodeSha256) or a new configuration reaches the next invocations, as
        on Lambda. Read at most once per discovery interval per mapping."""
        name, mapping_uuid = runner.config.function_name, runner.config.uuid
        if name in self._handlers or name not in self._deployed:
            return
        now = time.monotonic()
        if now - self._checked.get(mapping_uuid, 0.0) < self.discovery_interval:
            return
        self._checked[mapping_uuid] = now
        function = self._client("lambda").get_function(FunctionName=mapping["FunctionArn"])
        config = MappingConfig.from_aws(mapping, function, backoff=self.retry_backoff)
        if config != runner.config:
            self._handler_for(config, function)
            runner.config = config

    def _handler_for(self, config: MappingConfig, function: dict[str, Any]) -> Handler:
        """An injected stand-in, else the function's deployed package, run by workers."""
        if config.function_name in self._handlers:
            return self._handlers[config.function_name]
        package_dir = self._packages.unpacked(
            config.code_sha256, lambda: deployed_code(self._client("s3"), function)
        )
        spec = FunctionSpec(
            name=config.function_name,
            arn=config.function_arn,
            handler=config.handler,
            code_sha256=config.code_sha256,
            package_dir=package_dir,
            role_arn=config.role_arn,
            region=config.region,
            environment=config.environment,
            memory_size=config.memory_size,
            timeout=config.timeout,
            version=config.version,
        )
        deployed = self._deployed.get(config.function_name)
        if deployed is None:
            deployed = DeployedFunction(
                spec,
                self._assume_role,
                self._runtime_dir,
                worker_lifetime=self._credentials_seconds - CREDENTIALS_MARGIN,
            )
            self._deployed[config.function_name] = deployed
        else:
            deployed.update(spec)
        self._checked[config.uuid] = time.monotonic()
        return deployed

    def _assume_role(self, spec: FunctionSpec) -> dict[str, str]:
        """The execution role's credentials, obtained with the runtime's own, as Lambda does."""
        credentials = self._lambda_service_sts().assume_role(
            RoleArn=spec.role_arn,
            RoleSessionName=spec.name,
            DurationSeconds=self._credentials_seconds,
        )["Credentials"]
        return {
            "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
            "AWS_SESSION_TOKEN": credentials["SessionToken"],
        }

    def _lambda_service_sts(self) -> Any:
        """STS as the Lambda service calls it: a function role trusts ``lambda.amazonaws.com``,
        not whoever runs this runtime (the embedded AWS's stand-in for the service signs)."""
        own = self._client("sts")
        keys = LAMBDA_SERVICE.environment()
        return aws.client(
            "sts",
            config=CLIENT_CONFIG,
            endpoint_url=own.meta.endpoint_url,
            aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
        )

    def _log_waiting(self) -> None:
        now = time.monotonic()
        if self._runners or now - self._last_waiting_log < WAITING_LOG_SECONDS:
            return
        self._last_waiting_log = now
        log.info(
            "waiting for an enabled stream event source mapping (checking every %.0f s)",
            self.discovery_interval,
        )

    # observation

    def stats(self) -> list[ShardStats]:
        with self._discover_lock:
            return [
                worker.snapshot()
                for runner in self._runners.values()
                for worker in runner.workers.values()
            ]

    def run_until_idle(self, timeout: float = 30.0) -> None:
        """Return once every shard is caught up with no batch in flight (for tests: call it
        after the writes). Raises TimeoutError otherwise."""
        if self._thread is None:
            raise LambdaRuntimeError("start() the runtime first")
        deadline = time.monotonic() + timeout
        with self._discover_lock:
            marks = {
                (u, s): w.polls_started
                for u, r in self._runners.items()
                for s, w in r.workers.items()
            }
        while True:
            with self._discover_lock:  # idle first: a parent finishing now starts a child below
                idle = self._idle_since(marks)
                if self.discover() == 0 and idle:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"still busy after {timeout} s: {self.stats()}")
            time.sleep(min(self.poll_interval or 0.05, 0.05))

    def _idle_since(self, marks: Mapping[tuple[str, str], int]) -> bool:
        with self._discover_lock:
            return all(
                runner.is_idle_since({s: n for (u, s), n in marks.items() if u == mapping_uuid})
                for mapping_uuid, runner in self._runners.items()
            )
