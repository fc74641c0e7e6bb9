"""The one way to find the lake bucket: a run's param, else ``STOREPULSE_LAKE_BUCKET``, else the
real-time stack's output. Every DAG, the dashboard and the QuickSight deploy call it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from storepulse.config import Settings, settings

log = logging.getLogger(__name__)

OUTPUT: Final = "LakeBucket"  # the real-time stack's output naming the bucket


def lake_bucket(
    cfn: Any,
    param: str | None = None,
    *,
    outputs: Mapping[str, str] | None = None,
    config: Settings | None = None,
) -> str:
    """``param`` (a DAG run's) if given, else ``config.lake_bucket`` (``STOREPULSE_LAKE_BUCKET``,
    default config: ``storepulse.config.settings()``), else the real-time stack's ``LakeBucket``
    output: ``outputs`` when the caller has read them, else read with ``cfn`` (raises
    ``storepulse.deploy.stack.DeployError`` when the stack is not deployed)."""
    config = config or settings()
    if param or config.lake_bucket:
        source = "param" if param else "STOREPULSE_LAKE_BUCKET"
        bucket = str(param or config.lake_bucket)
    else:
        from storepulse.deploy.stack import deployed_outputs, stack_name

        source = f"the real-time stack's {OUTPUT} output"
        bucket = str((outputs or deployed_outputs(cfn, stack_name(config.env)))[OUTPUT])
    log.info("lake bucket %s (%s)", bucket, source)
    return bucket
