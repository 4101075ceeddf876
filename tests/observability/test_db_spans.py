"""Database statements made inside traced work get CLIENT spans (psycopg instrumentation).

Runs the kit's data layer against a throwaway database on the local runner's
PostgreSQL. The spans come from OpenTelemetry's psycopg instrumentation (the
statement's first word as the name, ``db.statement`` with the SQL as written);
the kit suppresses them outside traced work and when ``DATABASE_TRACE_QUERIES``
is off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from emporium.kit.config import DatabaseSettings, parse_settings
from emporium.kit.db import Database, set_query_tracing

SCOPE = "opentelemetry.instrumentation.psycopg"


@pytest.fixture
async def database(database_factory: Callable[..., Awaitable[str]]) -> AsyncIterator[Database]:
    url = await database_factory(empty=True)
    database = Database.from_settings(parse_settings(DatabaseSettings, {"DATABASE_URL": url}))
    await database.open(wait=True)
    yield database
    await database.close()
    set_query_tracing(True)


@pytest.mark.integration
async def test_statements_inside_a_span_are_its_children(
    database: Database, spans: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("handle request") as request:
        async with database.unit_of_work() as uow:
            await uow.execute("CREATE TABLE orders (id text PRIMARY KEY)")
            await uow.execute("INSERT INTO orders (id) VALUES ($1)", "o-1")
            assert await uow.fetchval("SELECT count(*) FROM orders") == 1
        with pytest.raises(psycopg.errors.UndefinedTable):
            await database.fetchval("SELECT 1 FROM missing_table")
    # Outside any trace: no span (health checks and polling would drown the rest),
    # and the pool's own connection checks never get one.
    await database.fetchval("SELECT 1")

    queries = [s for s in spans.get_finished_spans() if s.instrumentation_scope.name == SCOPE]
    names = [s.name for s in queries]
    assert names == ["CREATE", "INSERT", "SELECT", "SELECT"], names
    request_id = request.get_span_context().span_id
    for span in queries:
        assert span.parent is not None
        assert span.parent.span_id == request_id
        assert span.kind is SpanKind.CLIENT
        assert span.attributes is not None
        assert span.attributes["db.system"] == "postgresql"
        assert str(span.attributes["db.name"]).startswith("test_")
        assert span.end_time is not None
        assert span.start_time is not None
        assert span.end_time >= span.start_time
    insert = queries[1]
    assert insert.attributes is not None
    assert insert.attributes["db.statement"] == "INSERT INTO orders (id) VALUES ($1)"
    failed = queries[-1]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["db.statement"] == "SELECT 1 FROM missing_table"


@pytest.mark.integration
async def test_statement_spans_can_be_switched_off(
    database: Database, spans: InMemorySpanExporter
) -> None:
    set_query_tracing(False)
    with trace.get_tracer("test").start_as_current_span("handle request"):
        assert await database.fetchval("SELECT 1") == 1

    assert [s.name for s in spans.get_finished_spans()] == ["handle request"]
