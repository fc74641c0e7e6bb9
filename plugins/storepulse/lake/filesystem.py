"""The one pyarrow filesystem factory of the lake: a local path or an ``s3://`` URI.

S3 follows ``endpoint_url``, else ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` when set (botocore's
own variables, unset on real AWS, read by ``storepulse.config``), with path-style addressing as a
non-AWS endpoint serves; credentials are given (an Airflow connection's) or come from the default
AWS chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from storepulse.config import settings

CONNECT_TIMEOUT_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 60.0
MAX_ATTEMPTS = 5


def s3_endpoint(endpoint_url: str | None = None) -> str | None:
    return endpoint_url or settings().s3_endpoint_url


def s3_filesystem(
    endpoint_url: str | None = None,
    region: str | None = None,
    credentials: Mapping[str, str | None] | None = None,
) -> Any:
    """pyarrow's ``S3FileSystem`` (imported here: pyarrow is heavy)."""
    import pyarrow.fs as pafs

    options: dict[str, Any] = {
        "region": region or settings().region,
        # The SDK's 3 s default fails a read the moment a busy endpoint stalls (a loaded
        # machine, a throttled prefix): wait longer, and retry as boto3's standard mode does.
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "request_timeout": REQUEST_TIMEOUT_SECONDS,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=MAX_ATTEMPTS),
    }
    if endpoint := s3_endpoint(endpoint_url):
        parts = urlsplit(endpoint)
        options |= {
            "endpoint_override": parts.netloc or parts.path,
            "scheme": parts.scheme or "https",
            "force_virtual_addressing": False,  # path style: what a local endpoint serves
        }
    if credentials:  # e.g. from an Airflow connection; default: the AWS credential chain
        options |= {
            "access_key": credentials["access_key"],
            "secret_key": credentials["secret_key"],
            "session_token": credentials.get("session_token"),
        }
    return pafs.S3FileSystem(**options)


def open_filesystem(
    uri: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    credentials: Mapping[str, str | None] | None = None,
) -> tuple[Any, str]:
    """(filesystem, path) for ``s3://bucket/key``, ``file:///abs/path`` or a local path."""
    import pyarrow.fs as pafs

    scheme, separator, rest = uri.partition("://")
    if not separator:
        return pafs.LocalFileSystem(), str(Path(uri).resolve())
    if scheme == "s3":
        if not rest.strip("/"):
            raise ValueError(f"no bucket in {uri!r}")
        return s3_filesystem(endpoint_url, region, credentials), rest.rstrip("/")
    if scheme == "file":
        return pafs.LocalFileSystem(), str(Path(urlsplit(uri).path).resolve())
    raise ValueError(f"unsupported URI {uri!r}: use a local path, file:// or s3://")
