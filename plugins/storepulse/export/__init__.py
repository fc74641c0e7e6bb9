"""The nightly export: DynamoDB items to audited, partitioned Parquet in the lake.

- ``storepulse.export.sources``: where items come from (point-in-time export to S3, parallel
  scan, or a ``gsi1`` query for one day's orders) and the PITR check; no pyarrow.
- ``storepulse.export.dynamodb_json``: DynamoDB JSON to Python values, streamed; no pyarrow.
- ``storepulse.export.datasets``: the versioned Arrow schemas and row builders (``DATASETS``).
- ``storepulse.export.writer``: rows to Parquet files, locally or on S3 (filesystems:
  ``storepulse.lake.filesystem``).
- ``storepulse.export.columnar``: a native export's files to rows in Arrow batches (vectorized;
  ``staging.stage_export`` uses it and falls back to the per-item path).
- ``storepulse.export.scanner``: the compiled (numba) scanner of export lines ``columnar``
  reads large exports with; pyarrow's parser takes what it refuses.
- ``storepulse.export.staging``: one table's items to the day's staged partitions (write).
- ``storepulse.export.quality``: the audit of a staging (Great Expectations).
- ``storepulse.export.publish``: an audited staging to the curated partition (publish).
- ``storepulse.export.rollup``: the yearly rollup of ``daily_store_metrics`` for cold history.

Where it all goes in the lake, the manifests and the Glue tables: ``storepulse.lake``.

This package module imports nothing heavy, so a DAG file may import it (and ``DATASET_NAMES``)
at parse time; import the submodules that need pyarrow inside tasks.
"""

from __future__ import annotations

DATASET_NAMES: tuple[str, ...] = (
    "orders",
    "order_lines",
    "refunds",
    "daily_store_metrics",
    "daily_category_sales",
    "daily_product_sales",
    "daily_social_metrics",
    "inventory_snapshot",
    "customers",
)
"""Names of ``datasets.DATASETS`` (checked by a test), for DAGs that map a task per dataset."""

__all__ = ["DATASET_NAMES"]
