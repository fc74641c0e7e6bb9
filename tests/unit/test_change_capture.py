"""Change capture without servers: DynamoDB Streams records -> change rows -> objects, and the
local runtime's DynamoDB Streams source."""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow.parquet as pq
import pytest
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from storepulse.capture.changes import REMOVE, ChangeError, change_rows, decode_record, hour_runs
from storepulse.capture.reader import latest_rows
from storepulse.capture.sink import ChangeSink
from storepulse.export.datasets import DATASETS
from storepulse_local.lambda_runtime.failures import Condition, FailedBatch, on_failure_record
from storepulse_local.lambda_runtime.sources import DYNAMODB_STREAMS, source_of

FACTS_STREAM = (
    "arn:aws:dynamodb:us-east-1:123456789012:table/storepulse-dev-facts"
    "/stream/2026-12-07T00:00:00.000"
)
T0 = datetime(2026, 12, 7, 9, 59, 58, tzinfo=UTC)
_serialize = TypeSerializer().serialize


def order(order_id: str, total: str, day: str = "2026-12-07") -> dict[str, Any]:
    return {
        "pk": f"ORDER#{order_id}",
        "sk": "ORDER",
        "type": "order",
        "order_id": order_id,
        "store_id": "s-001",
        "business_date": day,
        "occurred_at": "2026-12-07T09:00:00+00:00",
        "channel": "in_store",
        "currency": "EUR",
        "total": Decimal(total),
        "units": Decimal(1),
        "lines": [
            {"sku": "tea", "category": "grocery", "quantity": 1, "unit_price": Decimal(total)}
        ],
    }


def record(
    seq: int,
    name: str,
    new: dict[str, Any] | None,
    old: dict[str, Any] | None = None,
    at: datetime = T0,
    **extra: Any,
) -> dict[str, Any]:
    item = new or old or {}
    stream: dict[str, Any] = {
        "ApproximateCreationDateTime": int(at.timestamp()),
        "Keys": {"pk": {"S": item["pk"]}, "sk": {"S": item["sk"]}},
        "SequenceNumber": str(seq),
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    for key, image in (("NewImage", new), ("OldImage", old)):
        if image is not None:
            stream[key] = {k: _serialize(v) for k, v in image.items()}
    return {
        "eventID": f"e{seq}",
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": stream,
        "eventSourceARN": FACTS_STREAM,
        **extra,
    }


class FakeS3:
    def __init__(self, fail_keys: tuple[str, ...] = ()) -> None:
        self.objects: dict[str, bytes] = {}
        self.fail_keys = fail_keys

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, **_: Any) -> None:  # noqa: N803
        if any(part in Key for part in self.fail_keys):
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "x"}}, "PutObject")
        self.objects[Key] = Body


def test_an_order_change_is_a_typed_orders_row_with_its_position() -> None:
    change = decode_record(record(7, "INSERT", order("o-1", "2.50")))
    (row,) = change_rows(change, DATASETS["orders"])
    assert row["total"] == Decimal("2.50") and row["business_date"] == date(2026, 12, 7)
    assert row["_op"] == "INSERT" and row["_pk"] == "ORDER#o-1"
    assert row["_sequence_number"].endswith("7") and len(row["_sequence_number"]) > 1
    assert change_rows(change, DATASETS["refunds"]) == []


def test_removes_and_items_leaving_a_data_set_give_remove_rows_ttl_deletions_none() -> None:
    removed = decode_record(record(8, "REMOVE", None, order("o-1", "2.50")))
    assert [r["_op"] for r in change_rows(removed, DATASETS["orders"])] == [REMOVE]
    left = decode_record(
        record(9, "MODIFY", {**order("o-1", "2.50"), "type": "x"}, order("o-1", "2.50"))
    )
    assert [r["_op"] for r in change_rows(left, DATASETS["orders"])] == [REMOVE]
    ttl = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    expired = decode_record(record(10, "REMOVE", None, order("o-1", "2.50"), userIdentity=ttl))
    assert change_rows(expired, DATASETS["orders"]) == []


def test_changes_are_written_per_hour_and_a_bad_record_is_quarantined_alone() -> None:
    s3 = FakeS3()
    records = [
        record(1, "INSERT", order("o-1", "1.00")),
        record(2, "INSERT", {**order("o-2", "1.00"), "total": Decimal("1.001")}),  # not money
        {"eventName": "INSERT"},  # not a stream record
        record(3, "MODIFY", order("o-1", "3.00"), order("o-1", "1.00"), at=T0.replace(hour=10)),
    ]
    report = ChangeSink(s3, "lake").write(records, decode_record)
    assert report.failed_sequence_numbers == [] and report.quarantined == 2
    orders = sorted(k for k in s3.objects if "/orders/" in k)
    assert orders == [
        f"changes/facts/dt=2026-12-07/hour=09/orders/{_label()}-1-2.parquet",
        f"changes/facts/dt=2026-12-07/hour=10/orders/{_label()}-3-3.parquet",
    ]
    table = pq.read_table(io.BytesIO(s3.objects[orders[1]]))
    assert latest_rows(DATASETS["orders"], table)[0]["total"] == Decimal("3.00")
    (quarantine,) = [k for k in s3.objects if k.startswith("quarantine/changes/")]
    lines = [json.loads(x) for x in gzip.decompress(s3.objects[quarantine]).splitlines()]
    assert ["more than 2 decimal places" in x["reason"] for x in lines] == [True, False]


def test_an_s3_error_resumes_at_the_hour_it_failed_and_a_retry_rewrites_the_same_keys() -> None:
    records = [
        record(1, "INSERT", order("o-1", "1.00")),
        record(2, "INSERT", order("o-2", "1.00"), at=T0.replace(hour=10)),
    ]
    failing = FakeS3(fail_keys=("hour=10",))
    report = ChangeSink(failing, "lake").write(records, decode_record)
    assert report.failed_sequence_numbers == ["2"]
    retried = FakeS3()
    ChangeSink(retried, "lake").write(records, decode_record)
    assert set(failing.objects) < set(retried.objects)
    assert all(retried.objects[k] == v for k, v in failing.objects.items())  # same bytes


def test_hour_runs_split_at_each_hour_in_stream_order() -> None:
    hours = [9, 9, 10, 9]
    changes = [
        decode_record(record(i, "INSERT", order(f"o-{i}", "1.00"), at=T0.replace(hour=h)))
        for i, h in enumerate(hours)
    ]
    assert [len(run) for run in hour_runs(changes)] == [2, 1, 1]


def test_a_record_of_no_lake_table_is_refused() -> None:
    other = record(1, "INSERT", order("o-1", "1.00"))
    other["eventSourceARN"] = FACTS_STREAM.replace("facts", "elsewhere")
    with pytest.raises(ChangeError, match="not a table of the lake"):
        decode_record(other)


def test_the_runtime_hands_a_dynamodb_streams_record_over_in_lambdas_shape() -> None:
    assert source_of(FACTS_STREAM) is DYNAMODB_STREAMS
    raw = record(5, "INSERT", order("o-1", "1.00"))
    raw["dynamodb"]["ApproximateCreationDateTime"] = T0  # boto3 answers a datetime
    del raw["eventSourceARN"]
    (change,) = DYNAMODB_STREAMS.records("shardId-1", [raw])
    (entry,) = DYNAMODB_STREAMS.event([change], FACTS_STREAM, "eu-west-1", "role")["Records"]
    assert entry["eventSourceARN"] == FACTS_STREAM and entry["awsRegion"] == "eu-west-1"
    assert entry["dynamodb"]["ApproximateCreationDateTime"] == int(T0.timestamp())
    assert decode_record(entry).sequence_number == "5"
    failed = FailedBatch([change], Condition.RETRIES_EXHAUSTED, 3, None)
    sent = on_failure_record(
        failed, function_arn="f", stream_arn=FACTS_STREAM, now=T0, source=DYNAMODB_STREAMS
    )
    assert sent["DDBStreamBatchInfo"]["startSequenceNumber"] == "5"
    assert sent["replay"]["records"][0]["record"]["eventID"] == "e5"


def _label() -> str:
    return "2026-12-07T000000000"


def test_one_list_of_compacted_data_sets_for_the_dag_and_the_compactor() -> None:
    """The DAG imports the light list; the compactor knows the item of every data set on it."""
    import ast

    from storepulse.capture import COMPACTED
    from storepulse.capture.compaction import ITEM_KEYS
    from storepulse.config import REPO_ROOT

    assert tuple(ITEM_KEYS) == COMPACTED
    tree = ast.parse((REPO_ROOT / "dags" / "compact_changes.py").read_text())
    names = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert "COMPACTED" not in names  # imported, not spelled again
