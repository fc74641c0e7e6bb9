"""``make env`` from the user's side: a shell with only its variables reaches the embedded AWS
as boto3 and DuckDB (which reads the lake's Parquet with them) see it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from storepulse.config import REPO_ROOT, load_settings
from storepulse_local.platform.client_env import render


def _exports(text: str) -> dict[str, str]:
    """The variables of the printed ``export NAME=value`` lines (comments skipped)."""
    script = f"{text}\nenv -0"
    shell = subprocess.run(["sh", "-c", script], env={}, capture_output=True, check=True)
    pairs = (item.split("=", 1) for item in shell.stdout.decode().split("\0") if "=" in item)
    return {name: value for name, value in pairs if name.startswith(("AWS_", "STOREPULSE_"))}


def test_a_shell_with_make_envs_variables_reaches_the_embedded_aws(embedded_aws, aws_client):
    settings = load_settings({"STOREPULSE_AWS_PORT": str(urlsplit(embedded_aws).port)})
    s3 = aws_client("s3")
    s3.create_bucket(Bucket="storepulse-dev-lake-test")
    table = pa.table({"store_id": ["s-001", "s-002"], "revenue_minor": [1250, 990]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    key = "curated/daily_store_metrics/dt=2026-12-01/part-0.parquet"
    s3.put_object(Bucket="storepulse-dev-lake-test", Key=key, Body=buffer.getvalue())

    variables = _exports(render(settings))
    env = {"PATH": os.environ["PATH"], **variables}
    listing = subprocess.run(
        [sys.executable, "-c", "import boto3; print(boto3.client('s3').list_buckets()['Buckets'])"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    assert "storepulse-dev-lake-test" in listing.stdout

    # DuckDB as tests/lake.py opens it: the endpoint and keys come from these variables alone.
    query = (
        'from tests.lake import duckdb_connection; print(duckdb_connection().execute("SELECT '
        "sum(revenue_minor) FROM 's3://storepulse-dev-lake-test/curated/daily_store_metrics/"
        "*/*.parquet'\").fetchone()[0])"
    )
    duck = subprocess.run(
        [sys.executable, "-c", query], env=env, capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert duck.stdout.strip() == str(sum(table["revenue_minor"].to_pylist())), duck.stderr
