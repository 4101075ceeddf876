"""The names the chart and the services rely on (docs/configuration.md).

This module is the only place in ``infra/`` that spells them; the contract test
checks it against the document and, when present, against the chart.
"""

from __future__ import annotations

from dataclasses import dataclass

# Services that own a database and use Kafka. The gateway owns neither.
DATA_SERVICES: tuple[str, ...] = ("catalog", "recommendations", "orders", "fraud")

TOPICS: tuple[str, ...] = (
    "orders.order-placed.v1",
    "orders.order-status-changed.v1",
    "fraud.decision-made.v1",
)
DLQ_SUFFIX = ".dlq"

# Keys of Secret ``emporium-<service>`` (consumed by the chart with envFrom).
SERVICE_SECRET_KEYS: tuple[str, ...] = (
    "DATABASE_URL",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
)
# Keys of ConfigMap ``emporium-platform``.
PLATFORM_CONFIGMAP = "emporium-platform"
PLATFORM_CONFIG_KEYS: tuple[str, ...] = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
    "ENVIRONMENT",
)
ENVIRONMENTS: tuple[str, ...] = ("dev", "staging", "prod")


def service_secret_name(service: str) -> str:
    return f"emporium-{service}"


def app_namespace(environment: str) -> str:
    return f"emporium-{environment}"


def dlq(topic: str) -> str:
    return f"{topic}{DLQ_SUFFIX}"


def all_topics() -> tuple[str, ...]:
    """Every topic with its dead-letter twin, in a stable order."""
    return tuple(name for topic in TOPICS for name in (topic, dlq(topic)))


@dataclass(frozen=True)
class TopicAccess:
    """What one service produces and consumes; its consumer group is its name."""

    service: str
    produces: frozenset[str]
    consumes: frozenset[str]

    @property
    def consumer_group(self) -> str:
        return self.service


def _access(service: str, produces: set[str], consumes: set[str]) -> TopicAccess:
    # A consumer parks poison messages on the dead-letter twin of what it reads.
    dead_letters = {dlq(topic) for topic in consumes}
    return TopicAccess(service, frozenset(produces | dead_letters), frozenset(consumes))


TOPIC_ACCESS: dict[str, TopicAccess] = {
    access.service: access
    for access in (
        _access("catalog", set(), {"orders.order-status-changed.v1"}),
        _access("recommendations", set(), {"orders.order-placed.v1"}),
        _access(
            "orders",
            {"orders.order-placed.v1", "orders.order-status-changed.v1"},
            {"fraud.decision-made.v1"},
        ),
        _access("fraud", {"fraud.decision-made.v1"}, {"orders.order-placed.v1"}),
    )
}
