"""moto's Kinesis shards, made to keep what AWS keeps and to answer in time that does not grow
with the shard's history.

moto keeps every record ever put (AWS drops them past the stream's retention period: the
stack's is 24 h) and finds a shard's last record by listing all its sequence numbers at every
put, and the records after an iterator by walking the shard from its first record at every
GetRecords (the local runtime polls each shard every 0.2 s). After a week of the demo (about
414,000 records) each poll and each put walked them all, and the snapshot carried them all.
Here records past the retention period are dropped (on the shard's next put or read), and a
shard's sequence numbers, which moto allocates one after another, are looked up directly.

Enhanced fan-out's push (SubscribeToShard, absent from moto) is emulated by a loopback-only
long poll (``WAIT_PATH``, ``storepulse_local.record_waits``): the local Lambda runtime blocks on
it until a put lands on the shard after its iterator, then reads the records with an ordinary
GetRecords.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from storepulse_local.record_waits import RecordWaits, unlocked_backend

HOUR = 3600.0
MOTO: dict[str, Any] = {}  # moto's own methods (benchmarks/persistence.py's baseline)
# The long poll of enhanced fan-out's emulated push: POST {"StreamARN", "ShardIterator",
# "TimeoutSeconds"} -> {"RecordsAfterIterator": bool}. Not an AWS API (like /moto-api).
WAIT_PATH: Final = "/storepulse-local/kinesis/wait-for-records"


def patch_kinesis() -> None:
    from moto.kinesis.models import KinesisBackend, Shard, Stream

    if getattr(Shard, "_storepulse_patched", False):
        return
    Shard._storepulse_patched = True  # type: ignore[attr-defined]
    MOTO.update(get_records=Shard.get_records, last=Shard.get_max_sequence_number)
    Shard.get_min_sequence_number = _first  # type: ignore[method-assign]
    Shard.get_max_sequence_number = _last  # type: ignore[method-assign]
    walk = Shard.get_records
    Shard.get_records = lambda self, last, limit: (  # type: ignore[method-assign]
        _get_records(self, last, limit) if _consecutive(self) else walk(self, last, limit)
    )
    put_record, get_records = Stream.put_record, KinesisBackend.get_records
    _notify_waits_after(KinesisBackend, "put_record", "put_records")

    def put_and_expire(self: Any, partition_key: str, explicit_hash_key: str, data: str) -> Any:
        sequence_number, shard_id = put_record(self, partition_key, explicit_hash_key, data)
        expire(self.get_shard(shard_id), self.retention_period_hours)
        return sequence_number, shard_id

    def expire_and_get(self: Any, stream_arn: Any, shard_iterator: str, limit: Any) -> Any:
        from moto.kinesis.utils import decompose_shard_iterator

        stream_name, shard_id, _ = decompose_shard_iterator(shard_iterator)
        stream = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name)
        expire(stream.get_shard(shard_id), stream.retention_period_hours)
        return get_records(self, stream_arn, shard_iterator, limit)

    Stream.put_record = put_and_expire  # type: ignore[method-assign]
    KinesisBackend.get_records = expire_and_get  # type: ignore[method-assign]


def expire(shard: Any, retention_hours: float, now: float | None = None) -> int:
    """Drop the shard's records older than the retention period, as AWS does; how many."""
    cutoff = (time.time() if now is None else now) - retention_hours * HOUR
    records, dropped = shard.records, 0
    while records and records[first := next(iter(records))].created_at < cutoff:
        del records[first]
        dropped += 1
    return dropped


def _first(self: Any) -> int:
    return next(iter(self.records)) if self.records else 0


def _last(self: Any) -> int:
    return next(reversed(self.records)) if self.records else 0


def _consecutive(self: Any) -> bool:
    return not self.records or len(self.records) == _last(self) - _first(self) + 1


def _get_records(self: Any, last_sequence_id: str, limit: int | None) -> tuple[list, int, int]:
    """moto's ``Shard.get_records`` from the iterator's position on, not from the first record:
    a shard's sequence numbers are consecutive (moto's ``put_record`` adds one to the last;
    a shard with a gap is walked as moto does)."""
    last = int(last_sequence_id)
    results: list[Any] = []
    if not self.records:
        return results, last, 0
    newest = self.records[_last(self)]
    number = max(last + 1, _first(self))
    while (limit is None or len(results) < limit) and (record := self.records.get(number)):
        results.append(record)
        last = number
        number += 1
    behind = newest.created_at - results[-1].created_at if results else 0.0
    return results, last, int(behind * 1000)


def patch_stream_consumers() -> None:
    """Enhanced fan-out in the embedded AWS: moto's CloudFormation skips
    ``AWS::Kinesis::StreamConsumer`` and its Lambda refuses a consumer's ARN as a mapping's
    source, so a stack deployed with ``EnhancedFanOut`` "true" could not be created. Here the
    resource registers a consumer (``ConsumerARN``, ``ConsumerName``), and a mapping may read
    through a registered consumer; the local Lambda runtime then waits for its records to be
    pushed (``RecordWaits``; no SubscribeToShard in moto)."""
    from moto.awslambda.models import EventSourceMapping, LambdaBackend
    from moto.cloudformation import parsing

    if getattr(LambdaBackend, "_storepulse_consumers", False):
        return
    LambdaBackend._storepulse_consumers = True  # type: ignore[attr-defined]
    create = LambdaBackend.create_event_source_mapping

    def create_event_source_mapping(self: Any, spec: dict[str, Any]) -> Any:
        if _consumer(self.account_id, self.region_name, spec.get("EventSourceArn", "")) is None:
            return create(self, spec)
        function = self._lambdas.get_function_by_name_or_arn_with_qualifier(
            spec.get("FunctionName", "")
        )
        spec.update(RegionName=self.region_name, AccountId=self.account_id)
        spec["FunctionArn"] = function.function_arn
        mapping = EventSourceMapping(spec)
        self._event_source_mappings[mapping.uuid] = mapping  # delivered by the local runtime
        return mapping

    LambdaBackend.create_event_source_mapping = create_event_source_mapping  # type: ignore[method-assign]
    _define_consumer_resource()
    parsing.get_model_list.cache_clear()
    parsing.get_model_map.cache_clear()


def _consumer(account_id: str, region: str, arn: str) -> Any:
    from moto.kinesis.models import kinesis_backends

    if "/consumer/" not in arn:
        return None
    for stream in kinesis_backends[account_id][region].streams.values():
        if (consumer := stream.get_consumer_by_arn(arn)) is not None:
            return consumer
    return None


def _define_consumer_resource() -> None:
    from moto.core.common_models import CloudFormationModel
    from moto.kinesis.models import kinesis_backends

    class StreamConsumer(CloudFormationModel):
        def __init__(self, consumer: Any) -> None:
            self.consumer = consumer

        @staticmethod
        def cloudformation_name_type() -> str:
            return "ConsumerName"

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::Kinesis::StreamConsumer"

        @classmethod
        def create_from_cloudformation_json(  # type: ignore[misc]
            cls,
            resource_name: str,
            cloudformation_json: Any,
            account_id: str,
            region_name: str,
            **kwargs: Any,
        ) -> StreamConsumer:
            properties = cloudformation_json["Properties"]
            consumer = kinesis_backends[account_id][region_name].register_stream_consumer(
                stream_arn=properties["StreamARN"], consumer_name=properties["ConsumerName"]
            )
            return cls(consumer)

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr in ("ConsumerARN", "ConsumerName", "StreamARN")

        def get_cfn_attribute(self, attribute_name: str) -> str:
            return {
                "ConsumerARN": self.consumer.consumer_arn,
                "ConsumerName": self.consumer.consumer_name,
                "StreamARN": self.consumer.stream_arn,
            }[attribute_name]

        @property
        def physical_resource_id(self) -> str:
            return self.consumer.consumer_arn

        def delete(self, account_id: str, region_name: str) -> None:
            # By ARN only: given the stream, moto keeps only the consumers of that name.
            kinesis_backends[account_id][region_name].deregister_stream_consumer(
                stream_arn="", consumer_name="", consumer_arn=self.consumer.consumer_arn
            )

    # Found by pickle (the embedded AWS's snapshots hold the stacks' resources) as if defined
    # at module level: moto is imported only once the embedded AWS starts.
    StreamConsumer.__qualname__ = StreamConsumer.__name__
    globals()[StreamConsumer.__name__] = StreamConsumer


WAITS: Final = RecordWaits()


def wait_for_records(body: dict[str, Any]) -> bool:
    """The long poll at ``WAIT_PATH``: True as soon as the iterator's shard has records after
    it; False after the body's timeout."""
    from moto.kinesis.utils import decompose_shard_iterator

    stream_name, shard_id, last = decompose_shard_iterator(body["ShardIterator"])
    _, _, _, region, account, _ = body["StreamARN"].split(":", 5)
    shard = _find_shard(account, region, stream_name, shard_id)
    if shard is None:
        return True  # unknown here: GetRecords will say why

    def arrived() -> bool:
        try:
            return bool(_last(shard) > int(last))
        except RuntimeError:  # the shard changing under us: a put
            return True

    return WAITS.wait_for(arrived, float(body["TimeoutSeconds"]))


def _find_shard(account: str, region: str, stream_name: str, shard_id: str) -> Any:
    """The shard, or None (``unlocked_backend``: a long poll is outside the request gate)."""
    from moto.kinesis.models import kinesis_backends

    backend = unlocked_backend(kinesis_backends, account, region)
    stream = backend.streams.get(stream_name) if backend is not None else None
    return stream.shards.get(shard_id) if stream is not None else None


def _notify_waits_after(backend: type, *methods: str) -> None:
    for name in methods:
        put = getattr(backend, name)

        def put_and_notify(self: Any, *args: Any, _put: Callable = put, **kwargs: Any) -> Any:
            try:
                return _put(self, *args, **kwargs)
            finally:
                WAITS.notify()

        setattr(backend, name, put_and_notify)
