"""Settings: the one place that reads the platform's environment variables.

Every resource name, region and endpoint the project uses is derived here, so moving from the
embedded AWS to a real account is a change of environment (and of the Airflow ``aws_default``
connection), never of code.

Variables (defaults in brackets):

- ``STOREPULSE_ENV`` [dev]: environment name; prefixes every AWS resource name.
- ``AWS_DEFAULT_REGION`` [us-east-1]: region of every resource.
- ``STOREPULSE_EMBEDDED_AWS`` [1]: 1 starts and uses the embedded AWS (moto on loopback);
  0 uses the account that the ``aws_default`` connection and the AWS credential chain give.
- ``STOREPULSE_AWS_PORT`` [5055]: port of the embedded AWS.
- ``AWS_ENDPOINT_URL`` [unset]: boto3's own endpoint override; ``make up`` sets it to the
  embedded AWS for the processes it starts. ``AWS_ENDPOINT_URL_S3`` [unset], botocore's S3 one,
  before it for S3: pyarrow's filesystem follows both as boto3 does (``storepulse.lake``).
- ``STOREPULSE_AIRFLOW_PORT`` [8080]: port of Airflow's api-server (UI and REST API).
- ``STOREPULSE_STATE_DIR`` [.run]: local state of ``make up`` (Airflow home with its SQLite
  database, pid file, logs), relative to the project root.
- ``STOREPULSE_LAKE_BUCKET`` [unset]: the lake bucket instead of the real-time stack's
  ``LakeBucket`` output (``storepulse.lake.bucket``); the stack sets it on its functions.
- ``STOREPULSE_PROJECT_ROOT`` [see ``project_root``]: the folder holding ``infra/``,
  ``lambdas/`` and ``uv.lock`` (the deploy's templates, Lambda source and pins).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# `make dist` copies infra/, lambdas/ and uv.lock here, inside the package, for managed Airflow
# (MWAA's plugins.zip, an Astronomer image): no repository checkout exists there.
BUNDLED_PROJECT = "_project"


def project_root(environ: Mapping[str, str], package_dir: Path) -> Path:
    """The folder of ``infra/``, ``lambdas/`` and ``uv.lock``: ``STOREPULSE_PROJECT_ROOT`` when
    set, else the copy bundled in the package (``storepulse/_project``), else the checkout the
    package lives in (``plugins/storepulse`` -> the repository)."""
    if configured := environ.get("STOREPULSE_PROJECT_ROOT"):
        return Path(configured).resolve()
    bundled = package_dir / BUNDLED_PROJECT
    return bundled if bundled.is_dir() else package_dir.parents[1]


REPO_ROOT = project_root(os.environ, Path(__file__).resolve().parent)
PROJECT = "storepulse"
LOOPBACK = "127.0.0.1"

_ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{0,15}$")


class ConfigError(ValueError):
    """A setting has an invalid value; the message names the variable."""


# Parsed by hand, not with pydantic-settings: the Lambda imports this module, and importing
# pydantic_settings on top of the stream processor (pydantic already loaded) cost 0.9-1.4 s of
# cold start against 31 ms for this module (`python -X importtime`, Dec 7 2026, load 10-15).
@dataclass(frozen=True)
class Settings:
    env: str
    region: str
    embedded_aws: bool
    aws_port: int
    airflow_port: int
    state_dir: Path
    aws_endpoint_url: str | None
    s3_endpoint_url: str | None = None  # AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL
    build_dir: Path | None = None  # Lambda zips and their vendored wheels; None: <state dir>/build
    lake_bucket: str | None = None  # None: the real-time stack's output (storepulse.lake.bucket)

    @property
    def lambda_build_dir(self) -> Path:
        """Where the deploy builds Lambda zips (content-addressed: safe to share)."""
        return self.build_dir or self.state_dir / "build"

    def resource_name(self, name: str) -> str:
        """Environment-scoped AWS resource name, e.g. ``storepulse-dev-events``."""
        return f"{PROJECT}-{self.env}-{name}"

    @property
    def embedded_aws_url(self) -> str:
        return f"http://{LOOPBACK}:{self.aws_port}"

    @property
    def airflow_url(self) -> str:
        return f"http://{LOOPBACK}:{self.airflow_port}"


def bounded_int(
    environ: Mapping[str, str], name: str, default: int, low: int, high: int, what: str
) -> int:
    """The integer ``name`` (``default`` if unset) within ``low``-``high``; ``what`` names the
    expected kind of value in the error."""
    raw = environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not {what}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is outside {low}-{high}")
    return value


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    return bounded_int(environ, name, default, 1, 65535, "a port number")


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None:
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use 1 or 0)")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``environ`` (default: the process environment), validating each value."""
    environ = os.environ if environ is None else environ
    env = environ.get("STOREPULSE_ENV", "dev")
    if not _ENV_NAME.match(env):
        raise ConfigError(
            f"STOREPULSE_ENV={env!r} must be 1-16 lowercase letters, digits or '-', "
            "starting with a letter (it prefixes AWS resource names)"
        )
    embedded = _flag(environ, "STOREPULSE_EMBEDDED_AWS", default=True)
    aws_port = _port(environ, "STOREPULSE_AWS_PORT", 5055)
    state_dir = Path(environ.get("STOREPULSE_STATE_DIR", ".run"))
    return Settings(
        env=env,
        region=environ.get("AWS_DEFAULT_REGION") or environ.get("AWS_REGION") or "us-east-1",
        embedded_aws=embedded,
        aws_port=aws_port,
        airflow_port=_port(environ, "STOREPULSE_AIRFLOW_PORT", 8080),
        state_dir=state_dir if state_dir.is_absolute() else REPO_ROOT / state_dir,
        aws_endpoint_url=(endpoint := environ.get("AWS_ENDPOINT_URL") or None),
        s3_endpoint_url=environ.get("AWS_ENDPOINT_URL_S3") or endpoint,
        build_dir=Path(build).resolve() if (build := environ.get("STOREPULSE_BUILD_DIR")) else None,
        lake_bucket=environ.get("STOREPULSE_LAKE_BUCKET") or None,
    )


@cache
def settings() -> Settings:
    """The process-wide settings (read once)."""
    return load_settings()
