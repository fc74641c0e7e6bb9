"""Staging and publishing without AWS: staging on the local filesystem (strict, and as-is when
the writer refuses the rows), the publish protocol on an in-memory S3 (copy under new names,
manifest as the commit point, old files deleted last; crashes at every step), readers that
follow the manifest, and the Glue catalog on an in-memory Glue."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from storepulse.config import REPO_ROOT
from storepulse.export.datasets import DATASETS, dataset_path, datasets_of
from storepulse.export.dynamodb_json import serialize_item
from storepulse.export.publish import PublishError, content_token, publish_partition
from storepulse.export.sources import (
    CompletedExport,
    ExportError,
    PointInTimeRecoveryOffError,
    exported_items,
    require_point_in_time_recovery,
)
from storepulse.export.staging import StagedDataset, stage_table
from storepulse.lake.manifest import (
    Manifest,
    ManifestError,
    ManifestReader,
    current_files,
    current_uris,
    manifest_key,
    put_manifest,
    read_manifest,
)
from storepulse.lake.paths import CURATED, export_prefix, run_folder, staging_root
from storepulse.lake.tables import (
    TableError,
    ensure_curated_table,
    glue_database_name,
    glue_table_input,
    hive_type,
)
from storepulse.layout import Table
from tests.lake import write_datasets
from tests.unit.test_export_datasets import order_item

DAY = date(2026, 11, 26)
BUCKET = "lake"
ORDERS = DATASETS["orders"]
FACTS = datasets_of(Table.FACTS)


def _error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "op")


# --- an in-memory S3 ---------------------------------------------------------------------------


class FakeS3:
    """The S3 calls the publisher makes, on a dict; ``log`` records writes in order and
    ``fail_on`` makes one operation raise (a worker dying at that step)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.log: list[tuple[str, str]] = []
        self.fail_on: Callable[[str, str], bool] = lambda op, key: False

    def _write(self, op: str, key: str) -> None:
        if self.fail_on(op, key):
            raise ConnectionError(f"lost during {op} {key}")
        self.log.append((op, key))

    def put(self, key: str, body: bytes) -> None:
        self.objects[key] = body

    def get_paginator(self, name: str) -> Any:
        assert name == "list_objects_v2"
        objects = self.objects

        class Pages:
            def paginate(self, Bucket: str, Prefix: str) -> list[dict[str, Any]]:  # noqa: N803
                contents = [
                    {"Key": k, "ETag": f'"{hashlib.md5(v).hexdigest()}"', "Size": len(v)}
                    for k, v in sorted(objects.items())
                    if k.startswith(Prefix)
                ]
                return [{"Contents": contents}] if contents else [{}]

        return Pages()

    def copy_object(self, Bucket: str, Key: str, CopySource: dict[str, str]) -> None:  # noqa: N803
        self._write("copy", Key)
        self.objects[Key] = self.objects[CopySource["Key"]]

    def put_object(self, Bucket: str, Key: str, Body: bytes, **_: Any) -> None:  # noqa: N803
        self._write("put", Key)
        self.objects[Key] = Body

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        if Key not in self.objects:
            raise _error("NoSuchKey")
        return {"Body": io.BytesIO(self.objects[Key])}

    def delete_objects(self, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        for entry in Delete["Objects"]:
            self._write("delete", entry["Key"])
            self.objects.pop(entry["Key"], None)
        return {}

    def folder(self, prefix: str) -> list[str]:
        return sorted(k.rsplit("/", 1)[-1] for k in self.objects if k.startswith(prefix + "/"))


def staged_files(s3: FakeS3, run: str, contents: list[bytes], rows: int = 3) -> StagedDataset:
    """Files "staged" by a run (their bytes stand for Parquet files)."""
    folder = f"staging/{run}/orders/dt={DAY.isoformat()}"
    for key in [k for k in s3.objects if k.startswith(folder)]:
        del s3.objects[key]
    paths = []
    for number, body in enumerate(contents):
        key = f"{folder}/part-{number:05d}.parquet"
        s3.put(key, body)
        paths.append(f"{BUCKET}/{key}")
    return StagedDataset("orders", rows, sum(map(len, contents)), tuple(paths), rows)


PARTITION = f"{CURATED}/orders/dt={DAY.isoformat()}"


def publish(s3: FakeS3, staged: StagedDataset, run_id: str = "run-1") -> Any:
    clock = lambda: datetime(2026, 11, 27, 1, 0, tzinfo=UTC)  # noqa: E731
    return publish_partition(s3, BUCKET, ORDERS, DAY, staged, run_id=run_id, clock=clock)


def manifest_of(s3: FakeS3) -> Manifest:
    return Manifest.from_json(s3.objects[f"{PARTITION}/_manifest.json"])


# --- publishing --------------------------------------------------------------------------------


def test_a_first_publish_copies_under_new_names_then_commits_the_manifest() -> None:
    s3 = FakeS3()
    report = publish(s3, staged_files(s3, "run-1", [b"one", b"two"]))
    token = report.token
    assert s3.folder(PARTITION) == [
        "_manifest.json",
        f"part-{token}-00000.parquet",
        f"part-{token}-00001.parquet",
    ]
    assert [op for op, _ in s3.log] == ["copy", "copy", "put"]
    manifest = manifest_of(s3)
    assert manifest.files == (f"part-{token}-00000.parquet", f"part-{token}-00001.parquet")
    assert (manifest.rows, manifest.bytes, manifest.schema_version) == (3, 6, 1)
    assert (manifest.run_id, manifest.dataset, manifest.day) == ("run-1", "orders", "2026-11-26")
    assert (report.changed, report.removed, report.rows) == (True, 0, 3)
    assert s3.objects[f"{PARTITION}/part-{token}-00001.parquet"] == b"two"


def test_republishing_the_same_content_writes_nothing() -> None:
    s3 = FakeS3()
    first = publish(s3, staged_files(s3, "run-1", [b"one"]))
    before = dict(s3.objects)
    s3.log.clear()
    again = publish(s3, staged_files(s3, "run-2", [b"one"]), run_id="run-2")
    assert (again.changed, again.token, again.files) == (False, first.token, first.files)
    assert s3.log == []
    assert {k: v for k, v in s3.objects.items() if k.startswith(CURATED)} == {
        k: v for k, v in before.items() if k.startswith(CURATED)
    }
    assert manifest_of(s3).run_id == "run-1"  # the partition still describes its publish


def test_new_content_replaces_the_old_files_only_after_the_manifest() -> None:
    s3 = FakeS3()
    old = publish(s3, staged_files(s3, "run-1", [b"one", b"two"]))
    s3.log.clear()
    new = publish(s3, staged_files(s3, "run-2", [b"three"], rows=4), run_id="run-2")
    assert new.token != old.token and (new.changed, new.removed, new.rows) == (True, 2, 4)
    ops = [op for op, _ in s3.log]
    assert ops == ["copy", "put", "delete", "delete"]  # deletes come last
    assert s3.folder(PARTITION) == ["_manifest.json", f"part-{new.token}-00000.parquet"]


@pytest.mark.parametrize("dies_at", ["copy", "put", "delete"])
def test_a_publish_that_dies_at_any_step_is_completed_by_the_rerun(dies_at: str) -> None:
    s3 = FakeS3()
    fs = MemoryReader(s3)
    old = publish(s3, staged_files(s3, "run-1", [b"one", b"two"]))
    staged = staged_files(s3, "run-2", [b"three", b"four"], rows=4)
    s3.fail_on = lambda op, key: op == dies_at and (op != "copy" or key.endswith("00001.parquet"))
    with pytest.raises(ConnectionError):
        publish(s3, staged, run_id="run-2")
    seen = fs.current()
    if dies_at == "delete":  # committed: readers already see the new files
        assert seen == [f"part-{content_token_of(s3, staged)}-{n:05d}.parquet" for n in (0, 1)]
    else:  # not committed: readers still see exactly the previous files
        assert seen == [name.rsplit("/", 1)[-1] for name in old.files]
    s3.fail_on = lambda op, key: False
    done = publish(s3, staged, run_id="run-2")
    assert fs.current() == [name.rsplit("/", 1)[-1] for name in done.files]
    assert s3.folder(PARTITION) == ["_manifest.json", *fs.current()]
    assert manifest_of(s3).rows == 4


def content_token_of(s3: FakeS3, staged: StagedDataset) -> str:
    folder = staged.files[0].split("/", 1)[1].rsplit("/", 1)[0]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=folder + "/")

    class Obj:
        def __init__(self, entry: dict[str, Any]) -> None:
            self.name, self.etag = entry["Key"].rsplit("/", 1)[-1], entry["ETag"].strip('"')
            self.size = entry["Size"]

    return content_token(Obj(e) for e in pages[0]["Contents"])


class MemoryReader:
    """What a reader that follows the manifest sees."""

    def __init__(self, s3: FakeS3) -> None:
        self.s3 = s3

    def current(self) -> list[str]:
        raw = self.s3.objects.get(f"{PARTITION}/_manifest.json")
        return list(Manifest.from_json(raw).files) if raw else []


def test_what_cannot_be_published_is_refused() -> None:
    s3 = FakeS3()
    staged = staged_files(s3, "run-1", [b"one"])
    lenient = StagedDataset("orders", 1, 3, staged.files, 1, strict=False)
    with pytest.raises(PublishError, match="cannot be published"):
        publish(s3, lenient)
    s3.put(staged.files[0].split("/", 1)[1].replace("00000", "00001"), b"stray")
    with pytest.raises(PublishError, match="restage the day"):
        publish(s3, staged)
    with pytest.raises(PublishError, match="nothing staged"):
        publish(s3, StagedDataset("orders", 0, 0, (), 0))
    assert not [k for k in s3.objects if k.startswith(CURATED)]


def test_content_token_depends_on_bytes_only() -> None:
    s3 = FakeS3()
    a = content_token_of(s3, staged_files(s3, "a", [b"x", b"y"]))
    b = content_token_of(s3, staged_files(s3, "b", [b"x", b"y"]))
    c = content_token_of(s3, staged_files(s3, "c", [b"x", b"z"]))
    assert a == b != c and len(a) == 16


# --- readers -----------------------------------------------------------------------------------


def test_readers_follow_the_manifest_and_fall_back_to_listing(tmp_path: Path) -> None:
    fs, root = pafs.LocalFileSystem(), str(tmp_path / "curated")
    folder = tmp_path / "curated" / "orders" / "dt=2026-11-26"
    folder.mkdir(parents=True)
    for name in ("part-aaaa-00000.parquet", "part-bbbb-00000.parquet"):
        (folder / name).write_bytes(b"x")
    assert read_manifest(fs, root, "orders", DAY) is None
    assert [Path(p).name for p in current_files(fs, root, ORDERS, DAY)] == [
        "part-aaaa-00000.parquet",
        "part-bbbb-00000.parquet",
    ]
    manifest = Manifest(
        "orders", "2026-11-26", 1, "r", "bbbb", 3, 1, ("part-bbbb-00000.parquet",), "t"
    )
    (folder / "_manifest.json").write_bytes(manifest.to_json())
    assert read_manifest(fs, root, "orders", DAY) == manifest
    assert current_files(fs, root, "orders", DAY) == [f"{folder}/part-bbbb-00000.parquet"]
    assert current_uris(fs, root, "orders", [DAY, date(2026, 11, 27)]) == [
        f"{folder}/part-bbbb-00000.parquet"
    ]
    with pytest.raises(ManifestError, match="not a partition manifest"):
        Manifest.from_json(json.dumps({"format": "other"}))


def test_the_listing_reader_follows_the_manifest_and_reads_it_once_per_etag() -> None:
    """What the dashboard's history reads: a range's listing, the manifests' files only."""
    s3 = FakeS3()
    published, legacy = "curated/orders/dt=2026-11-26", "curated/orders/dt=2026-11-27"
    manifest = Manifest("orders", "2026-11-26", 1, "r", "b", 3, 1, ("part-b-00000.parquet",), "t")
    put_manifest(s3, BUCKET, published, manifest)
    listed = [
        f"{published}/part-a-00000.parquet",  # the previous publish, being deleted
        f"{published}/part-b-00000.parquet",
        f"{legacy}/part-00000.parquet",  # published before manifests: read whole
    ]
    gets: list[str] = []
    get_object = s3.get_object
    s3.get_object = lambda **kw: gets.append(kw["Key"]) or get_object(**kw)  # type: ignore[method-assign]
    reader = ManifestReader(s3, BUCKET)

    for _ in range(2):
        current = reader.current(listed, {published: "etag-1"}, key=lambda k: k)
        assert current == [f"{published}/part-b-00000.parquet", f"{legacy}/part-00000.parquet"]
    assert gets == [manifest_key(published)]  # cached while its ETag is the same


# --- staging -----------------------------------------------------------------------------------


def facts() -> list[dict[str, Any]]:
    return [order_item("o-2"), order_item("o-1"), order_item("o-3", business_date="2026-11-25")]


def test_staging_writes_what_write_datasets_writes_and_counts_the_source(tmp_path: Path) -> None:
    fs = pafs.LocalFileSystem()
    staged = stage_table(facts, FACTS, DAY, str(tmp_path / "staged"), fs)
    reference = write_datasets(facts(), FACTS, DAY, str(tmp_path / "reference"))
    for dataset in FACTS:
        ours, theirs = staged[dataset.name], reference[dataset.name]
        assert [Path(f).read_bytes() for f in ours.files] == [
            Path(f).read_bytes() for f in theirs.files
        ], dataset.name
        assert ours.rows == theirs.rows == ours.source_rows, dataset.name
        assert (ours.strict, ours.rejected_count, ours.items_read) == (True, 0, 3)
        assert ours.files[0].endswith(dataset_path("", dataset, DAY) + "/part-00000.parquet"), (
            dataset.name
        )
    assert (staged["orders"].rows, staged["order_lines"].rows) == (2, 4)
    assert (
        StagedDataset.from_dict(json.loads(json.dumps(staged["orders"].to_dict())))
        == staged["orders"]
    )


def test_rows_the_writer_refuses_are_staged_as_is_for_the_audit(tmp_path: Path) -> None:
    items = [
        order_item("o-1"),
        order_item("o-1") | {"pk": "ORDER#o-1-resent"},  # the same order id twice
        {k: v for k, v in order_item("o-2").items() if k != "order_id"},  # a missing key
        order_item("o-3", total=Decimal("1.005")),  # cannot become a row at all
    ]
    fs = pafs.LocalFileSystem()
    staged = stage_table(lambda: items, FACTS, DAY, str(tmp_path), fs)
    orders = staged["orders"]
    assert (orders.strict, orders.rows, orders.source_rows, orders.rejected_count) == (
        False,
        3,
        4,
        1,
    )
    assert "ORDER#o-3/ORDER" in orders.rejected[0] and "2 decimal places" in orders.rejected[0]
    table = pq.read_table(orders.files[0])
    assert sorted(table["order_id"].to_pylist(), key=str) == [None, "o-1", "o-1"]
    assert all(f.nullable for f in table.schema)  # relaxed, so the nulls can be seen
    assert table.schema.metadata[b"storepulse.schema_version"] == b"1"
    lines = staged["order_lines"]  # o-3's lines are fine: only its total cannot be a row
    assert (lines.strict, lines.rows, lines.source_rows, lines.rejected_count) == (False, 8, 8, 0)


# --- point-in-time exports ---------------------------------------------------------------------


def test_exported_items_are_read_back_and_counted() -> None:
    s3 = FakeS3()
    lines = [json.dumps({"Item": serialize_item(order_item(f"o-{n}"))}) for n in range(3)]
    s3.put("exp/data/a.json.gz", gzip.compress(("\n".join(lines) + "\n").encode()))
    export = CompletedExport("arn", BUCKET, "exp", "FULL_EXPORT", 3, ("exp/data/a.json.gz",), False)
    assert [i["order_id"] for i in exported_items(s3, export)] == ["o-0", "o-1", "o-2"]
    short = CompletedExport("arn", BUCKET, "exp", "FULL_EXPORT", 4, export.data_keys, False)
    with pytest.raises(ExportError, match="describes 4 items"):
        list(exported_items(s3, short))


def test_the_export_refuses_a_table_without_pitr_and_leaves_it_as_it_is() -> None:
    """The template owns the setting: the export checks it, and never switches it on."""

    class Dynamo:
        def __init__(self, description: dict[str, Any]) -> None:
            self.description, self.updates = description, 0

        def describe_continuous_backups(self, TableName: str) -> dict[str, Any]:  # noqa: N803
            return {"ContinuousBackupsDescription": self.description}

        def update_continuous_backups(self, **kwargs: Any) -> None:
            self.updates += 1

    on = Dynamo({"PointInTimeRecoveryDescription": {"PointInTimeRecoveryStatus": "ENABLED"}})
    require_point_in_time_recovery(on, "facts")
    for off in (
        Dynamo({"PointInTimeRecoveryDescription": {"PointInTimeRecoveryStatus": "DISABLED"}}),
        Dynamo({"ContinuousBackupsStatus": "ENABLED"}),  # no description at all
    ):
        with pytest.raises(PointInTimeRecoveryOffError) as raised:
            require_point_in_time_recovery(off, "facts")
        assert "point-in-time recovery of facts is DISABLED" in str(raised.value)
        assert "redeploy the stack" in str(raised.value) and "strategy scan" in str(raised.value)
        assert off.updates == 0
    assert on.updates == 0


def test_names_are_safe_and_unique_per_try() -> None:
    run = "scheduled__2026-11-27T00:00:00+00:00"
    assert run_folder(run) == "scheduled__2026-11-27T00_00_00_00_00"
    assert staging_root("lake", run) == "s3://lake/staging/scheduled__2026-11-27T00_00_00_00_00"
    assert export_prefix(run, "facts", 2).endswith("/_exports/facts/try-2")
    assert glue_database_name("dev") == "storepulse_dev_curated"
    assert glue_database_name("eu-prod") == "storepulse_eu_prod_curated"


# --- Glue --------------------------------------------------------------------------------------


def test_hive_types_of_every_curated_column() -> None:
    types = {(name, f.name): hive_type(f.type) for name, d in DATASETS.items() for f in d.schema}
    assert types[("orders", "total")] == "decimal(18,2)"
    assert types[("orders", "occurred_at")] == "timestamp"
    assert types[("orders", "business_date")] == "date"
    assert types[("orders", "units")] == "bigint"
    assert types[("orders", "line_count")] == "int"
    assert types[("orders", "order_id")] == "string"
    assert types[("daily_store_metrics", "conversion_rate")] == "decimal(12,6)"
    with pytest.raises(TableError, match="no Hive type"):
        hive_type(pa.list_(pa.string()))


class FakeGlue:
    """Databases, tables and partitions in dicts, with Glue's error codes."""

    def __init__(self) -> None:
        self.databases: set[str] = set()
        self.tables: dict[str, dict[str, Any]] = {}
        self.partitions: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []

    def get_database(self, Name: str) -> dict[str, Any]:  # noqa: N803
        if Name not in self.databases:
            raise _error("EntityNotFoundException")
        return {"Database": {"Name": Name}}

    def create_database(self, DatabaseInput: dict[str, Any]) -> None:  # noqa: N803
        self.calls.append("create_database")
        self.databases.add(DatabaseInput["Name"])

    def get_table(self, DatabaseName: str, Name: str) -> dict[str, Any]:  # noqa: N803
        if Name not in self.tables:
            raise _error("EntityNotFoundException")
        return {"Table": json.loads(json.dumps(self.tables[Name]))}

    def create_table(self, DatabaseName: str, TableInput: dict[str, Any]) -> None:  # noqa: N803
        self.calls.append("create_table")
        self.tables[TableInput["Name"]] = TableInput

    def update_table(self, DatabaseName: str, TableInput: dict[str, Any]) -> None:  # noqa: N803
        self.calls.append("update_table")
        self.tables[TableInput["Name"]] = TableInput

    def create_partition(self, DatabaseName: str, TableName: str, PartitionInput: Any) -> None:  # noqa: N803
        self.calls.append("create_partition")
        self.partitions[(TableName, PartitionInput["Values"][0])] = PartitionInput


def test_glue_database_and_projected_table_are_created_then_left_alone() -> None:
    glue = FakeGlue()
    first = ensure_curated_table(glue, "storepulse_dev_curated", ORDERS, BUCKET)
    assert first == {"database": "created", "table": "created"}
    again = ensure_curated_table(glue, "storepulse_dev_curated", ORDERS, BUCKET)
    assert again == {"database": "unchanged", "table": "unchanged"}
    table = glue.tables["orders"]
    assert table["Parameters"]["storepulse.schema_version"] == "1"
    assert table["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    assert table["StorageDescriptor"]["Location"] == "s3://lake/curated/orders/"
    # Days are projected from their dt= folders: nothing is registered per day.
    assert table["Parameters"]["projection.enabled"] == "true"
    assert table["Parameters"]["storage.location.template"] == (
        "s3://lake/curated/orders/dt=${dt}/"
    )
    assert glue.partitions == {} and "create_partition" not in glue.calls

    glue.tables["orders"]["Parameters"] |= {
        "storepulse.schema_version": "0",  # an older version
        "numRows": "12",  # set by someone else (statistics)
    }
    assert ensure_curated_table(glue, "storepulse_dev_curated", ORDERS, BUCKET)["table"] == (
        "updated"
    )
    updated = glue.tables["orders"]
    assert updated["Parameters"]["storepulse.schema_version"] == "1"
    assert updated["Parameters"]["numRows"] == "12"
    wanted = glue_table_input(ORDERS, BUCKET)
    assert {k: v for k, v in updated.items() if k != "Parameters"} == {
        k: v for k, v in wanted.items() if k != "Parameters"
    }


def test_the_export_task_fails_without_retry_when_pitr_is_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The DAG's export task: a table without PITR fails the task at once (a retry would find
    it off again), and nothing asks the table to change."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import AirflowFailException

    dags = DagBag(dag_folder=str(REPO_ROOT / "dags" / "nightly_export.py"))
    callable_ = dags.dags["nightly_export"].get_task("export_facts").python_callable
    calls: list[str] = []

    class Dynamo:
        def describe_continuous_backups(self, TableName: str) -> dict[str, Any]:  # noqa: N803
            calls.append(f"describe {TableName}")
            status = {"PointInTimeRecoveryStatus": "DISABLED"}
            return {"ContinuousBackupsDescription": {"PointInTimeRecoveryDescription": status}}

        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the task must not call {name}")

    monkeypatch.setitem(callable_.__globals__, "aws_client", lambda service: Dynamo())
    resolved = {"strategy": "pitr", "tables": {"facts": "dev-facts"}, "run_id": "r", "bucket": "b"}
    with pytest.raises(AirflowFailException, match="point-in-time recovery of dev-facts"):
        callable_(resolved, "facts")
    assert calls == ["describe dev-facts"]
