"""OpenTelemetry set-up and the helpers that carry trace context across Kafka.

gRPC spans are started by the kit with the OpenTelemetry API, under the names
and attributes of OpenTelemetry's gRPC instrumentation: SERVER spans in the
kit's server interceptor, CLIENT spans in ``DownstreamClient.call`` (W3C trace
context in the metadata); Kafka and the outbox carry W3C trace context
in message headers, written and read with :func:`inject_headers` and
:func:`extract_context`. Database statements made inside traced work get CLIENT
spans from OpenTelemetry's psycopg instrumentation (:func:`instrument_database`).
"""

from __future__ import annotations

import logging
import os

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

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


def instrument_database() -> None:
    """Turns on OpenTelemetry's psycopg instrumentation (once per process).

    Connections made after this (the kit's pool, the migration runner) get a
    CLIENT span per statement; the kit's data layer suppresses them outside
    traced work and when ``DATABASE_TRACE_QUERIES`` is off (see :mod:`emporium.kit.db`).
    """
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    instrumentor = PsycopgInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(skip_dep_check=True)
