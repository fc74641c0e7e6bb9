# StorePulse's own image: Airflow, the project and its local platform (embedded AWS, Lambda
# runtime), installed from uv.lock exactly as `make install` does, plus the `scale` group
# (CeleryExecutor, Redis, PostgreSQL drivers). docker-compose.yaml runs every service from it.
#
#     docker build -t storepulse:local .
FROM python:3.11-slim-bookworm

# uv at the Makefile's version (UV_VERSION), from its official image.
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv

ENV STOREPULSE_PROJECT_ROOT=/opt/storepulse \
    UV_PROJECT_ENVIRONMENT=/opt/storepulse/.venv \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PATH=/opt/storepulse/.venv/bin:$PATH \
    AIRFLOW_HOME=/opt/airflow
WORKDIR /opt/storepulse

# Dependencies first (a layer reused until the lock changes), then the project itself.
COPY pyproject.toml uv.lock ./
COPY local/pyproject.toml local/pyproject.toml
RUN uv sync --locked --no-dev --group scale --no-install-workspace
COPY . .
RUN uv sync --locked --no-dev --group scale \
    && useradd --uid 50000 --home-dir /opt/airflow --create-home airflow \
    && mkdir -p /opt/airflow/state && chown -R airflow /opt/airflow

USER airflow
