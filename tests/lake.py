"""DuckDB over the lake's ``s3://`` URIs: how the tests read what the export published, the way
a user would read the lake from outside (DuckDB is a test dependency, not a runtime one); and the
writer driven directly (``write_rows``, ``write_datasets``), for tests that need Parquet files
without a staging run."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

from storepulse.config import settings
from storepulse.export.datasets import Dataset, Row, sum_rows
from storepulse.export.writer import DatasetWriter, WriteReport, WriterOptions, open_writers
from storepulse.lake.filesystem import open_filesystem, s3_endpoint, s3_filesystem


def duckdb_connection(*, endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A DuckDB connection that reads ``s3://`` URIs of the lake (``read_parquet``).

    DuckDB's own S3 support is the ``httpfs`` extension, which DuckDB downloads on first use; where
    it is not installed (an offline machine), S3 is served to DuckDB by pyarrow's S3 filesystem
    (the one the writer uses) through fsspec. Either way the same SQL works."""
    import duckdb

    connection = duckdb.connect()
    try:
        connection.execute("LOAD httpfs")
    except duckdb.Error:
        connection.register_filesystem(_fsspec_s3(endpoint_url, region))
        return connection
    _configure_httpfs(connection, s3_endpoint(endpoint_url), region or settings().region)
    return connection


def _fsspec_s3(endpoint_url: str | None, region: str | None) -> Any:
    from fsspec.implementations.arrow import ArrowFSWrapper

    class S3(ArrowFSWrapper):  # DuckDB routes a URI to the filesystem named by its protocol
        protocol = "s3"

    return S3(s3_filesystem(endpoint_url, region))


def _configure_httpfs(connection: Any, endpoint: str | None, region: str) -> None:
    settings_sql = {"s3_region": region}
    if endpoint:
        parts = urlsplit(endpoint)
        settings_sql |= {
            "s3_endpoint": parts.netloc,
            "s3_use_ssl": "true" if parts.scheme == "https" else "false",
            "s3_url_style": "path",
        }
    for variable, setting in (
        ("AWS_ACCESS_KEY_ID", "s3_access_key_id"),
        ("AWS_SECRET_ACCESS_KEY", "s3_secret_access_key"),
        ("AWS_SESSION_TOKEN", "s3_session_token"),
    ):
        if os.environ.get(variable):
            settings_sql[setting] = os.environ[variable]
    for name, value in settings_sql.items():
        connection.execute(f"SET {name} = '{_sql_text(value)}'")  # SET takes no parameters


def _sql_text(value: str) -> str:
    return value.replace("'", "''")


def write_rows(
    rows: Iterable[Mapping[str, Any]],
    uri: str,
    schema: pa.Schema,
    *,
    sort_by: Sequence[str] = (),
    options: WriterOptions | None = None,
    filesystem: Any = None,
) -> WriteReport:
    """Write ``rows`` as the Parquet files of folder ``uri`` (replacing earlier parts)."""
    with DatasetWriter(
        uri, schema, sort_by=sort_by, options=options, filesystem=filesystem
    ) as writer:
        writer.extend(rows)
        return writer.close()


def write_datasets(
    items: Iterable[Mapping[str, Any]],
    datasets: Sequence[Dataset],
    day: date,
    root: str,
    *,
    options: WriterOptions | None = None,
) -> dict[str, WriteReport]:
    """One pass over a table's items writes the day's partition of every dataset it feeds, to
    ``dataset_path(root, dataset, day)``. ``root`` is a URI (``s3://bucket/staging``)."""
    fs, root_path = open_filesystem(root)
    summed: dict[str, list[Row]] = {d.name: [] for d in datasets if d.summed}
    with ExitStack() as stack:
        writers = open_writers(stack, root_path, datasets, day, options=options, filesystem=fs)
        for item in items:
            for d in datasets:
                if not d.selects(item, day):
                    continue
                if d.summed:
                    summed[d.name].extend(d.rows(item, day))
                else:
                    writers[d.name].extend(d.rows(item, day))
        for d in datasets:
            if d.summed:
                writers[d.name].extend(sum_rows(summed[d.name], d.key, d.summed))
        return {name: writer.close() for name, writer in writers.items()}
