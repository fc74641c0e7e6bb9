"""The curated data sets as tables: their columns in Athena (Glue) types and their Glue table.

The Arrow schemas of ``storepulse.export.datasets`` are the single declaration of a data set's
columns; everything else derives from them here: the Glue table Athena reads (the export ensures
it when it publishes, the QuickSight deploy when it deploys: one definition, whoever comes first)
and the QuickSight data sets' columns (:func:`quicksight_declaration`, merged into
``infra/quicksight/datasets.json`` when it is loaded).

One Glue strategy: **partition projection** on ``dt`` (``yyyy-MM-dd`` from 2024-01-01 to NOW),
so a day is readable by Athena as soon as its files exist, with no partition to register and
nothing to repair after a failed run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from storepulse.lake.paths import CURATED, PARTITION_KEY, table_prefix

if TYPE_CHECKING:
    import pyarrow as pa

    from storepulse.export.datasets import Dataset

PARQUET_STORAGE: Final = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        "Parameters": {"serialization.format": "1"},
    },
}
SCHEMA_VERSION_PARAMETER: Final = "storepulse.schema_version"
PROJECTION_START: Final = "2024-01-01"


class TableError(ValueError):
    """A schema that has no table form (an Arrow type Athena cannot read)."""


def glue_database_name(env: str) -> str:
    """``storepulse_<env>_curated`` (Glue names: lowercase letters, digits, underscores)."""
    return f"storepulse_{re.sub(r'[^A-Za-z0-9._-]+', '_', env.replace('-', '_')).lower()}_{CURATED}"


def hive_type(type_: pa.DataType) -> str:
    """The Hive type Athena reads an Arrow type as (the types the curated schemas use)."""
    import pyarrow as pa

    checks: list[tuple[Callable[[pa.DataType], bool], str]] = [
        (pa.types.is_string, "string"),
        (pa.types.is_large_string, "string"),
        (pa.types.is_int64, "bigint"),
        (pa.types.is_int32, "int"),
        (pa.types.is_int16, "smallint"),
        (pa.types.is_int8, "tinyint"),
        (pa.types.is_boolean, "boolean"),
        (pa.types.is_float64, "double"),
        (pa.types.is_float32, "float"),
        (pa.types.is_date32, "date"),
        (pa.types.is_timestamp, "timestamp"),
    ]
    if pa.types.is_decimal(type_):
        return f"decimal({type_.precision},{type_.scale})"
    for check, name in checks:
        if check(type_):
            return name
    raise TableError(f"no Hive type for Arrow type {type_}")


def columns(dataset: Dataset) -> list[dict[str, str]]:
    """``[{"Name", "Type"}]``: the data set's columns as Glue declares them."""
    return [{"Name": f.name, "Type": hive_type(f.type)} for f in dataset.schema]


def quicksight_declaration(name: str) -> dict[str, Any] | None:
    """What a QuickSight data set over curated ``name`` reads (its table, folder, partition key
    and columns, in the declarations file's terms); None when ``name`` is no curated data set."""
    from storepulse.export.datasets import DATASETS

    dataset = DATASETS.get(name)
    if dataset is None:
        return None
    return {
        "table": dataset.name,
        "s3_prefix": table_prefix(dataset.name),
        "partition_key": PARTITION_KEY,
        "columns": [{"name": c["Name"], "type": c["Type"]} for c in columns(dataset)],
    }


def table_input(
    name: str,
    description: str,
    table_columns: Sequence[Mapping[str, str]],
    location: str,
    *,
    partition_key: str | None = None,
    parameters: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Glue ``TableInput`` over Parquet at ``location`` (a folder URI ending with ``/``);
    with ``partition_key``, its ``<key>=yyyy-MM-dd`` folders are projected."""
    wanted = {"classification": "parquet", "EXTERNAL": "TRUE", **(parameters or {})}
    keys = []
    if partition_key:
        keys = [{"Name": partition_key, "Type": "string"}]
        wanted |= {
            "projection.enabled": "true",
            f"projection.{partition_key}.type": "date",
            f"projection.{partition_key}.format": "yyyy-MM-dd",
            f"projection.{partition_key}.range": f"{PROJECTION_START},NOW",
            f"projection.{partition_key}.interval": "1",
            f"projection.{partition_key}.interval.unit": "DAYS",
            "storage.location.template": f"{location}{partition_key}=${{{partition_key}}}/",
        }
    return {
        "Name": name,
        "Description": description,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": wanted,
        "PartitionKeys": keys,
        "StorageDescriptor": {
            "Columns": [dict(c) for c in table_columns],
            "Location": location,
            "Compressed": True,
            **PARQUET_STORAGE,
        },
    }


def glue_table_input(dataset: Dataset, bucket: str) -> dict[str, Any]:
    """``TableInput`` of a curated data set's table over ``s3://<bucket>/curated/<name>/``."""
    return table_input(
        dataset.name,
        f"StorePulse curated data set {dataset.name}: {dataset.feeds_from}",
        columns(dataset),
        f"s3://{bucket}/{table_prefix(dataset.name)}",
        partition_key=PARTITION_KEY,
        parameters={
            "parquet.compression": "ZSTD",
            SCHEMA_VERSION_PARAMETER: str(dataset.schema_version),
        },
    )


# --- ensuring them -----------------------------------------------------------------------------


def _is(exc: ClientError, code: str) -> bool:
    return bool(exc.response["Error"]["Code"] == code)


def _same(current: Mapping[str, Any], wanted: Mapping[str, Any], keys: Sequence[str]) -> bool:
    return all(current.get(k) == wanted.get(k) for k in keys)


def ensure_database(glue: Any, database: str) -> str:
    """Create the Glue database unless it exists: ``created`` or ``unchanged``."""
    try:
        glue.get_database(Name=database)
        return "unchanged"
    except ClientError as exc:
        if not _is(exc, "EntityNotFoundException"):
            raise
    try:
        glue.create_database(
            DatabaseInput={"Name": database, "Description": "StorePulse curated lake (Parquet)"}
        )
    except ClientError as exc:  # another task created it meanwhile
        if not _is(exc, "AlreadyExistsException"):
            raise
        return "unchanged"
    return "created"


def ensure_table(glue: Any, database: str, wanted: Mapping[str, Any]) -> str:
    """Create the table ``wanted`` (a ``TableInput``), or update it where it differs:
    ``created``, ``updated`` or ``unchanged``. Parameters set by others (statistics) stay."""
    try:
        table = glue.get_table(DatabaseName=database, Name=wanted["Name"])["Table"]
    except ClientError as exc:
        if not _is(exc, "EntityNotFoundException"):
            raise
        glue.create_table(DatabaseName=database, TableInput=dict(wanted))
        return "created"
    storage_keys = ("Columns", "Location", "InputFormat", "OutputFormat", "SerdeInfo")
    same = (
        _same(table.get("StorageDescriptor", {}), wanted["StorageDescriptor"], storage_keys)
        and _same(table, wanted, ("PartitionKeys", "TableType"))
        and _same(table.get("Parameters", {}), wanted["Parameters"], list(wanted["Parameters"]))
    )
    if same:
        return "unchanged"
    parameters = {**table.get("Parameters", {}), **wanted["Parameters"]}
    glue.update_table(DatabaseName=database, TableInput={**wanted, "Parameters": parameters})
    return "updated"


def ensure_curated_table(glue: Any, database: str, dataset: Dataset, bucket: str) -> dict[str, str]:
    """The database and the data set's table, so Athena and QuickSight find every published
    day (projected: nothing per day). Returns what happened to each."""
    return {
        "database": ensure_database(glue, database),
        "table": ensure_table(glue, database, glue_table_input(dataset, bucket)),
    }
