"""The fraud service's settings (docs/configuration.md)."""

from __future__ import annotations

from emporium.kit.config import DatabaseSettings, KafkaSettings, ServiceSettings


class FraudSettings(ServiceSettings, DatabaseSettings, KafkaSettings):
    """Fraud has no downstream gRPC service: it only consumes and publishes events."""
