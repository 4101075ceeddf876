"""CPU per database operation through the kit, on each event loop, side by side.

    python3 scripts/platformctl.py start          # PostgreSQL
    uv run python bench/db_cost.py --rounds 3 --operations 2000

A checkout costs the system more CPU in its SQL than anywhere else (about
20 statements in orders alone; docs/decisions/kafka.md). This prints what one
operation costs, in microseconds of CPU: the benchmark's own process (the
client: psycopg, the pool, the kit, the event loop) and the PostgreSQL
backends that served it (from /proc), for

* ``psycopg``: a bare psycopg connection, one ``SELECT``, before the kit
  instruments psycopg (the floor of the client library);
* ``pool, kit check``: one ``SELECT`` through :class:`~emporium.kit.db.Database`,
  a connection handed out by the pool and checked the kit's way (a round
  trip only when the server has written to the idle connection);
* ``pool, psycopg_pool check``: the same with psycopg_pool's own check (an
  empty statement on every hand-out);
* ``unit of work, 5 INSERTs``: one transaction of five one-row statements;
* ``unit of work, 1 INSERT of 5 rows``: the same rows in one set-based statement;
* ``pipeline, 5 INSERTs``: the five statements of a transaction sent in one
  psycopg pipeline.

Each on asyncio's own loop and on uvloop (the services' loop), in rounds
that alternate, in a throwaway database. Figures only: nothing passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import uvloop
from psycopg_pool import AsyncConnectionPool

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from event_path import Scratch  # noqa: E402
from load import cpu_seconds  # noqa: E402

from emporium.kit.db import Database  # noqa: E402

APPLICATION = "bench-db-cost"
ROWS = 5

Operation = Callable[[], Awaitable[Any]]


async def backend_cpu(admin_dsn: str) -> float:
    """CPU seconds so far of every backend serving this benchmark."""
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as admin:
        cursor = await admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APPLICATION,)
        )
        pids = [row[0] for row in await cursor.fetchall()]
    return sum(cpu_seconds(pid) for pid in pids)


async def measure(admin_dsn: str, operation: Operation, count: int) -> tuple[float, float]:
    """(client, server) microseconds of CPU per operation."""
    for _ in range(min(200, count)):
        await operation()
    server_before = await backend_cpu(admin_dsn)
    client_before = time.process_time()
    for _ in range(count):
        await operation()
    client = (time.process_time() - client_before) / count * 1e6
    server = (await backend_cpu(admin_dsn) - server_before) / count * 1e6
    return client, server


async def bare_psycopg(url: str, admin_dsn: str, count: int) -> tuple[float, float]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True, application_name=APPLICATION)

    async def select() -> None:
        cursor = await conn.execute("SELECT 1")
        await cursor.fetchone()

    try:
        return await measure(admin_dsn, select, count)
    finally:
        await conn.close()


async def through_the_kit(url: str, admin_dsn: str, count: int) -> dict[str, tuple[float, float]]:
    database = Database(url, application_name=APPLICATION, min_size=1, max_size=1)
    await database.open(wait=True)
    rows = list(range(ROWS))

    async def select() -> None:
        await database.fetchval("SELECT 1")

    async def five_inserts() -> None:
        async with database.unit_of_work() as uow:
            for row in rows:
                await uow.execute("INSERT INTO t (a, b) VALUES ($1, $2)", row, "x")

    async def one_insert() -> None:
        async with database.unit_of_work() as uow:
            await uow.execute(
                "INSERT INTO t (a, b) SELECT * FROM unnest($1::int[], $2::text[])",
                rows,
                ["x"] * ROWS,
            )

    async def pipelined() -> None:
        async with database.raw_connection() as conn, conn.pipeline(), conn.transaction():
            for row in rows:
                await conn.execute("INSERT INTO t (a, b) VALUES ($1, $2)", (row, "x"))

    results: dict[str, tuple[float, float]] = {}
    try:
        await database.execute("CREATE TABLE IF NOT EXISTS t (a int, b text)")
        results["pool, kit check"] = await measure(admin_dsn, select, count)
        kit_check = database._pool._check
        database._pool._check = AsyncConnectionPool.check_connection
        results["pool, psycopg_pool check"] = await measure(admin_dsn, select, count)
        database._pool._check = kit_check
        results[f"unit of work, {ROWS} INSERTs"] = await measure(admin_dsn, five_inserts, count)
        results[f"unit of work, 1 INSERT of {ROWS} rows"] = await measure(
            admin_dsn, one_insert, count
        )
        results[f"pipeline, {ROWS} INSERTs"] = await measure(admin_dsn, pipelined, count)
        await database.execute("TRUNCATE t")
    finally:
        await database.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--operations", type=int, default=2000, help="per variant and round")
    args = parser.parse_args()
    print("$ uv run python bench/db_cost.py " + shlex.join(sys.argv[1:]))

    samples: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)

    async def bare_round(scratch: Scratch, loop: str) -> None:
        samples[("psycopg", loop)].append(
            await bare_psycopg(scratch.url, scratch.admin_dsn, args.operations)
        )

    async def kit_round(scratch: Scratch, loop: str) -> None:
        for name, figures in (
            await through_the_kit(scratch.url, scratch.admin_dsn, args.operations)
        ).items():
            samples[(name, loop)].append(figures)

    async def create() -> Scratch:
        return await Scratch().__aenter__()

    scratch = asyncio.run(create())
    runners = {"asyncio": asyncio.run, "uvloop": uvloop.run}
    try:
        # The bare rounds first: creating a kit Database instruments psycopg for the process.
        for _ in range(args.rounds):
            for loop, run in runners.items():
                run(bare_round(scratch, loop))
        for _ in range(args.rounds):
            for loop, run in runners.items():
                run(kit_round(scratch, loop))
    finally:
        asyncio.run(scratch.__aexit__(None, None, None))

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"CPU per operation (µs), median of {args.rounds} rounds of {args.operations}; load {load}"
    )
    print(f"{'operation':36s} {'loop':8s} {'client':>7s} {'server':>7s} {'total':>7s}")
    names = list(dict.fromkeys(name for name, _ in samples))
    for name, loop in sorted(samples, key=lambda key: (names.index(key[0]), key[1])):
        figures = samples[(name, loop)]
        client = statistics.median(c for c, _ in figures)
        server = statistics.median(s for _, s in figures)
        print(f"{name:36s} {loop:8s} {client:7.0f} {server:7.0f} {client + server:7.0f}")


if __name__ == "__main__":
    main()
