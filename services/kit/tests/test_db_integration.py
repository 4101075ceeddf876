"""The kit's data layer, its health check and the migration runner on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from emporium.kit.config import DatabaseSettings, ServiceSettings, parse_settings
from emporium.kit.db import (
    Database,
    DatabaseUnavailable,
    MigrationError,
    migrate,
    migrate_command,
)
from emporium.kit.service import Service
from emporium.testing.pytest_plugin import (
    RunningService,
    eventually,
    free_port,
    open_database,
    refuse_connections,
    service_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DatabaseFactory = Callable[..., Awaitable[str]]


def service_migrations(folder: Path) -> Path:
    folder.mkdir()
    (folder / "0001_create_widgets.sql").write_text(
        "CREATE TABLE widgets (id bigint PRIMARY KEY, name text NOT NULL);\n"
    )
    (folder / "0002_add_colour.sql").write_text("ALTER TABLE widgets ADD COLUMN colour text;\n")
    return folder


async def query(dsn: str, sql: str, *args: object) -> list[dict[str, object]]:
    database = await open_database(dsn, max_size=1)
    try:
        return await database.fetch(sql, *args)
    finally:
        await database.close()


async def ledger(dsn: str) -> list[str]:
    rows = await query(dsn, "SELECT version FROM schema_migrations ORDER BY applied_at, version")
    return [str(row["version"]) for row in rows]


async def test_migrations_apply_once_in_order_and_are_recorded(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await database_factory(empty=True)
    folder = service_migrations(tmp_path / "migrations")

    first = await migrate(dsn, folder)
    second = await migrate(dsn, folder)

    expected = [
        "kit/0001_outbox",
        "kit/0002_processed_events",
        "kit/0003_outbox_without_notify",
        "0001_create_widgets",
        "0002_add_colour",
    ]
    assert first == expected
    assert second == []
    assert sorted(await ledger(dsn)) == sorted(expected)
    columns = await query(
        dsn, "SELECT column_name FROM information_schema.columns WHERE table_name = 'widgets'"
    )
    tables = await query(
        dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    )
    assert {c["column_name"] for c in columns} == {"id", "name", "colour"}
    assert {"outbox", "processed_events", "schema_migrations", "widgets"} <= {
        t["tablename"] for t in tables
    }
    # The outbox wakes its relay in-process: no trigger notifies in the writer's commit.
    assert await query(dsn, "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal") == []


async def test_a_new_migration_is_applied_on_the_next_run(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await database_factory(empty=True)
    folder = service_migrations(tmp_path / "migrations")
    await migrate(dsn, folder)
    (folder / "0003_add_size.sql").write_text("ALTER TABLE widgets ADD COLUMN size int;\n")

    assert await migrate(dsn, folder) == ["0003_add_size"]


async def test_an_edited_applied_migration_is_refused_before_anything_runs(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await database_factory(empty=True)
    folder = service_migrations(tmp_path / "migrations")
    await migrate(dsn, folder)
    (folder / "0001_create_widgets.sql").write_text(
        "CREATE TABLE widgets (id uuid PRIMARY KEY, name text NOT NULL);\n"
    )
    (folder / "0003_add_size.sql").write_text("ALTER TABLE widgets ADD COLUMN size int;\n")

    with pytest.raises(MigrationError, match=r"0001_create_widgets\.sql"):
        await migrate(dsn, folder)

    assert "0003_add_size" not in await ledger(dsn)


async def test_a_failing_migration_is_rolled_back_and_not_recorded(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await database_factory(empty=True)
    folder = service_migrations(tmp_path / "migrations")
    (folder / "0003_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nALTER TABLE no_such_table ADD COLUMN x int;\n"
    )

    with pytest.raises(MigrationError, match=r"0003_broken\.sql failed and was rolled back"):
        await migrate(dsn, folder)

    assert "0003_broken" not in await ledger(dsn)
    assert "0002_add_colour" in await ledger(dsn)
    assert await query(dsn, "SELECT to_regclass('half_done') AS t") == [{"t": None}]


async def test_replicas_migrating_at_once_apply_each_file_once(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await database_factory(empty=True)
    folder = service_migrations(tmp_path / "migrations")
    # A slow migration widens the window in which the replicas overlap.
    (folder / "0003_slow.sql").write_text("SELECT pg_sleep(0.5);\nCREATE TABLE slow (id int);\n")

    results = await asyncio.gather(*(migrate(dsn, folder) for _ in range(4)))

    applied = [version for result in results for version in result]
    assert sorted(applied) == sorted(set(applied))  # nothing applied twice
    assert len(applied) == 6
    assert sum(1 for result in results if result) == 1  # one runner did all of it
    assert len(await ledger(dsn)) == 6


async def test_pool_and_health_check(database_url: str) -> None:
    settings = parse_settings(
        DatabaseSettings,
        env={
            "DATABASE_URL": database_url,
            "DATABASE_POOL_MIN_SIZE": "1",
            "DATABASE_POOL_MAX_SIZE": "3",
        },
    )
    database = Database.from_settings(settings, application_name="kit-tests")
    await database.open(wait=True)
    try:
        check = database.check()

        detail = await check()

        assert detail == "pool 0/1 in use (max 3)"
        async with database.unit_of_work() as uow:
            name = await uow.fetchval("SELECT current_setting('application_name')")
            assert name == "kit-tests"
            assert "1/" in await check()  # this connection is in use while it checks
    finally:
        await database.close()


async def test_a_unit_of_work_commits_together_or_not_at_all(database_url: str) -> None:
    database = await open_database(database_url)
    try:
        await database.execute("CREATE TABLE widgets (id int PRIMARY KEY, tags text[])")
        async with database.unit_of_work() as uow:
            assert uow.in_transaction
            assert await uow.execute("INSERT INTO widgets VALUES ($1, $2)", 1, ["a", "b"]) == 1
            await uow.executemany("INSERT INTO widgets VALUES ($1, $2)", [(2, []), (3, ["c"])])

        async def fails_half_way() -> None:
            async with database.unit_of_work() as uow:
                await uow.execute("INSERT INTO widgets VALUES ($1, $2)", 4, None)
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await fails_half_way()
        with pytest.raises(psycopg.errors.UniqueViolation):
            await database.execute("INSERT INTO widgets VALUES ($1, NULL)", 1)

        rows = await database.fetch("SELECT id, tags FROM widgets ORDER BY id")
        assert rows == [
            {"id": 1, "tags": ["a", "b"]},
            {"id": 2, "tags": []},
            {"id": 3, "tags": ["c"]},
        ]
        assert await database.fetchval("SELECT count(*) FROM widgets WHERE id = $1", 4) == 0
        assert await database.fetchrow("SELECT id FROM widgets WHERE id = $1", 9) is None
        assert await database.execute("DELETE FROM widgets WHERE id > $1", 1) == 2
    finally:
        await database.close()


async def test_after_commit_callbacks_run_once_after_a_commit_and_never_after_a_rollback(
    database_url: str,
) -> None:
    database = await open_database(database_url)
    calls: list[str] = []

    def committed() -> None:
        calls.append("committed")

    def fails() -> None:
        raise RuntimeError("a signal that fails")

    try:
        # Checked at commit, so the last case below fails in the commit itself.
        await database.execute(
            "CREATE TABLE signals (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED)"
        )
        async with database.unit_of_work() as uow:
            await uow.execute("INSERT INTO signals VALUES (1)")
            uow.after_commit(fails)  # logged; the writer's commit stands
            uow.after_commit(committed)
            uow.after_commit(committed)  # registered twice, called once
            assert calls == []  # not before the commit
        assert calls == ["committed"]

        async def rolls_back() -> None:
            async with database.unit_of_work() as uow:
                await uow.execute("INSERT INTO signals VALUES (2)")
                uow.after_commit(committed)
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await rolls_back()

        async def commit_refused() -> None:
            async with database.unit_of_work() as uow:
                uow.after_commit(committed)
                await uow.execute("INSERT INTO signals VALUES (1)")

        with pytest.raises(psycopg.errors.UniqueViolation):
            await commit_refused()
        assert calls == ["committed"]
        assert await database.fetchval("SELECT count(*) FROM signals") == 1
    finally:
        await database.close()


async def test_health_check_fails_when_the_database_refuses_connections(
    database_url: str, admin_dsn: str
) -> None:
    database = await open_database(database_url)
    name = database_url.rsplit("/", 1)[1]
    try:
        check = database.check(timeout=1.0)
        assert await check()
        await refuse_connections(admin_dsn, name, refuse=True)
        # Lost and refused connections surface as the kit's one error.
        with pytest.raises(DatabaseUnavailable):
            await check()
        await eventually(lambda: asyncio.sleep(0, database.unreachable), within=5)
        # Known unreachable: a request fails fast instead of waiting the 2 s acquire
        # timeout, so callers answer UNAVAILABLE within their own deadlines.
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            await database.fetchval("SELECT 1")
        assert time.monotonic() - started < 1.0
        await refuse_connections(admin_dsn, name, refuse=False)
        # No stale connection is handed out after the outage: the first query works.
        assert await eventually(lambda: database.ping(within=1.0), within=10) < 2.5
        assert await database.fetchval("SELECT 1") == 1
    finally:
        await refuse_connections(admin_dsn, name, refuse=False)
        await database.close()


async def test_a_pooled_connection_the_server_terminated_is_replaced_not_handed_out(
    database_url: str, admin_dsn: str
) -> None:
    # One connection, used a moment ago: the pool's check skips the round trip
    # for an idle connection the server has not written to, and must still
    # notice one whose backend the server has just ended.
    database = await open_database(database_url, max_size=1)
    try:
        first_pid = await database.fetchval("SELECT pg_backend_pid()")
        assert await database.fetchval("SELECT pg_backend_pid()") == first_pid  # reused
        async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (first_pid,))
            await eventually(
                lambda: _backend_gone(admin, first_pid), within=5, what="backend ended"
            )

        # No error reaches the caller: the next statement runs on a new connection.
        second_pid = await database.fetchval("SELECT pg_backend_pid()")
        assert second_pid != first_pid
        assert await database.fetchval("SELECT pg_backend_pid()") == second_pid
    finally:
        await database.close()


async def _backend_gone(admin: psycopg.AsyncConnection[Any], pid: int) -> bool:
    cursor = await admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
    row = await cursor.fetchone()
    return row is not None and row[0] == 0


async def test_the_migrate_command_reads_only_the_database_settings(
    database_factory: DatabaseFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dsn = await database_factory(empty=True)
    folder = service_migrations(tmp_path / "migrations")
    monkeypatch.setenv("DATABASE_URL", dsn)
    command = migrate_command("widgets", folder)

    applied = await command()

    assert applied == [
        "kit/0001_outbox",
        "kit/0002_processed_events",
        "kit/0003_outbox_without_notify",
        "0001_create_widgets",
        "0002_add_colour",
    ]
    # The log lines (JSON, one per migration) come first; the summary last.
    summary = "widgets: 5 migration(s) applied" + "".join(f"\n  {v}" for v in applied) + "\n"
    assert capsys.readouterr().out.endswith(summary)
    assert await command() == []
    assert capsys.readouterr().out.endswith("widgets: 0 migration(s) applied\n")


class WidgetSettings(ServiceSettings, DatabaseSettings):
    pass


@pytest.mark.parametrize("migrate_on_start", [True, False])
async def test_service_database_migrates_on_start_only_when_asked(
    database_factory: DatabaseFactory,
    tmp_path: Path,
    migrate_on_start: bool,
    run_service: Callable[..., Awaitable[RunningService]],
) -> None:
    dsn = await database_factory(empty=True)
    settings = parse_settings(
        WidgetSettings,
        service_env(
            "widgets",
            DATABASE_URL=dsn,
            DATABASE_MIGRATE_ON_START=str(migrate_on_start).lower(),
        ),
    )
    service = Service("widgets", settings)
    database = await service.database(settings, service_migrations(tmp_path / "migrations"))
    running = await run_service(service)

    widgets = await database.fetchval("SELECT to_regclass('widgets') IS NOT NULL")
    report = await running.healthz()

    assert widgets is migrate_on_start
    assert report["dependencies"]["postgres"]["critical"] is True
    assert report["dependencies"]["postgres"]["status"] == "up"


async def test_a_service_whose_database_is_unreachable_starts_unready_and_keeps_trying(
    run_service: Callable[..., Awaitable[RunningService]], tmp_path: Path
) -> None:
    # A real port that nothing listens on: every connection attempt is refused.
    port = free_port()
    settings = parse_settings(
        WidgetSettings,
        service_env(
            "widgets",
            DATABASE_URL=f"postgresql://emporium@127.0.0.1:{port}/widgets",
            DATABASE_MIGRATE_ON_START="true",
        ),
    )
    service = Service("widgets", settings)
    await service.database(settings, service_migrations(tmp_path / "migrations"))
    running = await run_service(service, wait_ready=False)

    async with httpx.AsyncClient(base_url=running.admin_url, timeout=2) as http:

        async def answering() -> bool:
            try:
                return (await http.get("/livez")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(answering, within=10, what="/livez answering")
        await asyncio.sleep(2.5)  # several health rounds and connection attempts
        livez = await http.get("/livez")
        readyz = await http.get("/readyz")
    assert livez.status_code == 200
    assert readyz.status_code == 503
    assert "postgres" in readyz.text, readyz.text
    assert not running.task.done()  # still running, still retrying


async def test_a_service_whose_database_comes_late_migrates_then_becomes_ready(
    database_factory: DatabaseFactory,
    admin_dsn: str,
    tmp_path: Path,
    run_service: Callable[..., Awaitable[RunningService]],
) -> None:
    dsn = await database_factory(empty=True)
    name = dsn.rsplit("/", 1)[1]
    await refuse_connections(admin_dsn, name, refuse=True)
    try:
        settings = parse_settings(
            WidgetSettings,
            service_env("widgets", DATABASE_URL=dsn, DATABASE_MIGRATE_ON_START="true"),
        )
        service = Service("widgets", settings)
        await service.database(settings, service_migrations(tmp_path / "migrations"))
        running = await run_service(service, wait_ready=False)
        await asyncio.sleep(2.0)
        assert not await running.ready()
    finally:
        await refuse_connections(admin_dsn, name, refuse=False)

    await eventually(running.ready, within=20, what="ready once the database is back")
    assert "0002_add_colour" in await ledger(dsn)
