"""The export library without AWS: row builders, DynamoDB JSON decoding, schemas, and the
Parquet writer on the local filesystem."""

from __future__ import annotations

import gzip
import io
import json
import random
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody

from storepulse.config import settings
from storepulse.export import DATASET_NAMES
from storepulse.export.datasets import (
    DATASETS,
    MONEY,
    TIMESTAMP,
    RowError,
    build_rows,
    customer_row,
    daily_store_metrics_row,
    dataset_path,
    datasets_of,
    inventory_rows,
    order_line_rows,
    order_row,
    refund_row,
)
from storepulse.export.dynamodb_json import (
    DynamoJsonError,
    deserialize,
    deserialize_item,
    export_kind,
    iter_export_items,
    serialize,
    serialize_item,
)
from storepulse.export.sources import Backoff, ExportError, ExportWindow, PointInTimeExportSource
from storepulse.export.writer import WriteError, WriterOptions
from storepulse.lake.filesystem import open_filesystem
from storepulse.layout import Table
from tests.lake import write_rows

DAY = date(2026, 11, 26)


def order_item(order_id: str = "o-1", **overrides: object) -> dict:
    """An order fact as DynamoDB returns it (see storepulse.stream.facts.order_fact)."""
    item = {
        "pk": f"ORDER#{order_id}",
        "sk": "ORDER",
        "type": "order",
        "order_id": order_id,
        "event_id": "3f0c5a4e-8d6b-4c1e-9a57-0b7d2f1e6c44",
        "store_id": "s-001",
        "business_date": "2026-11-26",
        "occurred_at": "2026-11-26T11:00:00+00:00",
        "channel": "in_store",
        "currency": "EUR",
        "customer_id": "c-1",
        "total": Decimal("24.3"),  # DynamoDB drops trailing zeros
        "units": Decimal(3),
        "lines": [
            {
                "sku": "coffee-1kg",
                "category": "grocery",
                "quantity": Decimal(2),
                "unit_price": Decimal("12.1"),
            },
            {
                "sku": "mug-blue",
                "category": "kitchen",
                "quantity": Decimal(1),
                "unit_price": Decimal("0.10"),
            },
        ],
        "gsi1pk": "ORDERS#2026-11-26",
        "gsi1sk": f"s-001#ORDER#{order_id}",
        "expires_at": Decimal(1_800_000_000),
        "src": "shardId-000000000000:0001",
    }
    return item | overrides


def mix_item(store: str, sk: str, **counters: Decimal) -> dict:
    return {
        "pk": f"{'ALL' if store == 'ALL' else 'S#' + store}#MIX#2026",
        "sk": sk,
        "wm_shardId-000000000000": "0001",
        **{name.replace("__", "#"): value for name, value in counters.items()},
    }


# --- row builders ------------------------------------------------------------------------------


def test_money_stays_exact_and_gets_two_places() -> None:
    row = order_row(order_item())
    assert row["total"] == Decimal("24.30") and str(row["total"]) == "24.30"
    assert (row["units"], row["line_count"], row["employee_id"]) == (3, 2, None)
    lines = order_line_rows(order_item())
    assert [(r["line_number"], r["amount"]) for r in lines] == [
        (1, Decimal("24.20")),
        (2, Decimal("0.10")),
    ]
    arrow = pa.Table.from_pylist([row], schema=DATASETS["orders"].schema)
    assert arrow["total"].type == MONEY and arrow["total"][0].as_py() == Decimal("24.30")


def test_money_that_would_need_rounding_is_refused_with_the_items_key() -> None:
    with pytest.raises(RowError, match=r"ORDER#o-1/ORDER: money with more than 2 decimal places"):
        order_row(order_item(total=Decimal("24.305")))
    with pytest.raises(RowError, match="money must be a Decimal"):
        order_row(order_item(total=24.3))
    with pytest.raises(RowError, match="missing attribute 'currency'"):
        order_row({k: v for k, v in order_item().items() if k != "currency"})


def test_timestamps_are_utc() -> None:
    row = order_row(order_item(occurred_at="2026-11-26T12:00:00.250000+01:00"))
    assert row["occurred_at"] == datetime(2026, 11, 26, 11, 0, 0, 250_000, tzinfo=UTC)
    assert row["occurred_at"].utcoffset().total_seconds() == 0
    with pytest.raises(RowError, match="without a time zone"):
        order_row(order_item(occurred_at="2026-11-26T11:00:00"))
    arrow = pa.Table.from_pylist([row], schema=DATASETS["orders"].schema)
    assert arrow["occurred_at"].type == TIMESTAMP


def test_a_late_order_lands_in_its_own_business_date() -> None:
    """23:30 UTC is the 27th in Paris: the order belongs to the 27th however late it arrives,
    and a rerun of the 27th picks it up; the 26th never sees it."""
    late = order_item("o-late", business_date="2026-11-27", occurred_at="2026-11-26T23:30:00Z")
    items = [order_item("o-1"), late, {"pk": "SESSION#x", "sk": "SESSION", "type": "session"}]
    orders = DATASETS["orders"]
    assert [r["order_id"] for r in build_rows(orders, items, DAY)] == ["o-1"]
    next_day = list(build_rows(orders, items, date(2026, 11, 27)))
    assert [(r["order_id"], r["business_date"]) for r in next_day] == [
        ("o-late", date(2026, 11, 27))
    ]


def test_mix_parts_are_summed_per_store_and_day() -> None:
    items = [
        mix_item(
            "s-001",
            "2026-11-26",
            cat__grocery__revenue=Decimal("24.2"),
            cat__grocery__units=Decimal(2),
            sku__coffee_1kg__revenue=Decimal("24.2"),
        ),
        mix_item(
            "s-001",
            "2026-11-26#2",
            cat__grocery__revenue=Decimal("0.60"),
            cat__grocery__units=Decimal(3),
            **{"cat__a#b__revenue": Decimal("1.00")},  # names may contain '#'
        ),
        mix_item("ALL", "2026-11-26", cat__grocery__revenue=Decimal("99")),  # business scope
        mix_item("s-001", "2026-11-25", cat__grocery__revenue=Decimal("5")),  # another day
    ]
    rows = list(build_rows(DATASETS["daily_category_sales"], items, DAY))
    assert [(r["category"], r["revenue"], r["units"]) for r in rows] == [
        ("a#b", Decimal("1.00"), 0),
        ("grocery", Decimal("24.80"), 5),
    ]
    products = list(build_rows(DATASETS["daily_product_sales"], items, DAY))
    assert [(r["store_id"], r["sku"], r["revenue"]) for r in products] == [
        ("s-001", "coffee_1kg", Decimal("24.20"))
    ]


def test_daily_store_metrics_with_derived_rates() -> None:
    item = {
        "pk": "S#s-001#DAY#2026",
        "sk": "2026-11-26",
        "revenue": Decimal("100"),
        "orders": Decimal(3),
        "sessions": Decimal(7),
        "purchases": Decimal(2),
    }
    row = daily_store_metrics_row(item)
    assert (row["store_id"], row["business_date"]) == ("s-001", DAY)
    assert row["average_order_value"] == Decimal("33.33")
    assert row["conversion_rate"] == Decimal("0.285714")
    assert (row["refunds"], row["refund_amount"], row["foot_traffic"]) == (0, Decimal("0.00"), 0)
    empty = daily_store_metrics_row({"pk": "S#s-002#DAY#2026", "sk": "2026-11-26"})
    assert (empty["conversion_rate"], empty["average_order_value"]) == (None, None)
    business = {"pk": "ALL#DAY#2026", "sk": "2026-11-26", "revenue": Decimal(1)}
    assert list(build_rows(DATASETS["daily_store_metrics"], [item, business], DAY)) == [row]


def test_refund_inventory_and_customer_rows() -> None:
    refund = refund_row(
        {
            "pk": "REFUND#r-1",
            "sk": "REFUND",
            "type": "refund",
            "refund_id": "r-1",
            "order_id": "o-1",
            "store_id": "s-001",
            "business_date": "2026-11-26",
            "occurred_at": "2026-11-26T15:00:00+00:00",
            "currency": "EUR",
            "amount": Decimal("12.1"),
            "lines": [{"sku": "coffee-1kg", "quantity": Decimal(1)}],
        }
    )
    assert (refund["amount"], refund["units"], refund["reason"]) == (Decimal("12.10"), 1, None)
    level_item = {"pk": "S#s-001", "sk": "#LV#0", "lv": {"tea-100g": Decimal(-2)}}
    (stock,) = inventory_rows(level_item, DAY)
    assert stock == {
        "store_id": "s-001",
        "sku": "tea-100g",
        "on_hand": -2,
        "counted_at": None,
        "snapshot_date": DAY,
    }
    customer = customer_row(
        {
            "pk": "CUSTOMER#c-1",
            "sk": "PROFILE",
            "type": "customer",
            "customer_id": "c-1",
            "store_id": "s-001",
            "age_band": "25-34",
            "region": "IDF",
            "segment": "vip",
            "updated_at": "2026-11-20T08:00:00+00:00",
        },
        DAY,
    )
    assert customer["updated_at"].tzinfo is not None and customer["segment"] == "vip"


# --- schemas and the registry ------------------------------------------------------------------


def test_every_dataset_has_a_versioned_explicit_schema() -> None:
    assert tuple(DATASETS) == DATASET_NAMES
    for name, dataset in DATASETS.items():
        metadata = dataset.schema.metadata
        assert dataset.schema_version >= 1
        assert metadata[b"storepulse.dataset"] == name.encode()
        assert metadata[b"storepulse.schema_version"] == str(dataset.schema_version).encode()
        for column in (*dataset.key, dataset.partition_column):
            assert not dataset.schema.field(column).nullable, (name, column)
        for field in dataset.schema:
            assert field.name == field.name.lower() and " " not in field.name
            if pa.types.is_decimal(field.type) and field.name not in ("conversion_rate",):
                assert field.type == MONEY, (name, field.name)
            if pa.types.is_timestamp(field.type):
                assert field.type == TIMESTAMP, (name, field.name)
    assert {d.name for d in datasets_of(Table.FACTS)} == {
        "orders",
        "order_lines",
        "refunds",
        "customers",
    }
    assert dataset_path("s3://lake/staging/", DATASETS["orders"], DAY) == (
        "s3://lake/staging/orders/dt=2026-11-26"
    )


# --- DynamoDB JSON -----------------------------------------------------------------------------


def test_every_dynamodb_type_decodes_exactly() -> None:
    item = {
        "s": {"S": "héllo"},
        "n": {"N": "12.10"},
        "big": {"N": "123456789012345678901234567890.5"},
        "b": {"B": "AAEC"},
        "t": {"BOOL": True},
        "nothing": {"NULL": True},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "2.5"]},
        "bs": {"BS": ["AA==", "AQ=="]},
        "m": {"M": {"lines": {"L": [{"M": {"q": {"N": "2"}, "tags": {"SS": ["x"]}}}]}}},
        "empty": {"L": []},
    }
    decoded = deserialize_item(item)
    assert decoded == {
        "s": "héllo",
        "n": Decimal("12.10"),
        "big": Decimal("123456789012345678901234567890.5"),
        "b": b"\x00\x01\x02",
        "t": True,
        "nothing": None,
        "ss": {"a", "b"},
        "ns": {Decimal(1), Decimal("2.5")},
        "bs": {b"\x00", b"\x01"},
        "m": {"lines": [{"q": Decimal(2), "tags": {"x"}}]},
        "empty": [],
    }
    assert type(decoded["n"]) is Decimal
    assert deserialize({"B": b"\x00"}) == b"\x00"  # boto3 hands binary over decoded
    assert deserialize_item(serialize_item(decoded)) == decoded


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"N": 1.5}, "number must be a string"),
        ({"N": "NaN"}, "not a finite number"),
        ({"N": "abc"}, "not a number"),
        ({"B": "not base64!"}, "not valid base64"),
        ({"BOOL": "true"}, "boolean expected"),
        ({"X": "1"}, "unknown attribute type"),
        ({"S": "a", "N": "1"}, "exactly one type key"),
    ],
)
def test_invalid_dynamodb_json_is_refused(value: dict, message: str) -> None:
    with pytest.raises(DynamoJsonError, match=message):
        deserialize(value)


def test_serialize_refuses_floats() -> None:
    with pytest.raises(TypeError, match="float"):
        serialize(1.5)


def test_export_lines_full_and_incremental() -> None:
    lines = [
        {"Item": {"pk": {"S": "a"}, "n": {"N": "1"}}},
        {
            "Metadata": {"WriteTimeMicros": 1},
            "Keys": {"pk": {"S": "b"}},
            "NewImage": {"pk": {"S": "b"}},
        },
        {"Metadata": {"WriteTimeMicros": 2}, "Keys": {"pk": {"S": "gone"}}},  # a deletion
    ]
    data = gzip.compress(("\n".join(json.dumps(line) for line in lines) + "\n\n").encode())
    assert list(iter_export_items(io.BytesIO(data))) == [{"pk": "a", "n": Decimal(1)}, {"pk": "b"}]
    with pytest.raises(DynamoJsonError, match="line 2: not JSON"):
        list(iter_export_items(io.BytesIO(b'{"Item": {}}\n{oops\n'), compressed=False))
    with pytest.raises(DynamoJsonError, match="line 1: number must be a string"):
        list(iter_export_items(io.BytesIO(b'{"Item": {"n": {"N": 1.5}}}'), compressed=False))


# --- the Parquet writer (local filesystem) -----------------------------------------------------


def _orders(count: int) -> list[dict]:
    return [
        order_row(order_item(f"o-{i:06d}", total=Decimal(i) / 100, units=Decimal(i % 7)))
        for i in range(count)
    ]


def _bytes(paths: tuple[str, ...]) -> list[bytes]:
    return [Path(p).read_bytes() for p in paths]


def test_same_rows_in_any_order_give_identical_parquet(tmp_path: Path) -> None:
    orders = DATASETS["orders"]
    rows = _orders(500)
    shuffled = random.Random(7).sample(rows, len(rows))
    first = write_rows(rows, str(tmp_path / "a"), orders.schema, sort_by=orders.key)
    second = write_rows(shuffled, str(tmp_path / "b"), orders.schema, sort_by=orders.key)
    assert (first.rows, len(first.files)) == (500, 1)
    assert first.bytes == sum(len(b) for b in _bytes(first.files))
    assert _bytes(first.files) == _bytes(second.files)
    table = pq.read_table(first.files[0])
    assert table.schema.equals(orders.schema, check_metadata=False)
    assert table.schema.metadata[b"storepulse.schema_version"] == b"1"
    assert table["order_id"].to_pylist() == sorted(r["order_id"] for r in rows)
    assert pq.ParquetFile(first.files[0]).metadata.row_group(0).column(0).compression == "ZSTD"


def test_spilled_runs_merge_to_the_same_files_as_an_in_memory_sort(tmp_path: Path) -> None:
    orders = DATASETS["orders"]
    rows = random.Random(3).sample(_orders(1_000), 1_000)
    small = WriterOptions(batch_rows=64, run_rows=128, row_group_rows=300, merge_window_rows=16)
    in_memory = WriterOptions(row_group_rows=300)
    spilled = write_rows(
        rows, str(tmp_path / "s"), orders.schema, sort_by=orders.key, options=small
    )
    direct = write_rows(
        rows, str(tmp_path / "d"), orders.schema, sort_by=orders.key, options=in_memory
    )
    assert _bytes(spilled.files) == _bytes(direct.files)
    metadata = pq.ParquetFile(spilled.files[0]).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [
        300,
        300,
        300,
        100,
    ]


def test_a_two_column_key_merges_across_runs_and_a_key_in_two_runs_is_refused(
    tmp_path: Path,
) -> None:
    lines = DATASETS["order_lines"]
    rows = [
        {"order_id": f"o-{n % 97:03d}", "line_number": n, "store_id": "s-001"}
        | {"business_date": date(2026, 11, 27), "sku": "k", "category": "c", "quantity": 1}
        | {"unit_price": Decimal("1.00"), "amount": Decimal("1.00")}
        for n in random.Random(5).sample(range(1, 700), 699)
    ]
    small = WriterOptions(batch_rows=32, run_rows=64, row_group_rows=100, merge_window_rows=8)
    spilled = write_rows(rows, str(tmp_path / "s"), lines.schema, sort_by=lines.key, options=small)
    in_memory = WriterOptions(row_group_rows=100)
    direct = write_rows(
        rows, str(tmp_path / "d"), lines.schema, sort_by=lines.key, options=in_memory
    )
    assert _bytes(spilled.files) == _bytes(direct.files)
    with pytest.raises(WriteError, match="duplicate key"):  # the copies land in two runs
        write_rows(
            rows + rows[:1], str(tmp_path / "x"), lines.schema, sort_by=lines.key, options=small
        )


def test_files_roll_over_and_a_rerun_replaces_every_part(tmp_path: Path) -> None:
    orders, folder = DATASETS["orders"], str(tmp_path / "day")
    options = WriterOptions(row_group_rows=100, max_file_bytes=1)  # one row group per file
    report = write_rows(_orders(250), folder, orders.schema, sort_by=orders.key, options=options)
    assert [Path(f).name for f in report.files] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    rerun = write_rows(_orders(10), folder, orders.schema, sort_by=orders.key)
    assert sorted(p.name for p in Path(folder).iterdir()) == ["part-00000.parquet"]
    assert pq.read_table(folder).num_rows == rerun.rows == 10


def test_an_empty_day_still_gets_a_file_with_the_schema(tmp_path: Path) -> None:
    refunds = DATASETS["refunds"]
    report = write_rows([], str(tmp_path / "none"), refunds.schema, sort_by=refunds.key)
    assert (report.rows, len(report.files)) == (0, 1)
    assert pq.read_schema(report.files[0]).equals(refunds.schema, check_metadata=False)


def test_duplicate_or_missing_keys_are_refused_and_nothing_is_left(tmp_path: Path) -> None:
    orders, folder = DATASETS["orders"], tmp_path / "bad"
    with pytest.raises(WriteError, match="duplicate key"):
        write_rows(_orders(3) + _orders(1), str(folder), orders.schema, sort_by=orders.key)
    with pytest.raises(WriteError, match="without 'order_id'"):
        write_rows([{**_orders(1)[0], "order_id": None}], str(folder), orders.schema)
    assert list(folder.iterdir()) == []


def test_open_filesystem_for_local_paths_and_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    fs, path = open_filesystem("file:///tmp/x/../lake")
    assert (fs.type_name, path) == ("local", "/tmp/lake")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5055")
    settings.cache_clear()
    fs, path = open_filesystem("s3://lake/staging/orders/")
    assert (fs.type_name, path) == ("s3", "lake/staging/orders")
    options = fs.__reduce__()[1][0]  # pyarrow exposes its options only this way
    assert (options["endpoint_override"], options["scheme"]) == ("127.0.0.1:5055", "http")
    assert options["force_virtual_addressing"] is False  # path style: what the embedded AWS serves
    with pytest.raises(ValueError, match="unsupported URI"):
        open_filesystem("gs://bucket/x")


# --- point-in-time export against AWS's documented behaviour (the embedded AWS lacks it) -------


class FakeDynamoDB:
    """describe_export answers from a script of statuses; starts are recorded."""

    def __init__(self, *descriptions: dict, refuse_incremental: bool = False) -> None:
        self.descriptions = list(descriptions)
        self.starts: list[dict] = []
        self.refuse_incremental = refuse_incremental

    def describe_table(self, TableName: str) -> dict:  # noqa: N803 (boto3's names)
        return {"Table": {"TableArn": f"arn:aws:dynamodb:us-east-1:1:table/{TableName}"}}

    def export_table_to_point_in_time(self, **arguments: object) -> dict:
        self.starts.append(arguments)
        if self.refuse_incremental and "ExportType" in arguments:
            error = {"Error": {"Code": "ValidationException", "Message": "not supported"}}
            raise ClientError(error, "ExportTableToPointInTime")
        return {"ExportDescription": {"ExportArn": "arn:export/1", "ExportStatus": "IN_PROGRESS"}}

    def describe_export(self, ExportArn: str) -> dict:  # noqa: N803
        return {"ExportDescription": self.descriptions.pop(0)}


class FakeS3:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_object(self, Bucket: str, Key: str) -> dict:  # noqa: N803
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject")
        data = self.objects[Key]
        return {"Body": StreamingBody(io.BytesIO(data), len(data))}


def _gz_items(*items: dict) -> bytes:
    lines = "".join(json.dumps({"Item": serialize_item(i)}) + "\n" for i in items)
    return gzip.compress(lines.encode())


def _aws_export(item_count: int = 3) -> tuple[dict, FakeS3]:
    """An export as AWS lays it out: manifests beside data/ under AWSDynamoDB/<export id>/."""
    base = "exports/facts/run-1/AWSDynamoDB/01700000000000-abcd1234"
    files = [f"{base}/data/aaa.json.gz", f"{base}/data/bbb.json.gz"]
    manifest = "".join(
        json.dumps({"itemCount": 1, "dataFileS3Key": key, "etag": "x"}) + "\n" for key in files
    )
    s3 = FakeS3(
        {
            f"{base}/manifest-files.json": manifest.encode(),
            files[0]: _gz_items({"pk": "a", "sk": "1"}, {"pk": "b", "sk": "1"}),
            files[1]: _gz_items({"pk": "c", "sk": "1", "n": Decimal("1.50")}),
        }
    )
    completed = {
        "ExportArn": "arn:export/1",
        "ExportStatus": "COMPLETED",
        "ExportType": "FULL_EXPORT",
        "ExportManifest": f"{base}/manifest-summary.json",
        "ItemCount": item_count,
    }
    return completed, s3


def test_export_is_polled_with_backoff_and_read_through_its_manifest() -> None:
    completed, s3 = _aws_export()
    running = {"ExportStatus": "IN_PROGRESS"}
    dynamodb = FakeDynamoDB(running, running, running, completed)
    sleeps: list[float] = []
    source = PointInTimeExportSource(
        dynamodb, s3, "facts", "lake", "exports/facts/run-1", sleep=sleeps.append
    )
    items = list(source.items())
    assert [i["pk"] for i in items] == ["a", "b", "c"] and items[2]["n"] == Decimal("1.50")
    assert sleeps == [0.25, 0.5, 1.0]  # short first, doubling (up to a minute)
    assert source.run().from_manifest and len(source.run().data_keys) == 2
    assert dynamodb.starts[0]["ExportFormat"] == "DYNAMODB_JSON"
    assert len(dynamodb.starts) == 1  # run() once, whatever reads the items


def test_a_failed_timed_out_or_short_export_is_an_error() -> None:
    failed = {"ExportStatus": "FAILED", "FailureCode": "S3AccessDenied", "FailureMessage": "no"}
    source = PointInTimeExportSource(FakeDynamoDB(failed), FakeS3({}), "facts", "lake", "p")
    with pytest.raises(ExportError, match="export of facts failed: S3AccessDenied: no"):
        source.run()
    clock = iter(range(0, 10_000, 100))
    running = [{"ExportStatus": "IN_PROGRESS"}] * 50
    slow = PointInTimeExportSource(
        FakeDynamoDB(*running),
        FakeS3({}),
        "facts",
        "lake",
        "p",
        backoff=Backoff(timeout=250),
        sleep=lambda _: None,
        clock=lambda: next(clock),
    )
    with pytest.raises(ExportError, match="not completed after 250 s"):
        slow.run()
    completed, s3 = _aws_export(item_count=4)
    short = PointInTimeExportSource(FakeDynamoDB(completed), s3, "facts", "lake", "p")
    with pytest.raises(ExportError, match="describes 4 items but its 2 data file"):
        list(short.items())


def test_a_refused_incremental_export_falls_back_to_a_full_one() -> None:
    completed, s3 = _aws_export()
    dynamodb = FakeDynamoDB(completed, refuse_incremental=True)
    window = ExportWindow(datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC))
    source = PointInTimeExportSource(
        dynamodb, s3, "facts", "lake", "p", incremental=window, client_token="facts-2026-11-26"
    )
    assert source.run().export_type == "FULL_EXPORT"
    first, second = dynamodb.starts
    assert first["ExportType"] == "INCREMENTAL_EXPORT"
    assert first["IncrementalExportSpecification"]["ExportViewType"] == "NEW_IMAGE"
    assert "ExportType" not in second and second["ClientToken"] == "facts-2026-11-26"


def test_export_kind_reads_the_first_line_only() -> None:
    full = _gz_items({"pk": "a"})
    incremental = gzip.compress(b'{"Metadata": {}, "Keys": {"pk": {"S": "a"}}}\n{broken')
    assert export_kind(io.BytesIO(full)) == "full"
    assert export_kind(io.BytesIO(incremental)) == "incremental"
    assert export_kind(io.BytesIO(gzip.compress(b""))) is None


def test_a_dag_can_import_the_package_sources_and_decoder_without_pyarrow() -> None:
    code = (
        "import sys, storepulse.export, storepulse.export.sources; "
        "print(sorted(m for m in ('pyarrow', 'duckdb') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_daily_social_metrics_one_row_per_channel_of_a_stores_day() -> None:
    day_item = {
        "pk": "S#s-001#DAY#2026",
        "sk": "2026-11-26",
        "revenue": Decimal("100"),
        "social#instagram#mentions": Decimal(4),
        "social#instagram#engagements": Decimal(120),
        "social#x#followers_gained": Decimal(2),
    }
    business = {**day_item, "pk": "ALL#DAY#2026"}  # the business scope: not a store's row

    rows = list(build_rows(DATASETS["daily_social_metrics"], [day_item, business], DAY))

    assert rows == [
        {
            "store_id": "s-001",
            "business_date": DAY,
            "channel": "instagram",
            "mentions": 4,
            "followers_gained": 0,
            "followers_lost": 0,
            "engagements": 120,
        },
        {
            "store_id": "s-001",
            "business_date": DAY,
            "channel": "x",
            "mentions": 0,
            "followers_gained": 2,
            "followers_lost": 0,
            "engagements": 0,
        },
    ]
