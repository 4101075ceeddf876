"""The PostgreSQL connection pool, its health check and the migration runner.

Usage in a service's composition root::

    pool = await create_pool(settings, application_name="orders")
    service.health.add_check("postgres", database_check(pool), critical=True)
    if settings.database_migrate_on_start:
        await migrate(pool, MIGRATIONS_DIR)

(:meth:`emporium.kit.service.Service.database` does just that), and its
``migrate`` command (the chart's hook Job) is::

    run_cli(NAME, serve=..., commands={"migrate": migrate_command(NAME, MIGRATIONS_DIR)})

Migrations are plain SQL files named ``NNNN_short_name.sql`` in one folder per
service. Each is applied once, in number order, in its own transaction, and
recorded in ``schema_migrations`` with a checksum; the runner refuses to go on
if a file that was already applied has changed since. A Postgres advisory lock
serializes runners, so replicas starting together apply each file once. The
kit's own tables (the outbox, the processed-events ledger) come first, under
the ``kit/`` version prefix, so every service gets them by calling
:func:`migrate`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from emporium.kit import metrics
from emporium.kit.config import DatabaseSettings, ServiceSettings, load_settings
from emporium.kit.health import Check
from emporium.kit.logging import configure_logging
from emporium.kit.telemetry import trace_queries

log = logging.getLogger(__name__)

#: The kit's own migrations, applied before a service's under the ``kit/`` prefix.
KIT_MIGRATIONS_DIR = Path(__file__).parent / "migrations"
KIT_PREFIX = "kit/"

_MIGRATION_FILE = re.compile(r"^(?P<number>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

# Advisory lock keys are derived from names on the server (hashtextextended),
# so they read well in pg_locks and cannot collide with a service's numbers.
MIGRATION_LOCK_NAME = "emporium.schema-migrations"

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    duration_ms integer NOT NULL
)
"""


class MigrationError(Exception):
    """A migration folder is malformed or an applied migration was edited."""


async def create_pool(
    settings: DatabaseSettings,
    *,
    application_name: str | None = None,
    command_timeout: float = 10.0,
    connect_timeout: float = 5.0,
    startup_wait_seconds: float = 30.0,
) -> asyncpg.Pool:
    """Creates the service's pool, waiting up to ``startup_wait_seconds`` for the server.

    ``command_timeout`` bounds every query, so a hung server fails requests
    instead of piling them up. Prepared statements are cached per connection
    (asyncpg's default), which suits a direct connection to Postgres; behind a
    transaction-mode pooler set ``statement_cache_size=0`` instead.
    """
    name = application_name or getattr(settings, "otel_service_name", None) or "emporium"
    deadline = time.monotonic() + startup_wait_seconds
    delay = 0.25
    while True:
        try:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                settings.database_url.get_secret_value(),
                min_size=settings.database_pool_min_size,
                max_size=settings.database_pool_max_size,
                command_timeout=command_timeout,
                timeout=connect_timeout,
                # Recycle idle connections so a failover or a pooler restart is
                # picked up without errors on the next request.
                max_inactive_connection_lifetime=300.0,
                server_settings={"application_name": name},
                # Queries made inside a traced request or message get a span.
                init=trace_queries,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            if time.monotonic() + delay > deadline:
                raise
            log.warning(
                "database not reachable yet; retrying",
                extra={"error": f"{type(error).__name__}: {error}", "retry_in_s": delay},
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        else:
            update_pool_metrics(pool)
            return pool


def update_pool_metrics(pool: asyncpg.Pool) -> tuple[int, int, int]:
    """Publishes the pool's in-use/idle/max counts; returns (in_use, size, max)."""
    size, idle, maximum = pool.get_size(), pool.get_idle_size(), pool.get_max_size()
    in_use = size - idle
    metrics.DB_POOL_CONNECTIONS.labels("in_use").set(in_use)
    metrics.DB_POOL_CONNECTIONS.labels("idle").set(idle)
    metrics.DB_POOL_CONNECTIONS.labels("max").set(maximum)
    return in_use, size, maximum


def database_check(pool: asyncpg.Pool, timeout: float = 1.0) -> Check:
    """A background health check: ``SELECT 1`` through the pool within ``timeout``.

    Going through the pool (not a side connection) is deliberate: an exhausted
    pool makes the service unable to serve, and the check then says so.
    """

    async def check() -> str:
        async with pool.acquire(timeout=timeout) as conn:
            await conn.fetchval("SELECT 1", timeout=timeout)
        in_use, size, maximum = update_pool_metrics(pool)
        return f"pool {in_use}/{size} in use (max {maximum})"

    return check


@dataclass(frozen=True)
class Migration:
    version: str  # "0003_add_status" or "kit/0001_outbox"
    path: Path
    sql: str
    checksum: str


def _checksum(sql: str) -> str:
    # Line endings are normalized so a checkout on another platform is not "a change".
    return hashlib.sha256(sql.replace("\r\n", "\n").encode()).hexdigest()


def discover(directory: Path, prefix: str = "") -> list[Migration]:
    """The migrations of one folder in number order; malformed names are errors."""
    if not directory.is_dir():
        raise MigrationError(f"migrations folder {directory} does not exist")
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _MIGRATION_FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_name.sql")
        number = int(match["number"])
        if number in found:
            raise MigrationError(
                f"{path.name}: number {match['number']} is already used by "
                f"{found[number].path.name}"
            )
        sql = path.read_text(encoding="utf-8")
        found[number] = Migration(prefix + path.stem, path, sql, _checksum(sql))
    return [found[number] for number in sorted(found)]


async def migrate(
    dsn_or_pool: str | asyncpg.Pool,
    migrations_dir: Path | None,
    *,
    include_kit: bool = True,
    lock_wait_seconds: float = 300.0,
) -> list[str]:
    """Applies pending migrations and returns their versions, in order.

    Raises :class:`MigrationError` before applying anything if an applied
    migration's file has changed. A failing migration is rolled back and
    stops the run; the ones before it stay applied.
    """
    migrations = discover(KIT_MIGRATIONS_DIR, KIT_PREFIX) if include_kit else []
    if migrations_dir is not None:
        migrations += discover(migrations_dir)

    if isinstance(dsn_or_pool, str):
        conn = await asyncpg.connect(dsn_or_pool)
        try:
            return await _migrate(conn, migrations, lock_wait_seconds)
        finally:
            await conn.close()
    async with dsn_or_pool.acquire() as pooled:
        return await _migrate(pooled, migrations, lock_wait_seconds)


async def _migrate(
    conn: asyncpg.Connection, migrations: list[Migration], lock_wait_seconds: float
) -> list[str]:
    started = time.monotonic()
    # A session-level lock held for the whole run: another replica waits here,
    # then finds everything applied. It is released explicitly below, and by
    # the server if this process dies.
    await conn.execute(
        "SELECT pg_advisory_lock(hashtextextended($1, 0))",
        MIGRATION_LOCK_NAME,
        timeout=lock_wait_seconds,
    )
    try:
        waited = time.monotonic() - started
        if waited > 1:
            log.info("waited for another migration run", extra={"waited_s": round(waited, 1)})
        await conn.execute(_CREATE_LEDGER)
        applied = {
            row["version"]: row["checksum"]
            for row in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        known = {m.version for m in migrations}
        changed = [
            m for m in migrations if m.version in applied and applied[m.version] != m.checksum
        ]
        if changed:
            names = ", ".join(str(m.path) for m in changed)
            raise MigrationError(
                f"applied migration changed since it ran: {names}; "
                "add a new migration instead of editing an applied one"
            )
        unknown = sorted(set(applied) - known)
        if unknown:
            # A rolled-back deployment meets migrations of the newer release;
            # that is expected and must not stop the older code from starting.
            log.warning(
                "database has migrations this code does not know", extra={"versions": unknown}
            )

        done: list[str] = []
        for migration in migrations:
            if migration.version in applied:
                continue
            begun = time.monotonic()
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    duration_ms = int((time.monotonic() - begun) * 1000)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, checksum, duration_ms) "
                        "VALUES ($1, $2, $3)",
                        migration.version,
                        migration.checksum,
                        duration_ms,
                    )
            except asyncpg.PostgresError as error:
                raise MigrationError(
                    f"{migration.path.name} failed and was rolled back: "
                    f"{type(error).__name__}: {error}"
                ) from error
            log.info(
                "migration applied",
                extra={"version": migration.version, "duration_ms": duration_ms},
            )
            done.append(migration.version)
        return done
    finally:
        if not conn.is_closed():
            await conn.execute(
                "SELECT pg_advisory_unlock(hashtextextended($1, 0))", MIGRATION_LOCK_NAME
            )


class MigrateSettings(ServiceSettings, DatabaseSettings):
    """What a service's ``migrate`` command needs: the database, and how to log."""


def migrate_command(
    name: str, migrations_dir: Path
) -> Callable[[], Coroutine[Any, Any, list[str]]]:
    """The ``emporium-<name> migrate`` command: applies the migrations, prints them, exits.

    It reads only :class:`MigrateSettings`, so the chart's hook Job needs no
    more than the database's variables.
    """

    async def command() -> list[str]:
        settings = load_settings(MigrateSettings)
        configure_logging(name, settings.log_level, settings.environment)
        applied = await migrate(settings.database_url.get_secret_value(), migrations_dir)
        print(f"{name}: {len(applied)} migration(s) applied" + "".join(f"\n  {v}" for v in applied))
        return applied

    return command
