"""Change capture: DynamoDB Streams records of the lake's tables, as typed Parquet in
``s3://<lake>/changes/`` (``changes``: decoding and rows; ``sink``: the objects; ``compaction``:
the hourly merge into the curated partitions).

This package module imports nothing heavy, so a DAG file may import ``COMPACTED`` at parse time.
"""

from __future__ import annotations

COMPACTED: tuple[str, ...] = (
    "orders",
    "order_lines",
    "refunds",
    "daily_store_metrics",
    "daily_category_sales",
    "daily_product_sales",
)
"""The curated data sets the hourly compaction publishes (``compaction.ITEM_KEYS``, checked by a
test); snapshots (inventory, customers) and social metrics are the nightly export's."""

__all__ = ["COMPACTED"]
