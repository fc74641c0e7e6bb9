"""Conventions every DAG follows (checked for every DAG by ``tests/unit/test_dag_integrity.py``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

OWNER = "data-platform"
AWS_CONN_ID = "aws_default"

# Retries are safe because every task is idempotent (it writes only its own partition or resource).
DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}

# Top-level imports a DAG file must not make: they slow every parse of the file (see README).
HEAVY_MODULES = frozenset(
    {"great_expectations", "pandas", "pyarrow", "duckdb", "polars", "numpy", "numba", "llvmlite"}
)
