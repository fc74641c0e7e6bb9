"""Shifts this process's wall clock by ``STOREPULSE_CLOCK_SHIFT_SECONDS`` (``make test-clock``).

``scripts/test_clock.sh`` puts this folder on ``PYTHONPATH``, so every Python process of a test
run (pytest, the embedded AWS, Airflow's components, the Lambda runtime, the simulator) imports
it at start and travels by the same offset: they agree on the time, and the clock keeps ticking.
Only the wall clock moves (``time.time``, ``datetime.now``, ``date.today``...):
``time.monotonic`` and ``time.sleep`` stay real, so timeouts mean what they say.

SQLite computes ``CURRENT_TIMESTAMP`` in C, out of time-machine's reach, and Airflow's scheduler
starts a queued run only when ``run_after <= now()`` in SQL: SQLAlchemy's ``now()`` is rendered
for SQLite with the same offset, or a triggered run would wait for the real clock to catch up.

Why not Debian's libfaketime: its 0.9.10 either shifts CLOCK_MONOTONIC too, and then every
timed lock or queue wait in Python 3.11 hangs, or (``FAKETIME_DONT_FAKE_MONOTONIC=1``) makes
``time.sleep`` fail with EINVAL. Without the variable this file does nothing.
"""

import os
import time

_shift = os.environ.get("STOREPULSE_CLOCK_SHIFT_SECONDS")
if _shift:
    import time_machine

    time_machine.travel(time.time() + float(_shift), tick=True).start()

    try:
        from sqlalchemy.ext.compiler import compiles
        from sqlalchemy.sql import functions
    except ImportError:  # a process without SQLAlchemy has no SQL clock to shift
        pass
    else:

        @compiles(functions.now, "sqlite")
        def _shifted_sqlite_now(_element: object, _compiler: object, **_kw: object) -> str:
            return f"datetime('now', '{round(float(_shift)):+d} seconds')"
