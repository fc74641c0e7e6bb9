"""The one way to find the lake bucket: an explicit name, else the real-time stack's output."""

from __future__ import annotations

from typing import Any, Final

OUTPUT: Final = "LakeBucket"  # the real-time stack's output naming the bucket


def lake_bucket(cfn: Any, env: str, override: str | None = None) -> str:
    """``override`` if given, else the deployed stack's ``LakeBucket`` output (raises
    ``storepulse.deploy.stack.DeployError`` when the stack is not deployed)."""
    if override:
        return override
    from storepulse.deploy.stack import deployed_outputs, stack_name

    return str(deployed_outputs(cfn, stack_name(env))[OUTPUT])
