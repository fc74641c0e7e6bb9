"""The export scanner's JIT compiled once per checkout, not once per test process."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from storepulse.config import REPO_ROOT


def compile_scanner() -> None:
    """Compile the scanner (~15 s of CPU), or load it from numba's cache (~3 s): the first
    test process compiles under a lock, the others wait and load what it cached."""
    from storepulse.export import scanner

    build = Path(os.environ.get("STOREPULSE_BUILD_DIR") or REPO_ROOT / ".run" / "test-build")
    build.mkdir(parents=True, exist_ok=True)
    with (build / "numba.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        scanner.warm_up()
