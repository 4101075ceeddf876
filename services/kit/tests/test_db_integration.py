"""The pool, its health check and the migration runner on the real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from emporium.kit.config import DatabaseSettings, ServiceSettings, parse_settings
from emporium.kit.db import (
    MigrationError,
    create_pool,
    database_check,
    migrate,
    migrate_command,
)
from emporium.kit.service import Service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DatabaseFactory = Callable[..., Awaitable[str]]


def service_migrations(folder: Path) -> Path:
    folder.mkdir()
    (folder / "0001_create_widgets.sql").write_text(
        "CREATE TABLE widgets (id bigint PRIMARY KEY, name text NOT NULL);\n"
    )
    (folder / "0002_add_colour.sql").write_text("ALTER TABLE widgets ADD COLUMN colour text;\n")
    return folder


async def ledger(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT version FROM schema_migrations ORDER BY applied_at, version"
        )
        return [row["version"] for row in rows]
    finally:
        await conn.close()


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
        "0001_create_widgets",
        "0002_add_colour",
    ]
    assert first == expected
    assert second == []
    assert sorted(await ledger(dsn)) == sorted(expected)
    conn = await asyncpg.connect(dsn)
    try:
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'widgets'"
        )
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
    finally:
        await conn.close()
    assert {c["column_name"] for c in columns} == {"id", "name", "colour"}
    assert {"outbox", "processed_events", "schema_migrations", "widgets"} <= {
        t["tablename"] for t in tables
    }


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
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
    finally:
        await conn.close()


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
    assert len(applied) == 5
    assert sum(1 for result in results if result) == 1  # one runner did all of it
    assert len(await ledger(dsn)) == 5


async def test_pool_and_health_check(database_url: str) -> None:
    settings = parse_settings(
        DatabaseSettings,
        env={
            "DATABASE_URL": database_url,
            "DATABASE_POOL_MIN_SIZE": "1",
            "DATABASE_POOL_MAX_SIZE": "3",
        },
    )
    pool = await create_pool(settings, application_name="kit-tests")
    try:
        check = database_check(pool)

        detail = await check()

        assert detail == "pool 0/1 in use (max 3)"
        async with pool.acquire() as conn:
            name = await conn.fetchval("SELECT current_setting('application_name')")
            assert name == "kit-tests"
            assert "1/" in await check()  # this connection is in use while it checks
    finally:
        await pool.close()


async def test_health_check_fails_when_the_database_refuses_connections(
    database_url: str, admin_dsn: str
) -> None:
    settings = parse_settings(DatabaseSettings, env={"DATABASE_URL": database_url})
    pool = await create_pool(settings)
    name = database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(admin_dsn)
    try:
        check = database_check(pool, timeout=1.0)
        assert await check()
        # Take this one database away for real: refuse new connections and
        # terminate the pool's (other databases on the server are untouched).
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        # Depending on timing the terminated connection surfaces as a server
        # error, a closed connection or a confused protocol state.
        failures = (
            OSError,
            TimeoutError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
        )
        with pytest.raises(failures):
            await check()
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert await check()
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
        await pool.close()


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
        "0001_create_widgets",
        "0002_add_colour",
    ]
    # The log lines (JSON, one per migration) come first; the summary last.
    summary = "widgets: 4 migration(s) applied" + "".join(f"\n  {v}" for v in applied) + "\n"
    assert capsys.readouterr().out.endswith(summary)
    assert await command() == []
    assert capsys.readouterr().out.endswith("widgets: 0 migration(s) applied\n")


class WidgetSettings(ServiceSettings, DatabaseSettings):
    pass


@pytest.mark.parametrize("migrate_on_start", [True, False])
async def test_service_database_migrates_on_start_only_when_asked(
    database_factory: DatabaseFactory, tmp_path: Path, migrate_on_start: bool
) -> None:
    dsn = await database_factory(empty=True)
    settings = parse_settings(
        WidgetSettings,
        {"DATABASE_URL": dsn, "DATABASE_MIGRATE_ON_START": str(migrate_on_start).lower()},
    )
    service = Service("widgets", settings)

    pool = await service.database(settings, service_migrations(tmp_path / "migrations"))
    try:
        widgets = await pool.fetchval("SELECT to_regclass('widgets') IS NOT NULL")
        await service.health.run_once()
        ready, report = service.health.report()
    finally:
        await pool.close()

    assert widgets is migrate_on_start
    assert ready
    assert report["dependencies"]["postgres"]["critical"] is True
    assert report["dependencies"]["postgres"]["status"] == "up"
