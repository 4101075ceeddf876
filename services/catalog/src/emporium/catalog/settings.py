"""The catalog's settings (docs/configuration.md): the common ones, its database and Kafka."""

from __future__ import annotations

from emporium.kit.config import DatabaseSettings, KafkaSettings, ServiceSettings


class CatalogSettings(ServiceSettings, DatabaseSettings, KafkaSettings):
    pass
