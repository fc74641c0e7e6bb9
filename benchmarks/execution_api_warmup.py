"""Benchmark: the UI while the api-server builds Airflow's execution API, with the plugin's warm-up
and without it.

    .venv/bin/python -m benchmarks.execution_api_warmup [--rounds 2] [--seconds 20] [--small]

Airflow's own api-server app (``create_app("all")``) in a child interpreter, with the project's
plugins folder (the warm-up, ``storepulse.execution_api_warmup``, builds the execution API in a
thread as the server starts) or with an empty one (Airflow alone, the baseline: its first task's
call builds it, with the server's event loop blocked), alternately, ``--rounds`` of each: the
load of a shared machine changes from minute to minute. As soon as the server has started: the
baseline's first call to ``/execution/health``, as a task's first call; in both, the UI's REST API
(``/api/v2/version``) every 50 ms for ``--seconds``. Printed per run: the build's wall time and
thread, the UI's slowest and median request; then the slowest with the warm-up against the
slowest without (their medians over the rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import parse_args, print_table
from storepulse.config import REPO_ROOT

SMALL = {"rounds": 1, "seconds": 5.0}

SERVER = r"""
import json, statistics, sys, threading, time
from cadwyn import Cadwyn
from starlette.testclient import TestClient
from airflow.api_fastapi.app import create_app

seconds, warm_up = float(sys.argv[1]), sys.argv[2] == "warm-up"
build, builds = Cadwyn._cadwyn_initialize, []

def timed_build(self):
    began = time.monotonic()
    build(self)
    builds.append((time.monotonic() - began, threading.current_thread().name))

Cadwyn._cadwyn_initialize = timed_build
app = create_app("all")
ui = []
with TestClient(app) as client:
    began = time.monotonic()
    if not warm_up:  # a task's first call, on the server's loop
        threading.Thread(target=client.get, args=("/execution/health",), daemon=True).start()
    while time.monotonic() - began < seconds:
        sent = time.monotonic()
        assert client.get("/api/v2/version").status_code == 200
        ui.append(time.monotonic() - sent)
        time.sleep(0.05)
    while not builds and time.monotonic() - began < 300:
        time.sleep(0.1)
(seconds, thread), = builds
print(json.dumps({"build_s": seconds, "thread": thread, "ui_max_s": max(ui),
                  "ui_median_s": statistics.median(ui), "requests": len(ui)}))
"""


def run(mode: str, seconds: float) -> dict[str, Any]:
    """One child api-server: ``warm-up`` (the project's plugins) or ``baseline`` (none)."""
    with tempfile.TemporaryDirectory(prefix="storepulse-bench-warmup-") as home:
        plugins = REPO_ROOT / "plugins" if mode == "warm-up" else Path(home) / "no-plugins"
        plugins.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__API_AUTH__JWT_SECRET": "benchmark-only",
        }
        argv = [sys.executable, "-c", SERVER, str(seconds), mode]
        child = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    if child.returncode != 0:
        raise RuntimeError(f"{mode} api-server failed:\n{child.stderr[-3000:]}")
    return {"mode": mode, "load": os.getloadavg()[0], **json.loads(child.stdout.splitlines()[-1])}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="runs of each, alternately")
    parser.add_argument("--seconds", type=float, default=20.0, help="UI requests for this long")
    args = parse_args(parser, argv, SMALL)
    runs = [run(mode, args.seconds) for _ in range(args.rounds) for mode in ("baseline", "warm-up")]
    rows = [
        [
            r["mode"],
            f"{r['build_s']:.1f}",
            r["thread"],
            f"{r['ui_max_s']:.2f}",
            f"{r['ui_median_s'] * 1000:.0f}",
            r["requests"],
            f"{r['load']:.1f}",
        ]
        for r in runs
    ]
    headers = ["api-server", "build s", "built by", "UI slowest s", "UI median ms", "requests"]
    print_table([*headers, "load (1 min)"], rows)
    slowest = {
        mode: statistics.median(r["ui_max_s"] for r in runs if r["mode"] == mode)
        for mode in ("baseline", "warm-up")
    }
    ratio = slowest["warm-up"] / slowest["baseline"]
    print(f"the UI's slowest request, with the warm-up / without: {ratio:.2f}x")
    return {"runs": runs, "slowest": slowest, "ratio": ratio}


if __name__ == "__main__":
    main()
