"""The orders service's settings (docs/configuration.md)."""

from __future__ import annotations

from pydantic import Field

from emporium.kit.config import DatabaseSettings, KafkaSettings, ServiceSettings


class OrdersSettings(ServiceSettings, DatabaseSettings, KafkaSettings):
    catalog_addr: str = Field(min_length=3)
    catalog_timeout_ms: int = Field(default=800, ge=10, le=60_000)
    catalog_breaker_fail_max: int = Field(default=5, ge=1, le=1000)
    catalog_breaker_reset_seconds: float = Field(default=10.0, gt=0, le=3600)
    #: Age after which the sweeper releases the stock of a checkout that never committed.
    reservation_hold_seconds: float = Field(default=30.0, gt=0, le=3600)
    reservation_sweep_interval_seconds: float = Field(default=5.0, gt=0, le=600)
