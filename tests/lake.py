"""DuckDB over the lake's ``s3://`` URIs: how the tests read what the export published, the way
a user would read the lake from outside (DuckDB is a test dependency, not a runtime one)."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from storepulse.config import settings
from storepulse.export.writer import _s3_endpoint, _s3_filesystem


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
    _configure_httpfs(connection, _s3_endpoint(endpoint_url), region or settings().region)
    return connection


def _fsspec_s3(endpoint_url: str | None, region: str | None) -> Any:
    from fsspec.implementations.arrow import ArrowFSWrapper

    class S3(ArrowFSWrapper):  # DuckDB routes a URI to the filesystem named by its protocol
        protocol = "s3"

    return S3(_s3_filesystem(endpoint_url, region, None))


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
