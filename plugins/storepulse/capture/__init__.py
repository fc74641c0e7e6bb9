"""Change capture: DynamoDB Streams records of the lake's tables, as typed Parquet in
``s3://<lake>/changes/`` (``changes``: decoding and rows; ``sink``: the objects; ``compaction``:
the hourly merge into the curated partitions).

This package module imports nothing heavy, so a DAG file may import ``COMPACTED`` at parse time.
"""

from __future__ import annotations

from storepulse.export import DATASET_NAMES

NIGHTLY_ONLY: tuple[str, ...] = ("daily_social_metrics", "inventory_snapshot", "customers")
"""Published by the nightly export alone: snapshots (inventory, customers) and social metrics."""

COMPACTED: tuple[str, ...] = tuple(name for name in DATASET_NAMES if name not in NIGHTLY_ONLY)
"""The curated data sets the hourly compaction publishes (``compaction.ITEM_KEYS``, checked by a
test)."""
