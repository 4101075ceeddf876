"""Composition root of the gateway: settings, downstream clients, storefront, HTTP app.

The gateway owns no database and no Kafka connection. It serves the JSON API
and the storefront page on HTTP_PORT; its gRPC port carries only the standard
health service and reflection. Readiness follows the catalog (the product
page cannot be served without it); recommendations and orders are watched in
/healthz but do not make the gateway unready: without recommendations the
product page is served without them, without orders checkout answers 503
while browsing keeps working.

Recommendations may also be absent: with RECOMMENDATIONS_ADDR unset (a system
without the recommendations service, docs/forking.md) the gateway has no
client, no breaker and no /healthz entry for them, and every product page says
``recommendations_available: false``.
"""

from __future__ import annotations

import logging

from emporium.gateway.cache import TTLCache
from emporium.gateway.clients import CatalogClient, OrdersClient, RecommendationsClient
from emporium.gateway.domain import Budgets, Storefront
from emporium.gateway.http_api import build_app
from emporium.gateway.settings import GatewaySettings
from emporium.kit.config import downstream, load_settings
from emporium.kit.service import Service, run_cli

log = logging.getLogger(__name__)

NAME = "gateway"
#: Products kept in the read cache at most; product lists (pages) at most.
PRODUCT_CACHE_ENTRIES = 10_000
LIST_CACHE_ENTRIES = 1_000


async def build(settings: GatewaySettings) -> Service:
    """Wires the service; ``await service.run()`` serves until SIGTERM or ``request_stop()``."""
    service = Service(NAME, settings)
    # The downstream clients are closed by the service on shutdown.
    recommendations = (
        RecommendationsClient(
            service.client(downstream(settings, "recommendations"), critical=False)
        )
        if settings.recommendations_addr is not None
        else None
    )
    if recommendations is None:
        log.info(
            "recommendations are not part of this system (RECOMMENDATIONS_ADDR unset): "
            "product pages are served without them"
        )
    storefront = Storefront(
        CatalogClient(service.client(downstream(settings, "catalog"), critical=True)),
        recommendations,
        OrdersClient(service.client(downstream(settings, "orders"), critical=False)),
        product_cache=TTLCache("products", settings.cache_ttl_seconds, PRODUCT_CACHE_ENTRIES),
        list_cache=TTLCache("product-lists", settings.cache_ttl_seconds, LIST_CACHE_ENTRIES),
        budgets=Budgets(
            product_page=settings.product_page_budget_ms / 1000,
            checkout=settings.checkout_budget_ms / 1000,
            recommendations=settings.recommendations_timeout_ms / 1000,
        ),
    )
    app = build_app(
        storefront,
        access_log=service.access_log,
        max_concurrent_requests=settings.http_max_concurrent_requests,
        retry_after_seconds=settings.http_retry_after_seconds,
    )
    service.add_http_app(app, settings.http_port)
    return service


async def serve() -> None:
    service = await build(load_settings(GatewaySettings))
    await service.run()


def main() -> None:
    run_cli(NAME, serve=serve)


if __name__ == "__main__":
    main()
