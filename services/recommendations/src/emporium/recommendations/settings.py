"""The recommendations' settings (docs/configuration.md): common ones, its database and Kafka."""

from __future__ import annotations

from emporium.kit.config import DatabaseSettings, KafkaSettings, ServiceSettings


class RecommendationsSettings(ServiceSettings, DatabaseSettings, KafkaSettings):
    pass
