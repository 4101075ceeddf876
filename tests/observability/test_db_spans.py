"""Database queries made inside traced work get CLIENT spans (kit telemetry + pool).

Runs the kit's pool against a throwaway database on the local runner's PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from emporium.kit.config import DatabaseSettings, parse_settings
from emporium.kit.db import create_pool
from emporium.kit.telemetry import query_summary


@pytest.fixture
async def pool(database_factory: Callable[..., Awaitable[str]]) -> AsyncIterator[asyncpg.Pool]:
    url = await database_factory(empty=True)
    pool = await create_pool(parse_settings(DatabaseSettings, {"DATABASE_URL": url}))
    yield pool
    await pool.close()


@pytest.mark.integration
async def test_queries_inside_a_span_are_its_children(
    pool: asyncpg.Pool, spans: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("handle request") as request:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("CREATE TABLE orders (id text PRIMARY KEY)")
            await conn.execute("INSERT INTO orders (id) VALUES ($1)", "o-1")
            assert await conn.fetchval("SELECT count(*) FROM orders") == 1
        with pytest.raises(asyncpg.UndefinedTableError):
            await pool.fetchval("SELECT 1 FROM missing_table")
    # Outside any trace: no span (health checks and polling would drown the rest).
    await pool.fetchval("SELECT 1")

    finished = spans.get_finished_spans()
    queries = [s for s in finished if s.instrumentation_scope.name == "emporium.kit.db"]
    names = [s.name for s in queries]
    assert names == [
        "BEGIN",
        "CREATE",
        "INSERT orders",
        "SELECT orders",
        "COMMIT",
        "SELECT missing_table",
    ], names
    request_id = request.get_span_context().span_id
    for span in queries:
        assert span.parent is not None
        assert span.parent.span_id == request_id
        assert span.kind is SpanKind.CLIENT
        assert span.attributes is not None
        assert span.attributes["db.system.name"] == "postgresql"
        assert span.attributes["db.namespace"].startswith("test_")
        assert span.end_time is not None
        assert span.start_time is not None
        assert span.end_time >= span.start_time
    insert = queries[2]
    assert insert.attributes is not None
    assert insert.attributes["db.query.text"] == "INSERT INTO orders (id) VALUES ($1)"
    assert insert.attributes["db.collection.name"] == "orders"
    failed = queries[-1]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "UndefinedTableError"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("sql", "summary"),
    [
        ("SELECT 1", ("SELECT", None)),
        ("select id FROM outbox WHERE published_at IS NULL", ("SELECT", "outbox")),
        ("INSERT INTO processed_events (a) VALUES ($1)", ("INSERT", "processed_events")),
        ("UPDATE outbox SET published_at = now()", ("UPDATE", "outbox")),
        ("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox)", ("DELETE", "outbox")),
        ("WITH x AS (SELECT 1) SELECT * FROM orders", ("SELECT", "orders")),
        ("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", ("SELECT", None)),
        ("BEGIN;", ("BEGIN", None)),
    ],
)  # fmt: skip
def test_query_summary(sql: str, summary: tuple[str, str | None]) -> None:
    assert query_summary(sql) == summary
