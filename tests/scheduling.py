"""How ``make test`` shares its files between the two xdist workers (``--dist loadfile``).

Two changes to xdist's file-per-unit scheduling (tests/conftest.py installs it):

- The modules that need the whole platform (``SHARED_PLATFORM``) are one unit: they run in one
  worker, one after the other, on one ``make up`` (the session-scoped ``platform`` fixture)
  instead of one each (a platform costs 3 min of a loaded 2-core machine to start, and both
  running at once slow every other test). xdist's own way, ``xdist_group`` with
  ``--dist loadgroup``, is ignored on pytest 9.2 (pytest-xdist#1386).
- The longest units go first (``SECONDS``), so the short files fill both workers at the end:
  xdist orders them by their number of tests, which put the browser tests (6 tests, a platform
  of their own) 21 minutes into a 30-minute run and the 2.5-minute MWAA bundle test last
  (2026-12-08, load ~12).
"""

from __future__ import annotations

from typing import Any

from xdist.scheduler import LoadFileScheduling

# In collection order, which is the order they run in: the browser tests (read-only) first, then
# test_platform_up, whose last tests stop the platform.
SHARED_PLATFORM = (
    "tests/e2e/test_dashboard_browser.py",
    "tests/integration/test_platform_up.py",
)
SHARED_PLATFORM_UNIT = "shared platform: " + " + ".join(SHARED_PLATFORM)

# Seconds per unit (setup, call and teardown of its tests) in `make test` of 2026-12-08 at a load
# of ~15, from the "time per file" section the run prints (tests/timing.py); the units not named
# here follow, most tests first. Rough is enough: only the order matters.
SECONDS = {
    SHARED_PLATFORM_UNIT: 500,
    "tests/integration/test_nightly_export.py": 360,
    "tests/integration/test_benchmarks.py": 210,
    "tests/integration/test_persistence.py": 160,
    "tests/integration/test_deploy.py": 100,
    "tests/integration/test_export.py": 80,
    "tests/integration/test_mwaa_bundle.py": 75,
    "tests/integration/test_quicksight.py": 70,
    "tests/integration/test_simulated_traffic.py": 70,
    "tests/integration/test_dashboard_properties.py": 65,
    "tests/integration/test_dashboard_api.py": 60,
    "tests/integration/test_iam_enforced.py": 60,
    "tests/integration/test_dashboard_authz.py": 60,
    "tests/integration/test_stream_processor.py": 55,
}


class LongestFirstFileScheduling(LoadFileScheduling):
    """``--dist loadfile`` with the platform's modules in one unit and the longest units first."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        self._ordered = False

    def _split_scope(self, nodeid: str) -> str:
        path = super()._split_scope(nodeid)
        return SHARED_PLATFORM_UNIT if path in SHARED_PLATFORM else path

    def _assign_work_unit(self, node: Any) -> None:
        if not self._ordered:  # the queue is complete before the first unit is handed out
            ordered = sorted(self.workqueue.items(), key=lambda unit: -SECONDS.get(unit[0], 0))
            self.workqueue.clear()
            self.workqueue.update(ordered)  # a stable sort: the rest keeps xdist's order
            self._ordered = True
        super()._assign_work_unit(node)
