"""``LocalLambdaRuntime``: discovers the Kinesis event source mappings and runs them."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from storepulse import aws
from storepulse.config import settings
from storepulse_local.lambda_runtime.checkpoints import (
    CHECKPOINT_FILE,
    CheckpointStore,
    StateDirLock,
)
from storepulse_local.lambda_runtime.common import ClientFactory, LambdaRuntimeError, log
from storepulse_local.lambda_runtime.failures import OnFailureSender
from storepulse_local.lambda_runtime.mappings import (
    LAMBDAS_DIR,
    Handler,
    MappingConfig,
    handler_folder,
    is_kinesis_stream,
    load_handler,
    wants_polling,
)
from storepulse_local.lambda_runtime.shards import MappingRunner, ShardStats

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
        poll_interval: float = 0.2,
        discovery_interval: float = 5.0,
        retry_backoff: float = 0.5,
        lambdas_dir: Path = LAMBDAS_DIR,
        client: ClientFactory = default_client,
    ) -> None:
        self.state_dir = state_dir or settings().state_dir / "lambda-runtime"
        self.poll_interval = poll_interval
        self.discovery_interval = discovery_interval
        self.retry_backoff = retry_backoff
        self._handlers = dict(handlers or {})
        self._lambdas_dir = lambdas_dir
        self._client_factory = client
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._sender = OnFailureSender(self._client)
        self._loaded: dict[tuple[str, str], Handler] = {}
        self._environment: dict[str, tuple[str, str]] = {}  # variable -> (function, value)
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
            if is_kinesis_stream(m.get("EventSourceArn", ""))
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
            return started + self._runners[mapping_uuid].refresh_shards()
        except (BotoCoreError, ClientError, LambdaRuntimeError) as exc:
            log.error("mapping %s (%s): %s", mapping_uuid, mapping.get("EventSourceArn"), exc)
            return 0

    def _start_mapping(self, mapping: dict[str, Any]) -> MappingRunner:
        function = self._client("lambda").get_function(FunctionName=mapping["FunctionArn"])
        config = MappingConfig.from_aws(mapping, function, backoff=self.retry_backoff)
        self._apply_environment(config)
        handler = self._handler_for(config)
        assert self._store is not None
        runner = MappingRunner(
            config,
            handler,
            client=self._client,
            store=self._store,
            sender=self._sender,
            poll_interval=self.poll_interval,
            on_shard_finished=self._wake.set,
        )
        log.info(
            "polling %s for %s (mapping %s, batch size %d, window %.1f s)",
            config.stream_name,
            config.function_name,
            config.uuid,
            config.batch_size,
            config.batching_window,
        )
        if config.ignored:
            log.warning(
                "mapping %s: not emulated, ignored: %s", config.uuid, ", ".join(config.ignored)
            )
        return runner

    def _apply_environment(self, config: MappingConfig) -> None:
        """Set before the first call and kept: handlers build cached clients from them. One
        process serves every function, so a variable two functions set differently is reported."""
        for name, value in config.environment.items():
            owner = self._environment.get(name)
            if owner and owner[0] != config.function_name and owner[1] != value:
                log.warning(
                    "%s=%r of %s overrides %r of %s",
                    name,
                    value,
                    config.function_name,
                    owner[1],
                    owner[0],
                )
            self._environment[name] = (config.function_name, value)
            os.environ[name] = value

    def _handler_for(self, config: MappingConfig) -> Handler:
        if config.function_name in self._handlers:
            return self._handlers[config.function_name]
        folder = handler_folder(config.function_name, config.tags)
        key = (folder, config.handler)
        if key not in self._loaded:
            self._loaded[key] = load_handler(config.handler, self._lambdas_dir / folder)
        return self._loaded[key]

    def _log_waiting(self) -> None:
        now = time.monotonic()
        if self._runners or now - self._last_waiting_log < WAITING_LOG_SECONDS:
            return
        self._last_waiting_log = now
        log.info(
            "waiting for an enabled Kinesis event source mapping (checking every %.0f s)",
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
            time.sleep(min(self.poll_interval, 0.05))

    def _idle_since(self, marks: Mapping[tuple[str, str], int]) -> bool:
        with self._discover_lock:
            return all(
                runner.is_idle_since({s: n for (u, s), n in marks.items() if u == mapping_uuid})
                for mapping_uuid, runner in self._runners.items()
            )
