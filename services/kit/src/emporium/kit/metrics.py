"""Every Prometheus metric the kit exposes, defined once.

Names follow Prometheus conventions (base units, ``_total`` counters) with an
``emporium_`` prefix so they never collide with exporters' metrics. The
dashboards and alert rules in charts/ refer to these names and to the
gateway's own (the HTTP edge and its read cache, in
:mod:`emporium.gateway.metrics`) only.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Latency buckets in seconds, from 1 ms to 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

RPC_SERVER_REQUESTS = Counter(
    "emporium_rpc_server_requests_total",
    "gRPC requests handled, by method and status code",
    ["rpc_service", "rpc_method", "code"],
)
RPC_SERVER_DURATION = Histogram(
    "emporium_rpc_server_duration_seconds",
    "gRPC server handling time",
    ["rpc_service", "rpc_method"],
    buckets=LATENCY_BUCKETS,
)
RPC_CLIENT_REQUESTS = Counter(
    "emporium_rpc_client_requests_total",
    "gRPC calls made to a downstream, by outcome code",
    ["downstream", "rpc_method", "code"],
)
RPC_CLIENT_DURATION = Histogram(
    "emporium_rpc_client_duration_seconds",
    "gRPC client call time, retries included",
    ["downstream", "rpc_method"],
    buckets=LATENCY_BUCKETS,
)
RPC_CLIENT_ATTEMPTS = Counter(
    "emporium_rpc_client_attempts_total",
    "gRPC attempts sent to a downstream (each retry counts), by status code",
    ["downstream", "rpc_method", "code"],
)
BREAKER_STATE = Gauge(
    "emporium_breaker_state",
    "Circuit breaker state per downstream: 0 closed, 1 half-open, 2 open",
    ["downstream"],
)
BREAKER_TRANSITIONS = Counter(
    "emporium_breaker_transitions_total",
    "Circuit breaker state changes per downstream",
    ["downstream", "state"],
)
KAFKA_CONSUMER_LAG = Gauge(
    "emporium_kafka_consumer_lag",
    "Messages not yet consumed, per topic and partition",
    ["topic", "partition", "group"],
)
KAFKA_MESSAGES = Counter(
    "emporium_kafka_messages_total",
    "Messages handled by a consumer, by outcome (processed, duplicate, retried, dead_lettered)",
    ["topic", "group", "outcome"],
)
KAFKA_PROCESSING_DURATION = Histogram(
    "emporium_kafka_processing_duration_seconds",
    "Time to process one message, transaction included",
    ["topic", "group"],
    buckets=LATENCY_BUCKETS,
)
OUTBOX_BACKLOG = Gauge(
    "emporium_outbox_backlog",
    "Outbox rows written but not yet published",
)
OUTBOX_PUBLISHED = Counter(
    "emporium_outbox_published_total",
    "Outbox events published to Kafka",
    ["topic"],
)
OUTBOX_PUBLISH_DELAY = Histogram(
    "emporium_outbox_publish_delay_seconds",
    "Time from an outbox row's commit to its publication",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
DB_POOL_CONNECTIONS = Gauge(
    "emporium_db_pool_connections",
    "Database pool connections by state (in_use, idle, max)",
    ["state"],
)
DEPENDENCY_UP = Gauge(
    "emporium_dependency_up",
    "Last background health check of a dependency: 1 up, 0 down",
    ["dependency", "critical"],
)
DEPENDENCY_CHECK_DURATION = Gauge(
    "emporium_dependency_check_duration_seconds",
    "Duration of the last health check of a dependency",
    ["dependency"],
)
READY = Gauge("emporium_ready", "1 when /readyz answers 200")
