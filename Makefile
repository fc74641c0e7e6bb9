# StorePulse: `make up` runs the local platform, `make test` runs the whole test suite.
# Both set up the virtual environment first (pinned by uv.lock; a no-op when it is current).

PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
TOOLS := .tools
UV := $(TOOLS)/bin/uv
# checkov has a venv of its own: it pins a boto3 far older than the project's.
CHECKOV := $(TOOLS)/checkov/bin/checkov

.PHONY: install up down reset env dist test test-clock lint format bench bench-persistence test-slow clean

install: $(VENV)/.synced

# uv itself lives in its own small venv, so `uv sync` can keep .venv exactly as locked.
$(UV):
	@$(PYTHON) scripts/check_python.py
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Where PYTHONDONTWRITEBYTECODE is set (many containers), no import ever caches its bytecode:
# every process of every `make up` compiled its modules again (Airflow's imports: 8.3 s of CPU
# instead of 4.9, in each of its processes). Then the install compiles them, once.
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	@$(PYTHON) scripts/check_python.py
	$(UV) sync --locked $(if $(PYTHONDONTWRITEBYTECODE),--compile-bytecode) --python $(PYTHON)
	@touch $@

$(CHECKOV): scripts/checkov.requirements.txt | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(TOOLS)/checkov
	$(UV) pip sync --quiet --python $(TOOLS)/checkov/bin/python scripts/checkov.requirements.txt
	@touch $@

# STOREPULSE_PROFILE=scale: CeleryExecutor on Debian's PostgreSQL and Redis (installed if missing).
up: install
	@if [ "$(STOREPULSE_PROFILE)" = scale ]; then scripts/ensure_scale_engines.sh; fi
	$(VENV)/bin/python -m storepulse_local.platform up

down:
	@if [ -x $(VENV)/bin/python ]; then $(VENV)/bin/python -m storepulse_local.platform down; \
	else echo "the platform is not installed, so not running"; fi

# The variables that point any AWS client at the embedded AWS: eval "$$(make -s env)".
env: install
	@$(VENV)/bin/python -m storepulse_local.platform.client_env

# MWAA's and Astronomer's artefacts under dist/ (scripts/dist.py): no repository needed there.
dist: install
	$(VENV)/bin/python scripts/dist.py dist

# Deletes the local state (STOREPULSE_STATE_DIR, .run by default) after a prompt; FORCE=1 skips it.
reset: install
	$(VENV)/bin/python -m storepulse_local.platform.reset $(if $(filter 1,$(FORCE)),--force)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint $(CHECKOV)
	@scripts/ensure_chromium.sh
	$(VENV)/bin/pytest

# The slow tests (`-m slow`): each starts a platform of its own or runs a whole pipeline (the
# scale profile on PostgreSQL, Redis and Celery; restarts and kill -9 of every process; the lake
# end to end). Over an hour here (the platform restarts alone: 30 min at a load of 12, 2026-12-07),
# so not in `make test` (CI's budget).
test-slow: install $(CHECKOV)
	@scripts/ensure_scale_engines.sh
	$(VENV)/bin/pytest -m slow

# The suite under shifted clocks (03:30 UTC, 23:50 Paris, both DST nights, a year ahead); slow.
test-clock: lint $(CHECKOV)
	@scripts/ensure_chromium.sh
	scripts/test_clock.sh

clean: down
	rm -rf $(VENV) $(TOOLS) .run

bench: install
	$(VENV)/bin/python -m benchmarks.stream_handler
	$(VENV)/bin/python -m benchmarks.write_cost
	$(VENV)/bin/python -m benchmarks.end_to_end_latency
	$(VENV)/bin/python -m benchmarks.idle_cost
	$(VENV)/bin/python -m benchmarks.dashboard_latency
	$(VENV)/bin/python -m benchmarks.export
	$(VENV)/bin/python -m benchmarks.incremental_export
	$(VENV)/bin/python -m benchmarks.persistence
	$(VENV)/bin/python -m benchmarks.trend_alerts
	$(VENV)/bin/python -m benchmarks.change_capture

# The persistence benchmark at a simulated week of the demo and at a million events, then make up
# on a restored week (hours on a loaded 2-core machine).
bench-persistence: install
	$(VENV)/bin/python -m benchmarks.persistence --events 414000,1000000
	$(VENV)/bin/python -m benchmarks.persistence_up
