"""The kit's data layer: the PostgreSQL pool, units of work, retries and migrations.

Services never see the driver (psycopg 3 with psycopg_pool). They get a
:class:`Database` from :meth:`emporium.kit.service.Service.database` and work
through the kit's own types::

    database = await service.database(settings, MIGRATIONS_DIR)

    async with database.unit_of_work() as uow:          # one transaction
        await uow.execute("UPDATE orders SET status = $2 WHERE order_id = $1", order_id, status)
        await outbox.enqueue(uow, topic=..., key=order_id, message=event)

    row = await database.fetchrow("SELECT ... WHERE id = $1", product_id)  # one statement

Statements use PostgreSQL's own ``$1`` placeholders (server-side binding);
rows are dicts. :class:`Executor` is the whole protocol a repository may use:
``execute`` (returns the affected row count), ``executemany``, ``fetch``,
``fetchrow`` and ``fetchval``.

One place maps a lost, refused or exhausted database to
:class:`DatabaseUnavailable` (an :class:`~emporium.kit.errors.Unavailable`,
so gRPC UNAVAILABLE and HTTP 503 for every service): leaving
:meth:`Database.unit_of_work`, :meth:`Database.connection` or one of the
one-statement helpers with a connection-level error. :data:`RETRYABLE_ERRORS`
is the one list of errors worth retrying, and :func:`database_retry` the one
retry policy (tenacity) for loops that wait for the database.

The pool opens in the background (:meth:`Database.open` does not wait): a
service whose database is down at start-up starts, answers ``/livez``, reports
the database in ``/readyz`` and connects when it can. Every connection is
checked when it leaves the pool, so a server restart leaves no stale
connection behind (a round trip only if the server has written to the idle
connection; see :func:`_check_connection`).

Migrations are plain SQL files named ``NNNN_short_name.sql`` in one folder per
service. Each is applied once, in number order, in its own transaction, and
recorded in ``schema_migrations`` with a checksum; the runner refuses to go on
if a file that was already applied has changed since. A Postgres advisory lock
serializes runners, so replicas starting together apply each file once. The
kit's own tables (the outbox, the processed-events ledger) come first, under
the ``kit/`` version prefix. A service's ``migrate`` command (the chart's hook
Job) is::

    run_cli(NAME, serve=..., commands={"migrate": migrate_command(NAME, MIGRATIONS_DIR)})
"""

from __future__ import annotations

import hashlib
import logging
import re
import select
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psycopg
import psycopg.errors
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from psycopg.rows import dict_row
from psycopg.types.array import ListBinaryDumper
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from tenacity import AsyncRetrying, stop_never

from emporium.kit import metrics
from emporium.kit.config import DatabaseSettings, ServiceSettings, load_settings
from emporium.kit.errors import Unavailable
from emporium.kit.health import Check
from emporium.kit.logging import configure_logging
from emporium.kit.retry import retrying
from emporium.kit.telemetry import instrument_database

log = logging.getLogger(__name__)

Row = dict[str, Any]

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

# -- errors ---------------------------------------------------------------------------


class DatabaseUnavailable(Unavailable):
    """The database cannot be reached (refused, lost, restarting, or the pool exhausted)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, dependency="postgres")


class MigrationError(Exception):
    """A migration folder is malformed or an applied migration was edited."""


#: Errors that say the statement itself may be fine and a retry may succeed:
#: the database is unreachable, or the transaction lost a race.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.LockNotAvailable,
    psycopg.errors.ReadOnlySqlTransaction,  # a failover in progress
)


def is_connection_error(error: BaseException) -> bool:
    """Whether ``error`` means "no usable connection", not "this statement is wrong".

    psycopg raises :class:`psycopg.OperationalError` (or a subclass named by
    SQLSTATE: admin shutdown, cannot connect now, too many connections...) for
    those, and :class:`~psycopg_pool.PoolTimeout` when no connection came in
    time. A cancelled statement (statement timeout) and a lost race
    (serialization failure, deadlock) are operational errors too, but about
    the statement, so they are not.
    """
    if isinstance(error, DatabaseUnavailable | PoolTimeout | OSError):
        return True
    if isinstance(error, psycopg.errors.QueryCanceled | psycopg.errors.TransactionRollback):
        return False
    return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)


def is_retryable(error: BaseException) -> bool:
    return isinstance(error, RETRYABLE_ERRORS) or is_connection_error(error)


def _unavailable(error: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"database unavailable: {type(error).__name__}: {str(error).strip()[:300]}"
    )


def database_retry(
    *,
    initial: float = 0.25,
    maximum: float = 5.0,
    stop: Any = stop_never,
    on_retry: Callable[[BaseException, float], None] | None = None,
    sleep: Callable[[float], Awaitable[Any]] | None = None,
) -> AsyncRetrying:
    """The kit's retry policy (:mod:`emporium.kit.retry`) for database work.

    ``async for attempt in database_retry(): with attempt: ...`` retries the
    block while it raises one of :data:`RETRYABLE_ERRORS` (or a connection
    error), waiting ``initial`` doubling up to ``maximum`` seconds with
    jitter; ``on_retry(error, wait)`` is told before each wait, and
    ``sleep`` (default :func:`asyncio.sleep`) waits, so a component can cut
    the wait short when it is stopped.
    """
    return retrying(
        is_retryable, initial=initial, maximum=maximum, stop=stop, on_retry=on_retry, sleep=sleep
    )


# -- statements -----------------------------------------------------------------------


class _Cursor(psycopg.AsyncRawCursor[Any]):
    """Server-side ``$1`` placeholders, as PostgreSQL writes them."""


def _adapt(conn: psycopg.AsyncConnection[Any]) -> None:
    """Python lists go to the server as binary arrays.

    psycopg's default for a list parameter is the text format, which quotes
    and escapes every element in Python: for the set-based statements of the
    event path (``unnest($1::text[], ...)`` over a poll's 500 events) that was
    the largest client-side cost (about 3 ms per 500 timestamps, 1 ms per 500
    strings, against 0.1 ms in binary). Binary arrays carry their element
    type, so a statement says it with a cast where it matters (``$1::int[]``).
    """
    conn.adapters.register_dumper(list, ListBinaryDumper)


#: Whether statements get their own CLIENT span (switched by ``DATABASE_TRACE_QUERIES``).
_trace_queries = True


def set_query_tracing(enabled: bool) -> None:
    """Turns per-statement spans on or off for this process (see docs/observability.md)."""
    global _trace_queries
    _trace_queries = enabled


def _traced() -> bool:
    """Statements get a span only inside traced work, and only if switched on.

    Health checks, the relay's polling and the pool's housekeeping run outside
    any trace; each would be a trace of its own and drown the useful ones.
    """
    return _trace_queries and trace.get_current_span().get_span_context().is_valid


def _has_pending_input(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the server has said something to a connection that sits idle in the pool.

    An idle connection in good health has nothing to read. A server that
    shuts down, restarts or terminates the backend sends its FATAL message and
    closes the socket, which makes it readable (as does a notice or a
    parameter change, which the full check then consumes harmlessly).
    """
    try:
        poller = select.poll()  # unlike select.select, any descriptor number
        poller.register(conn.pgconn.socket, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.OperationalError):
        return True  # no usable socket: let the full check say what is wrong


async def _check_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's check of a connection it hands out: a round trip only when in doubt.

    psycopg_pool's own check is an empty statement on every hand-out: a round
    trip to the server that was a tenth of the Python time of the orders and
    catalog services under checkout load (docs/decisions/kit-data.md). Here a
    closed connection is refused at once, and the empty statement runs only
    when the server has sent something to the idle connection (it went away,
    or has a notice for it). What cannot be told without a round trip, a
    server that vanished without closing its sockets, fails the first
    statement as a lost connection (UNAVAILABLE), like a loss mid-request.
    """
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    if not _has_pending_input(conn):
        return
    with suppress_instrumentation():
        await AsyncConnectionPool.check_connection(conn)


class Executor(Protocol):
    """What repositories use to run SQL; rows are dicts, placeholders ``$1``, ``$2``..."""

    async def execute(self, sql: str, *args: Any) -> int: ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...


class Session:
    """Statements on one pooled connection (an :class:`Executor`)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    async def _run(self, sql: str, args: Sequence[Any]) -> _Cursor:
        cursor = self._conn.cursor()
        params = args or None
        if _traced():
            await cursor.execute(sql, params)
        else:
            with suppress_instrumentation():
                await cursor.execute(sql, params)
        return cursor  # type: ignore[return-value]

    async def execute(self, sql: str, *args: Any) -> int:
        """Runs one statement; returns the number of rows it affected (or returned)."""
        cursor = await self._run(sql, args)
        return max(cursor.rowcount, 0)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        cursor = self._conn.cursor()
        if _traced():
            await cursor.executemany(sql, list(rows))
        else:
            with suppress_instrumentation():
                await cursor.executemany(sql, list(rows))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        cursor = await self._run(sql, args)
        return await cursor.fetchall()

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        cursor = await self._run(sql, args)
        row: Row | None = await cursor.fetchone()
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else next(iter(row.values()), None)


class UnitOfWork(Session):
    """One database transaction: everything in it commits together or not at all.

    It is what :meth:`Database.unit_of_work` yields and what consumer handlers
    and :func:`emporium.kit.outbox.enqueue` take.
    """

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        super().__init__(conn)
        self._after_commit: list[Callable[[], None]] = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Calls ``callback`` once the transaction has committed; never if it rolls back.

        For signals only (the outbox wakes its relay this way): the callback
        runs on the event loop after the connection went back to the pool, a
        callback registered twice runs once, and an exception it raises is
        logged, not raised to the writer, whose transaction has committed.
        """
        if callback not in self._after_commit:
            self._after_commit.append(callback)

    def _committed(self) -> None:
        for callback in self._after_commit:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed", extra={"callback": repr(callback)})

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A part of the transaction that is undone alone if the block raises."""
        async with self._conn.transaction():
            yield


# -- the pool -------------------------------------------------------------------------


#: How long a request waits for a connection while the database is known unreachable.
UNREACHABLE_ACQUIRE_TIMEOUT = 0.25


class Database:
    """The service's connection pool, behind the kit's unit-of-work protocol.

    ``acquire_timeout`` bounds how long a request waits for a connection
    before it fails with :class:`DatabaseUnavailable`; ``statement_timeout``
    bounds every statement, so a hung server fails requests instead of piling
    them up. Statements are prepared after a few executions (psycopg's
    default), which suits a direct connection to Postgres; behind a
    transaction-mode pooler set ``prepare_threshold=None`` in ``connect_options``.
    """

    def __init__(
        self,
        url: str,
        *,
        application_name: str = "emporium",
        min_size: int = 1,
        max_size: int = 10,
        acquire_timeout: float = 2.0,
        statement_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        connect_options: dict[str, Any] | None = None,
    ) -> None:
        self.acquire_timeout = acquire_timeout
        instrument_database()
        # Whether the pool's last attempt to connect failed: requests then wait
        # only briefly for a connection and fail fast with DatabaseUnavailable
        # (within their callers' deadlines) instead of the whole acquire timeout.
        self.unreachable = False
        database = self

        class Connection(psycopg.AsyncConnection[Any]):
            @classmethod
            async def connect(cls, *args: Any, **kwargs: Any) -> Any:
                try:
                    conn = await super().connect(*args, **kwargs)
                except psycopg.OperationalError:
                    database.unreachable = True
                    raise
                database.unreachable = False
                _adapt(conn)
                return conn

        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            url,
            connection_class=Connection,
            min_size=min_size,
            max_size=max_size,
            open=False,
            name=application_name,
            timeout=acquire_timeout,
            # A connection is checked as it leaves the pool: one that a server
            # restart broke is replaced instead of failing the caller.
            check=_check_connection,
            # Recycle idle connections so a failover or a pooler restart is
            # picked up without errors on the next request.
            max_idle=300.0,
            # psycopg_pool backs off 1 s, 2 s, 4 s... without a cap while it
            # reconnects; giving an attempt up after 2 s keeps the gaps near
            # 1 s: the next request (the health check runs every second) starts
            # a fresh attempt. So the pool is back within about a second of
            # the server, for as long as the outage lasts.
            reconnect_timeout=2.0,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "cursor_factory": _Cursor,
                "application_name": application_name,
                "connect_timeout": max(1, int(connect_timeout)),
                "options": f"-c statement_timeout={int(statement_timeout * 1000)}",
                **(connect_options or {}),
            },
        )

    @classmethod
    def from_settings(
        cls, settings: DatabaseSettings, *, application_name: str | None = None, **options: Any
    ) -> Database:
        name = application_name or getattr(settings, "otel_service_name", None) or "emporium"
        set_query_tracing(settings.database_trace_queries)
        return cls(
            settings.database_url.get_secret_value(),
            application_name=name,
            min_size=settings.database_pool_min_size,
            max_size=settings.database_pool_max_size,
            **options,
        )

    async def open(self, *, wait: bool = False, wait_seconds: float = 30.0) -> None:
        """Opens the pool; with ``wait`` until ``min_size`` connections are made.

        Without ``wait`` it returns at once and connects in the background,
        retrying for as long as it takes.
        """
        try:
            await self._pool.open(wait=wait, timeout=wait_seconds)
        except PoolTimeout as error:
            raise _unavailable(error) from error

    async def close(self) -> None:
        await self._pool.close()

    def _timeout(self, requested: float | None) -> float:
        timeout = self.acquire_timeout if requested is None else requested
        return min(timeout, UNREACHABLE_ACQUIRE_TIMEOUT) if self.unreachable else timeout

    @asynccontextmanager
    async def connection(self, acquire_timeout: float | None = None) -> AsyncIterator[Session]:
        """A pooled connection in autocommit mode, for work that is not one transaction
        (session-level advisory locks)."""
        try:
            async with self._pool.connection(timeout=self._timeout(acquire_timeout)) as conn:
                yield Session(conn)
        except Exception as error:
            if is_connection_error(error) and not isinstance(error, DatabaseUnavailable):
                raise _unavailable(error) from error
            raise

    @asynccontextmanager
    async def raw_connection(
        self, acquire_timeout: float | None = None
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """The driver's connection, for the kit's own modules (migrations, the relay) only."""
        try:
            async with self._pool.connection(timeout=self._timeout(acquire_timeout)) as conn:
                yield conn
        except Exception as error:
            if is_connection_error(error) and not isinstance(error, DatabaseUnavailable):
                raise _unavailable(error) from error
            raise

    @asynccontextmanager
    async def unit_of_work(self, acquire_timeout: float | None = None) -> AsyncIterator[UnitOfWork]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        try:
            async with (
                self._pool.connection(timeout=self._timeout(acquire_timeout)) as conn,
                conn.transaction(),
            ):
                uow = UnitOfWork(conn)
                yield uow
        except Exception as error:
            if is_connection_error(error) and not isinstance(error, DatabaseUnavailable):
                raise _unavailable(error) from error
            raise
        uow._committed()

    # One-statement helpers (each in its own implicit transaction).

    async def execute(self, sql: str, *args: Any) -> int:
        async with self.connection() as session:
            return await session.execute(sql, *args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.unit_of_work() as uow:
            await uow.executemany(sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self.connection() as session:
            return await session.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        async with self.connection() as session:
            return await session.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self.connection() as session:
            return await session.fetchval(sql, *args)

    # Observability.

    def pool_metrics(self) -> tuple[int, int, int]:
        """Publishes the pool's in-use/idle/max counts; returns (in_use, size, max)."""
        stats = self._pool.get_stats()
        size = stats.get("pool_size", 0)
        idle = stats.get("pool_available", 0)
        maximum = self._pool.max_size
        in_use = max(0, size - idle)
        metrics.DB_POOL_CONNECTIONS.labels("in_use").set(in_use)
        metrics.DB_POOL_CONNECTIONS.labels("idle").set(idle)
        metrics.DB_POOL_CONNECTIONS.labels("max").set(maximum)
        return in_use, size, maximum

    def check(self, timeout: float = 1.0) -> Check:
        """A background health check: ``SELECT 1`` through the pool within ``timeout``.

        Going through the pool (not a side connection) is deliberate: an
        exhausted pool makes the service unable to serve, and the check then
        says so.
        """

        async def check() -> str:
            async with self.connection(acquire_timeout=timeout) as session:
                await session.fetchval("SELECT 1")
            in_use, size, maximum = self.pool_metrics()
            return f"pool {in_use}/{size} in use (max {maximum})"

        return check

    async def ping(self, within: float = 2.0) -> bool:
        """Whether a pooled connection answers ``SELECT 1`` within ``timeout``."""
        try:
            async with self.connection(acquire_timeout=within) as session:
                await session.fetchval("SELECT 1")
        except Exception:
            return False
        return True


# -- migrations -----------------------------------------------------------------------


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


async def connect(url: str, *, connect_timeout: float = 5.0) -> psycopg.AsyncConnection[Any]:
    """One autocommit connection outside any pool (migrations, tooling)."""
    instrument_database()
    try:
        conn = await psycopg.AsyncConnection.connect(
            url,
            autocommit=True,
            row_factory=dict_row,
            cursor_factory=_Cursor,
            connect_timeout=max(1, int(connect_timeout)),
        )
    except psycopg.OperationalError as error:
        raise _unavailable(error) from error
    _adapt(conn)
    return conn


async def migrate(
    target: str | Database,
    migrations_dir: Path | None,
    *,
    include_kit: bool = True,
    lock_wait_seconds: float = 300.0,
) -> list[str]:
    """Applies pending migrations and returns their versions, in order.

    ``target`` is a database URL or the service's :class:`Database`. Raises
    :class:`MigrationError` before applying anything if an applied
    migration's file has changed. A failing migration is rolled back and
    stops the run; the ones before it stay applied.
    """
    migrations = discover(KIT_MIGRATIONS_DIR, KIT_PREFIX) if include_kit else []
    if migrations_dir is not None:
        migrations += discover(migrations_dir)

    if isinstance(target, str):
        conn = await connect(target)
        try:
            return await _migrate(conn, migrations, lock_wait_seconds)
        finally:
            await conn.close()
    async with target.raw_connection(acquire_timeout=5.0) as pooled:
        return await _migrate(pooled, migrations, lock_wait_seconds)


async def _migrate(
    conn: psycopg.AsyncConnection[Any], migrations: list[Migration], lock_wait_seconds: float
) -> list[str]:
    started = time.monotonic()
    session = Session(conn)
    # A session-level lock held for the whole run: another replica waits here,
    # then finds everything applied. It is released explicitly below, and by
    # the server if this process dies.
    await session.execute(
        f"SET statement_timeout = {int(lock_wait_seconds * 1000)}"  # a number, not input
    )
    try:
        await session.execute(
            "SELECT pg_advisory_lock(hashtextextended($1, 0))", MIGRATION_LOCK_NAME
        )
    finally:
        await session.execute("RESET statement_timeout")
    try:
        waited = time.monotonic() - started
        if waited > 1:
            log.info("waited for another migration run", extra={"waited_s": round(waited, 1)})
        await session.execute(_CREATE_LEDGER)
        applied = {
            row["version"]: row["checksum"]
            for row in await session.fetch("SELECT version, checksum FROM schema_migrations")
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
                    # No parameters: the file may hold several statements.
                    await conn.execute(migration.sql.encode())
                    duration_ms = int((time.monotonic() - begun) * 1000)
                    await session.execute(
                        "INSERT INTO schema_migrations (version, checksum, duration_ms) "
                        "VALUES ($1, $2, $3)",
                        migration.version,
                        migration.checksum,
                        duration_ms,
                    )
            except psycopg.Error as error:
                if is_connection_error(error):
                    raise _unavailable(error) from error
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
        if not conn.closed:
            await session.execute(
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
