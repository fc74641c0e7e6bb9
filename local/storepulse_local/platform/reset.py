"""``make reset``: delete the local state (the state dir), after a confirmation.

    python -m storepulse_local.platform.reset [--force]

The embedded AWS's snapshot, the runtime's checkpoints, Airflow's database and secrets and the
logs all live there and only agree with each other, so they go together. Refused while the
platform runs (its processes would write it again).
"""

from __future__ import annotations

import argparse
import shutil
import sys

from storepulse.config import load_settings
from storepulse_local.platform.__main__ import _read_state
from storepulse_local.platform.processes import pid_alive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="do not ask (FORCE=1 in make)")
    args = parser.parse_args(argv)
    settings = load_settings()
    state_dir = settings.state_dir
    running = _read_state(settings)
    if running and pid_alive(running["supervisor"]):
        print("the platform is running: stop it with `make down` first", file=sys.stderr)
        return 1
    if not state_dir.exists():
        print(f"nothing to reset: {state_dir} does not exist")
        return 0
    if not args.force and not _confirmed(state_dir):
        print("not reset")
        return 1
    shutil.rmtree(state_dir)
    print(f"deleted {state_dir}: the next `make up` starts from an empty embedded AWS")
    return 0


def _confirmed(state_dir: object) -> bool:
    if not sys.stdin.isatty():
        print("no terminal to confirm on: use `make reset FORCE=1`", file=sys.stderr)
        return False
    answer = input(
        f"Delete {state_dir}: every table, the lake, the streams, the deployed stack, Airflow's "
        "history and the logs? [y/N] "
    )
    return answer.strip().lower() in ("y", "yes")


if __name__ == "__main__":
    sys.exit(main())
