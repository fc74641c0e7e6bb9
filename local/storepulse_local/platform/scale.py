"""The scale profile (``STOREPULSE_PROFILE=scale make up``): Airflow's CeleryExecutor, with
PostgreSQL as its metadata database and Redis as its Celery broker, and two or more Celery
workers, where the default profile runs LocalExecutor on SQLite.

PostgreSQL and Redis are Debian's packages (``scripts/ensure_scale_engines.sh`` installs them);
the platform runs its own instances of them like its other processes: data under the state
directory (``postgres/``, ``redis/``), on loopback only, each with a generated password kept in a
private file, on the ports their variables set (checked free before anything starts).

Variables (defaults in brackets): ``STOREPULSE_PROFILE`` [default]: ``default`` or ``scale``;
``STOREPULSE_POSTGRES_PORT`` [5433], ``STOREPULSE_REDIS_PORT`` [6380],
``STOREPULSE_CELERY_WORKERS`` [2].
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from storepulse.config import LOOPBACK, ConfigError, Settings, bounded_int
from storepulse_local.platform.private import create_private, private_dir
from storepulse_local.platform.stack import (
    AirflowComponent,
    Component,
    Launch,
    PlatformError,
    StackContext,
    wait_until,
)

PROFILES = ("default", "scale")
DATABASE, DB_USER = "airflow", "airflow"
# Task slots per worker: two workers of two match the platform's parallelism (4) on 2 cores.
WORKER_CONCURRENCY = 2
# A worker's warm shutdown lets its running tasks finish, as the scheduler's stop does.
WORKER_STOP_GRACE = 45.0
# PostgreSQL refuses to run as root; as root, it runs in a user namespace where it is this
# ordinary uid, and the files it writes stay the state directory owner's.
NAMESPACE_UID = 1000
DEBIAN_POSTGRESQL = Path("/usr/lib/postgresql")


@dataclass(frozen=True)
class ScaleSettings:
    postgres_port: int
    redis_port: int
    workers: int
    state_dir: Path

    @property
    def postgres_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def redis_dir(self) -> Path:
        return self.state_dir / "redis"


def scale_settings(settings: Settings, environ: Mapping[str, str] | None = None) -> ScaleSettings:
    """The profile's settings; a ConfigError names a bad variable (an unknown profile too)."""
    environ = os.environ if environ is None else environ
    return ScaleSettings(
        postgres_port=bounded_int(
            environ, "STOREPULSE_POSTGRES_PORT", 5433, 1, 65535, "a port number"
        ),
        redis_port=bounded_int(environ, "STOREPULSE_REDIS_PORT", 6380, 1, 65535, "a port number"),
        workers=bounded_int(environ, "STOREPULSE_CELERY_WORKERS", 2, 2, 8, "a number of workers"),
        state_dir=settings.state_dir,
    )


def is_scale(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``STOREPULSE_PROFILE`` asks for the scale profile (fails closed on a typo)."""
    environ = os.environ if environ is None else environ
    profile = environ.get("STOREPULSE_PROFILE") or "default"
    if profile not in PROFILES:
        raise ConfigError(f"STOREPULSE_PROFILE={profile!r} is not one of {', '.join(PROFILES)}")
    return profile == "scale"


def _secret(path: Path) -> str:
    """A password generated once, kept private (hex: safe in a URL and a config file)."""
    create_private(path, os.urandom(24).hex().encode())
    return path.read_text().strip()


def postgres_password(scale: ScaleSettings) -> str:
    return _secret(scale.postgres_dir / "password")


def redis_password(scale: ScaleSettings) -> str:
    return _secret(scale.redis_dir / "password")


def database_url(scale: ScaleSettings) -> str:
    """Airflow's metadata database (psycopg2; Airflow derives its asyncpg URL from it)."""
    return (
        f"postgresql+psycopg2://{DB_USER}:{postgres_password(scale)}@{LOOPBACK}:"
        f"{scale.postgres_port}/{DATABASE}"
    )


def profile_env(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    """The platform's Airflow environment for the profile ``env`` asks for (unchanged for the
    default profile)."""
    if not is_scale(env):
        return env
    scale = scale_settings(settings, env)
    env = {k: v for k, v in env.items() if not k.startswith("AIRFLOW__DATABASE__SQL_ALCHEMY_CON")}
    return env | {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url(scale),
        "AIRFLOW__CELERY__BROKER_URL": (
            f"redis://:{redis_password(scale)}@{LOOPBACK}:{scale.redis_port}/0"
        ),
        # The result backend defaults to the metadata database (db+postgresql...); extended
        # results record which worker ran each task (celery_taskmeta.worker).
        "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": json.dumps({"result_extended": True}),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
    }


def profile_components(settings: Settings, stack: list[Component]) -> list[Component]:
    """``stack`` for the profile: PostgreSQL and Redis before Airflow, the Celery workers right
    after it (so they are stopped before it, and after what runs on Airflow)."""
    if not is_scale():
        return stack
    scale = scale_settings(settings)
    result: list[Component] = []
    for component in stack:
        if isinstance(component, AirflowComponent):
            result += [PostgresComponent(scale), RedisComponent(scale), component]
            result.append(CeleryWorkersComponent(scale))
        else:
            result.append(component)
    return result


def _as_unprivileged(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    uid = str(NAMESPACE_UID)
    return ["unshare", "--user", f"--map-user={uid}", f"--map-group={uid}", *argv]


def postgres_bin(program: str) -> str:
    """A PostgreSQL server program: Debian keeps them out of PATH, per major version."""
    found = sorted(DEBIAN_POSTGRESQL.glob(f"*/bin/{program}"), key=_major_version)
    path = str(found[-1]) if found else shutil.which(program)
    if not path:
        raise PlatformError(
            f"PostgreSQL's {program} is missing: run scripts/ensure_scale_engines.sh "
            "(Debian's postgresql)"
        )
    return path


def _major_version(path: Path) -> int:
    version = path.parents[1].name
    return int(version) if version.isdigit() else 0


class PostgresComponent:
    """PostgreSQL for Airflow's metadata database; a cluster of its own under the state dir."""

    name = "postgres"

    def __init__(self, scale: ScaleSettings) -> None:
        self.scale = scale

    def ports(self, settings: Settings) -> list[tuple[int, str]]:
        return [(self.scale.postgres_port, "STOREPULSE_POSTGRES_PORT")]

    def start(self, ctx: StackContext) -> None:
        data = self.scale.postgres_dir / "data"
        password = postgres_password(self.scale)  # creates postgres/ private, first
        if not (data / "PG_VERSION").exists():
            pwfile = self.scale.postgres_dir / "initdb-password"
            create_private(pwfile, password.encode())
            try:
                ctx.run_step("postgres-initdb", self._initdb(data, pwfile), timeout=300)
            finally:
                pwfile.unlink(missing_ok=True)
        (launch,) = self.launches(ctx.settings)
        ctx.spawn(launch.name, launch.argv)

    def launches(self, settings: Settings) -> list[Launch]:
        data = self.scale.postgres_dir / "data"
        argv = [postgres_bin("postgres"), "-D", str(data), "-p", str(self.scale.postgres_port)]
        # TCP on loopback only, no Unix socket (its default directory belongs to the system's).
        argv += ["-c", f"listen_addresses={LOOPBACK}", "-c", "unix_socket_directories="]
        return [Launch(self.name, _as_unprivileged(argv))]

    def _initdb(self, data: Path, pwfile: Path) -> list[str]:
        return _as_unprivileged(
            [
                postgres_bin("initdb"),
                *("-D", str(data), "-U", DB_USER, f"--pwfile={pwfile}"),
                *("--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"),
            ]
        )

    def wait_ready(self, ctx: StackContext, timeout: float) -> None:
        wait_until(self._create_database, "PostgreSQL", timeout, ctx)

    def _create_database(self) -> bool:
        """Connects (False while it cannot) and creates Airflow's database once."""
        import psycopg2

        try:
            connection = psycopg2.connect(
                host=LOOPBACK,
                port=self.scale.postgres_port,
                user=DB_USER,
                password=postgres_password(self.scale),
                dbname="postgres",
                connect_timeout=3,
            )
        except psycopg2.OperationalError:
            return False
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if cursor.fetchone() is None:
                    cursor.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            connection.close()
        return True

    def banner(self, ctx: StackContext) -> list[str]:
        return [
            f"PostgreSQL     {LOOPBACK}:{self.scale.postgres_port}  (Airflow's metadata "
            f"database; data in {self.scale.postgres_dir})"
        ]


class RedisComponent:
    """Redis as the Celery broker. Not persisted: queued work of a stopped platform is failed at
    the next start (airflow_history), so none of it may run later."""

    name = "redis"

    def __init__(self, scale: ScaleSettings) -> None:
        self.scale = scale

    def ports(self, settings: Settings) -> list[tuple[int, str]]:
        return [(self.scale.redis_port, "STOREPULSE_REDIS_PORT")]

    def start(self, ctx: StackContext) -> None:
        # The password goes in a private file, not on a command line anyone can read.
        config = self.scale.redis_dir / "redis.conf"
        config.unlink(missing_ok=True)
        settings = {
            "bind": LOOPBACK,
            "port": str(self.scale.redis_port),
            "dir": str(private_dir(self.scale.redis_dir)),
            "requirepass": redis_password(self.scale),
            "save": '""',
            "appendonly": "no",
            "daemonize": "no",
        }
        create_private(config, "".join(f"{k} {v}\n" for k, v in settings.items()).encode())
        (launch,) = self.launches(ctx.settings)
        ctx.spawn(launch.name, launch.argv)

    def launches(self, settings: Settings) -> list[Launch]:
        return [Launch(self.name, ["redis-server", str(self.scale.redis_dir / "redis.conf")])]

    def wait_ready(self, ctx: StackContext, timeout: float) -> None:
        wait_until(self._ping, "Redis", timeout, ctx)

    def _ping(self) -> bool:
        import redis

        try:
            client = redis.Redis(
                host=LOOPBACK,
                port=self.scale.redis_port,
                password=redis_password(self.scale),
                socket_timeout=3,
            )
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    def banner(self, ctx: StackContext) -> list[str]:
        return [f"Redis          {LOOPBACK}:{self.scale.redis_port}  (the Celery broker)"]


def worker_name(index: int) -> str:
    """The Celery node name of worker ``index`` (1-based), unique on this host."""
    return f"worker-{index}@{socket.gethostname()}"


class CeleryWorkersComponent:
    """``airflow celery worker`` processes, each its own supervised component."""

    name = "celery-workers"

    def __init__(self, scale: ScaleSettings) -> None:
        self.scale = scale
        self._log_starts: dict[int, int] = {}  # worker -> its log's size before this start

    def ports(self, settings: Settings) -> list[tuple[int, str]]:
        return []

    def launches(self, settings: Settings) -> list[Launch]:
        # Logs are files on this machine, which the api-server reads itself: no log server
        # (each would want the same port).
        return [
            Launch(
                f"celery-worker-{index}",
                [
                    *("airflow", "celery", "worker"),
                    *("--celery-hostname", worker_name(index), "--skip-serve-logs"),
                ],
            )
            for index in range(1, self.scale.workers + 1)
        ]

    def start(self, ctx: StackContext) -> None:
        for index, launch in enumerate(self.launches(ctx.settings), start=1):
            log = ctx.log_dir / f"{launch.name}.log"
            self._log_starts[index] = log.stat().st_size if log.exists() else 0
            ctx.spawn(launch.name, launch.argv, stop_grace=WORKER_STOP_GRACE)

    def wait_ready(self, ctx: StackContext, timeout: float) -> None:
        for index, offset in self._log_starts.items():
            log, ready = ctx.log_dir / f"celery-worker-{index}.log", f"{worker_name(index)} ready."
            wait_until(lambda log=log, o=offset, r=ready: _logged(log, o, r), ready, timeout, ctx)

    def banner(self, ctx: StackContext) -> list[str]:
        names = ", ".join(worker_name(i) for i in range(1, self.scale.workers + 1))
        return [f"Celery workers {names}  (CeleryExecutor, {WORKER_CONCURRENCY} slots each)"]


def _logged(log: Path, offset: int, line: str) -> bool:
    """Whether ``line`` was logged past ``offset`` (logs are appended across starts)."""
    try:
        with log.open("rb") as file:
            file.seek(offset)
            return line.encode() in file.read()
    except FileNotFoundError:
        return False
