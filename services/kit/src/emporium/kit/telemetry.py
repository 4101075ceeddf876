"""OpenTelemetry set-up and the helpers that carry trace context across Kafka.

gRPC spans come from OpenTelemetry's gRPC instrumentation (interceptors added
by the kit's server and clients); Kafka and the outbox carry W3C trace context
in message headers, written and read with :func:`inject_headers` and
:func:`extract_context`. Database queries made inside traced work get CLIENT
spans through asyncpg's query logger (:func:`trace_queries`, the pool's
``init`` hook): OpenTelemetry's asyncpg instrumentation lags one release
behind the gRPC one the kit uses, and the two cannot be installed together.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

log = logging.getLogger(__name__)

#: Export delay of the batch span processor in local runs, where a person (or a
#: test) looks at a trace right after the request; the SDK's default is 5 s.
#: ``OTEL_BSP_SCHEDULE_DELAY`` (standard, milliseconds) overrides it anywhere.
LOCAL_SCHEDULE_DELAY_MILLIS = 200


def configure_tracing(
    service: str,
    environment: str,
    exporter: str = "none",
    endpoint: str | None = None,
    extra_processors: list[SpanProcessor] | None = None,
) -> TracerProvider:
    """Installs the global tracer provider. ``exporter`` is otlp, console or none.

    The batch processor follows the standard ``OTEL_BSP_*`` variables; when
    ``OTEL_BSP_SCHEDULE_DELAY`` is unset and the environment is ``local``,
    spans are exported every 200 ms instead of every 5 s.
    """
    resource = Resource.create(
        {"service.name": service, "deployment.environment.name": environment}
    )
    provider = TracerProvider(resource=resource)
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        otlp = OTLPSpanExporter(endpoint=endpoint)
        delay = _schedule_delay(environment)
        provider.add_span_processor(BatchSpanProcessor(otlp, schedule_delay_millis=delay))
    elif exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    for processor in extra_processors or []:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider


def _schedule_delay(environment: str) -> float | None:
    """None lets the SDK read ``OTEL_BSP_SCHEDULE_DELAY`` (or use its default)."""
    if os.environ.get("OTEL_BSP_SCHEDULE_DELAY") or environment != "local":
        return None
    return LOCAL_SCHEDULE_DELAY_MILLIS


def inject_headers(carrier: dict[str, str] | None = None) -> dict[str, str]:
    """The current trace context as W3C headers (``traceparent``, ``tracestate``)."""
    carrier = {} if carrier is None else carrier
    propagate.inject(carrier)
    return carrier


def extract_context(headers: dict[str, str]) -> otel_context.Context:
    """The trace context carried by message headers (empty context when there is none)."""
    return propagate.extract(headers)


# -- database spans ------------------------------------------------------------

_SQL_OPERATION = re.compile(
    r"^\s*(?:WITH\b.*?\)\s*)?(?P<op>SELECT|INSERT|UPDATE|DELETE)\b", re.IGNORECASE | re.DOTALL
)
_SQL_TABLE = re.compile(
    r"\b(?:FROM|INTO|UPDATE)\s+(?P<table>[A-Za-z_][A-Za-z0-9_.]*)", re.IGNORECASE
)
_SQL_WORD = re.compile(r"[A-Za-z]+")
#: What asyncpg's pool runs on every release (pool housekeeping, not the caller's work).
_POOL_RESET_PREFIX = "SELECT pg_advisory_unlock_all();"
_db_tracer = trace.get_tracer("emporium.kit.db")


def query_summary(sql: str) -> tuple[str, str | None]:
    """('SELECT', 'orders') for ``SELECT ... FROM orders ...``; ('BEGIN', None) and the like."""
    operation = _SQL_OPERATION.match(sql)
    if operation is None:
        word = _SQL_WORD.search(sql)
        return (word[0].upper() if word else "QUERY"), None
    table = _SQL_TABLE.search(sql, operation.start("op"))
    return operation["op"].upper(), table["table"] if table else None


def _record_query(record: Any) -> None:
    """asyncpg's query logger: one CLIENT span per query run inside traced work.

    asyncpg calls it right after the query, in a copy of the caller's context,
    so the current span is the request's (or the message's) and the span is
    back-dated by the query's elapsed time. Queries outside any trace (health
    checks, the relay's polling) get no span: they would each be a trace of
    their own and drown the useful ones.
    """
    parent = trace.get_current_span()
    if not parent.get_span_context().is_valid or record.query.startswith(_POOL_RESET_PREFIX):
        return
    end = time.time_ns()
    operation, table = query_summary(record.query)
    params = record.conn_params
    address = record.conn_addr
    attributes: dict[str, Any] = {
        "db.system.name": "postgresql",
        "db.operation.name": operation,
        "db.query.text": record.query,
    }
    database = getattr(params, "database", None)
    if database:
        attributes["db.namespace"] = database
    if table:
        attributes["db.collection.name"] = table
    if isinstance(address, tuple) and len(address) >= 2:
        attributes["server.address"] = str(address[0])
        attributes["server.port"] = int(address[1])
    span = _db_tracer.start_span(
        f"{operation} {table}" if table else operation,
        kind=SpanKind.CLIENT,
        attributes=attributes,
        start_time=end - int(record.elapsed * 1e9),
    )
    if record.exception is not None:
        span.record_exception(record.exception)
        span.set_attribute("error.type", type(record.exception).__name__)
        span.set_status(Status(StatusCode.ERROR, str(record.exception)[:200]))
    span.end(end_time=end)


async def trace_queries(conn: Any) -> None:
    """Pool ``init`` hook: every query on this connection gets a span (see ``_record_query``)."""
    conn.add_query_logger(_record_query)
