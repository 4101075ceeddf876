"""A saturated gateway sheds load: 503 with Retry-After at once, not a queue.

The real gateway process (``python -m emporium.gateway.main``) with a small
``HTTP_MAX_CONCURRENT_REQUESTS``, in front of real gRPC servers on loopback
ports. The catalog holds every GetProduct until the test releases it, so the
gateway fills up with product pages for sure; the next requests are refused
with 503, ``Retry-After`` and a JSON error, the held ones still succeed, and
the gateway serves again afterwards.

The catalog is full too (its GRPC_MAX_CONCURRENT_RPCS is the same small
number), so it refuses the gateway's health checks with RESOURCE_EXHAUSTED
while the pages are held: overloaded is not down, so the gateway stays ready
and its breakers stay closed through several health rounds. Nothing here
asserts on time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from emporium.common.v1 import money_pb2
from emporium.kit.grpc import build_server, set_serving
from emporium.orders.v1 import orders_pb2_grpc
from emporium.recommendations.v1 import recommendations_pb2, recommendations_pb2_grpc
from emporium.testing.pytest_plugin import eventually

pytestmark = pytest.mark.integration

LIMIT = 2
RETRY_AFTER = 3


class HeldCatalog(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self) -> None:
        self.waiting = 0
        self.release = asyncio.Event()

    async def GetProduct(
        self, request: catalog_pb2.GetProductRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.GetProductResponse:
        self.waiting += 1
        try:
            await self.release.wait()
        finally:
            self.waiting -= 1
        product = catalog_pb2.Product(
            product_id=request.product_id,
            name=f"Name of {request.product_id}",
            price=money_pb2.Money(currency_code="EUR", amount_minor=100),
            stock_available=5,
        )
        return catalog_pb2.GetProductResponse(product=product)


class NoRecommendations(recommendations_pb2_grpc.RecommendationServiceServicer):
    async def ListRecommendations(
        self,
        request: recommendations_pb2.ListRecommendationsRequest,
        context: grpc.aio.ServicerContext,
    ) -> recommendations_pb2.ListRecommendationsResponse:
        return recommendations_pb2.ListRecommendationsResponse()


@dataclass
class Saturable:
    catalog: HeldCatalog
    http: httpx.AsyncClient
    admin_url: str
    log_path: Path


@pytest.fixture
async def gateway(
    tmp_path: Path, start_gateway: Callable[..., contextlib.AbstractAsyncContextManager[Any]]
) -> AsyncIterator[Saturable]:
    catalog = HeldCatalog()
    servers = []
    addresses = {}
    for name, add, servicer, full_name in (
        (
            "CATALOG",
            catalog_pb2_grpc.add_CatalogServiceServicer_to_server,
            catalog,
            "emporium.catalog.v1.CatalogService",
        ),
        (
            "RECOMMENDATIONS",
            recommendations_pb2_grpc.add_RecommendationServiceServicer_to_server,
            NoRecommendations(),
            "emporium.recommendations.v1.RecommendationService",
        ),
        (
            "ORDERS",
            orders_pb2_grpc.add_OrderServiceServicer_to_server,
            orders_pb2_grpc.OrderServiceServicer(),
            "emporium.orders.v1.OrderService",
        ),
    ):
        built = build_server(
            host="127.0.0.1",
            port=0,
            servicers=[(add, servicer)],
            service_names=[full_name],
            max_concurrent_rpcs=LIMIT if name == "CATALOG" else None,
        )
        await built.server.start()
        task = set_serving(built.health, [full_name], True)
        assert task is not None
        await task
        servers.append(built.server)
        addresses[f"{name}_ADDR"] = f"127.0.0.1:{built.port}"

    settings = {
        **addresses,
        "CACHE_TTL_SECONDS": "0.001",
        # The held pages must not time out while the test looks at the others.
        "PRODUCT_PAGE_BUDGET_MS": "60000",
        "CATALOG_TIMEOUT_MS": "60000",
        "HTTP_MAX_CONCURRENT_REQUESTS": str(LIMIT),
        "HTTP_RETRY_AFTER_SECONDS": str(RETRY_AFTER),
    }
    try:
        async with (
            start_gateway(settings, tmp_path / "gateway.log") as running,
            httpx.AsyncClient(base_url=running.base_url, timeout=60) as http,
        ):
            yield Saturable(catalog, http, running.admin_url, running.log_path)
    finally:
        catalog.release.set()
        for server in servers:
            await server.stop(None)


async def fill(gateway: Saturable) -> list[asyncio.Future[httpx.Response]]:
    """Sends LIMIT product pages and waits until all of them hang on the catalog."""
    held = [
        asyncio.ensure_future(gateway.http.get(f"/api/products/held-{i}")) for i in range(LIMIT)
    ]

    async def full() -> bool:
        return gateway.catalog.waiting == LIMIT

    await eventually(full, 20, f"{LIMIT} product pages waiting on the catalog")
    return held


async def release(gateway: Saturable, held: list[asyncio.Future[httpx.Response]]) -> None:
    """Lets the catalog answer; every held page then succeeds, in order."""
    gateway.catalog.release.set()
    pages = await asyncio.gather(*held)
    assert [page.status_code for page in pages] == [200] * LIMIT
    assert [page.json()["product"]["product_id"] for page in pages] == [
        f"held-{i}" for i in range(LIMIT)
    ]


async def test_a_full_gateway_answers_503_with_retry_after_and_recovers(
    gateway: Saturable,
) -> None:
    http, catalog = gateway.http, gateway.catalog
    held = await fill(gateway)

    for i in range(3):
        refused = await http.get(f"/api/products/extra-{i}")
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == str(RETRY_AFTER)
        assert refused.headers["cache-control"] == "no-store"
        assert refused.json()["error"]["code"] == "overloaded"
    assert catalog.waiting == LIMIT, "a refused request must not reach the catalog"

    await release(gateway, held)
    again = await http.get("/api/products/after")
    assert again.status_code == 200, again.text

    # Every refusal is counted, like any other response of the edge.
    metrics = (await http.get(f"{gateway.admin_url}/metrics")).text
    shed = [
        line
        for line in metrics.splitlines()
        if line.startswith("emporium_http_requests_total{") and 'status="503"' in line
    ]
    assert shed, metrics[-2000:]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in shed) >= 3


async def test_overloaded_is_not_down_readiness_and_breakers_hold_while_shedding(
    gateway: Saturable,
) -> None:
    http, catalog = gateway.http, gateway.catalog
    held = await fill(gateway)

    async def health() -> dict[str, Any]:
        body: dict[str, Any] = (await http.get(f"{gateway.admin_url}/healthz")).json()
        return body

    # The catalog is at its own limit: it refuses the gateway's health checks.
    busy_rounds: set[float] = set()

    async def refused_for_several_rounds() -> bool:
        refused = await http.get("/api/products/extra")
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == str(RETRY_AFTER)
        assert refused.json()["error"]["code"] == "overloaded"
        catalog_check = (await health())["dependencies"]["catalog"]
        if "RESOURCE_EXHAUSTED" in catalog_check["detail"]:
            busy_rounds.add(catalog_check["checked_at"])
        # Readiness turns red after 2 failed rounds in a row: wait for more than that.
        return len(busy_rounds) >= 4

    await eventually(refused_for_several_rounds, 30, "4 health rounds refused by the full catalog")

    body = await health()
    assert body["ready"] is True, body
    assert body["dependencies"]["catalog"]["status"] == "up", body
    assert {name: b["state"] for name, b in body["breakers"].items()} == {
        "catalog": "closed",
        "recommendations": "closed",
        "orders": "closed",
    }, body
    readyz = await http.get(f"{gateway.admin_url}/readyz")
    assert readyz.status_code == 200, readyz.text
    assert catalog.waiting == LIMIT, "a refused request must not reach the catalog"

    await release(gateway, held)
