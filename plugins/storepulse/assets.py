"""The Airflow Assets of the lake's curated data sets: defined here once, for every DAG.

The export DAG names them as outlets (one event per data set it published), the QuickSight
refresh DAG is scheduled on them. Producer and consumer must build *equal* Asset objects (Airflow
matches on name and URI), which is why both call ``curated_asset`` instead of spelling URIs.

The URI is a logical name for the data set (``s3://storepulse/curated/<dataset>``), not the
bucket: the lake bucket's name depends on the environment, an Asset must not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow.sdk import Asset

from storepulse.export import DATASET_NAMES

CURATED_URI_PREFIX = "s3://storepulse/curated/"
# Emitted by deploy_realtime_stack once the stack is deployed and verified: what schedules
# deploy_quicksight, so QuickSight follows every deploy without a manual trigger.
REALTIME_STACK_URI = "cloudformation://storepulse/realtime"


def curated_uri(dataset: str) -> str:
    """``s3://storepulse/curated/<dataset>``; refuses names that are not curated data sets."""
    if dataset not in DATASET_NAMES:
        raise ValueError(f"{dataset!r} is not a curated data set ({', '.join(DATASET_NAMES)})")
    return f"{CURATED_URI_PREFIX}{dataset}"


def curated_asset(dataset: str) -> Asset:
    """The Asset the export emits when it has published ``dataset``."""
    return Asset(curated_uri(dataset))


def realtime_stack_asset() -> Asset:
    """The Asset of the deployed real-time stack (whatever the environment, like the others)."""
    return Asset(REALTIME_STACK_URI)


def dataset_of_uri(uri: str) -> str | None:
    """The curated data set an asset URI stands for; None for any other asset."""
    name = uri.removeprefix(CURATED_URI_PREFIX).strip("/")
    if not uri.startswith(CURATED_URI_PREFIX) or name not in DATASET_NAMES:
        return None
    return name


def datasets_of_events(events: Mapping[Any, Iterable[Any]]) -> list[str]:
    """The curated data sets that triggering asset events concern, in ``DATASET_NAMES`` order.

    ``events`` is what Airflow passes as ``triggering_asset_events``: asset (or alias) -> its
    events. Each event names its own asset (``event.asset.uri``), which is what counts: an event
    reached through an alias still concerns the asset it was emitted for. Other assets are
    ignored; several events for one data set (a backfill of several days) make it one entry."""
    found = {dataset_of_uri(event.asset.uri) for queued in events.values() for event in queued}
    return [name for name in DATASET_NAMES if name in found]


def requested_datasets(events: Mapping[Any, Iterable[Any]], requested: Iterable[str]) -> list[str]:
    """What a run refreshes: the data sets of its asset events; for a manual run (no events) the
    ``requested`` ones, or every curated data set when none is requested."""
    if events:
        return datasets_of_events(events)
    names = list(requested)
    unknown = sorted(set(names) - set(DATASET_NAMES))
    if unknown:
        raise ValueError(f"not curated data sets: {', '.join(unknown)}")
    return [name for name in DATASET_NAMES if name in names] if names else list(DATASET_NAMES)


__all__ = [
    "CURATED_URI_PREFIX",
    "REALTIME_STACK_URI",
    "curated_asset",
    "curated_uri",
    "dataset_of_uri",
    "datasets_of_events",
    "realtime_stack_asset",
    "requested_datasets",
]
