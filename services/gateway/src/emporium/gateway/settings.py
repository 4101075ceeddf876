"""The gateway's settings: the common ones, its HTTP port, budgets and downstreams."""

from __future__ import annotations

from pydantic import Field

from emporium.kit.config import ServiceSettings


class GatewaySettings(ServiceSettings):
    """Environment variables of the gateway (docs/configuration.md, "Gateway")."""

    http_port: int = Field(default=8080, ge=1, le=65535)
    #: Total deadline of one product page request.
    product_page_budget_ms: int = Field(default=1000, ge=50, le=60_000)
    #: Total deadline of one checkout request.
    checkout_budget_ms: int = Field(default=3000, ge=50, le=120_000)
    #: How long a product or a product list page is served from memory.
    cache_ttl_seconds: float = Field(default=5.0, gt=0, le=3600)
    #: Requests served at once; more are answered 503 with Retry-After straight away.
    http_max_concurrent_requests: int = Field(default=100, ge=1, le=100_000)
    #: The Retry-After (seconds) of a request refused because the gateway is full.
    http_retry_after_seconds: int = Field(default=1, ge=1, le=3600)

    catalog_addr: str = Field(min_length=1)
    catalog_timeout_ms: int = Field(default=800, ge=1, le=60_000)
    catalog_breaker_fail_max: int = Field(default=5, ge=1, le=1000)
    catalog_breaker_reset_seconds: float = Field(default=10.0, gt=0, le=3600)

    #: Unset: the system has no recommendations service (its manifest entry is
    #: gone, or this deployment leaves it out of the gateway's ``calls``). The
    #: product page is then served without them, and /healthz has no entry for
    #: them. Set but empty is an error.
    recommendations_addr: str | None = Field(default=None, min_length=1)
    recommendations_timeout_ms: int = Field(default=250, ge=1, le=60_000)
    recommendations_breaker_fail_max: int = Field(default=5, ge=1, le=1000)
    recommendations_breaker_reset_seconds: float = Field(default=10.0, gt=0, le=3600)

    orders_addr: str = Field(min_length=1)
    orders_timeout_ms: int = Field(default=2000, ge=1, le=60_000)
    orders_breaker_fail_max: int = Field(default=5, ge=1, le=1000)
    orders_breaker_reset_seconds: float = Field(default=10.0, gt=0, le=3600)
