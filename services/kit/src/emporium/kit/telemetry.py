"""OpenTelemetry set-up and the helpers that carry trace context across Kafka.

gRPC spans come from OpenTelemetry's gRPC instrumentation (interceptors added
by the kit's server and clients); Kafka and the outbox carry W3C trace context
in message headers, written and read with :func:`inject_headers` and
:func:`extract_context`.
"""

from __future__ import annotations

import logging

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

log = logging.getLogger(__name__)


def configure_tracing(
    service: str,
    environment: str,
    exporter: str = "none",
    endpoint: str | None = None,
    extra_processors: list[SpanProcessor] | None = None,
) -> TracerProvider:
    """Installs the global tracer provider. ``exporter`` is otlp, console or none."""
    resource = Resource.create(
        {"service.name": service, "deployment.environment.name": environment}
    )
    provider = TracerProvider(resource=resource)
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    elif exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    for processor in extra_processors or []:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider


def inject_headers(carrier: dict[str, str] | None = None) -> dict[str, str]:
    """The current trace context as W3C headers (``traceparent``, ``tracestate``)."""
    carrier = {} if carrier is None else carrier
    propagate.inject(carrier)
    return carrier


def extract_context(headers: dict[str, str]) -> otel_context.Context:
    """The trace context carried by message headers (empty context when there is none)."""
    return propagate.extract(headers)
