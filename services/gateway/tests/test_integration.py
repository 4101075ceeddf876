"""The real gateway process against real gRPC servers whose behaviour the test controls.

Small Catalog, Recommendation and Order servicers (from the generated
contracts, served by the kit's ``build_server`` on loopback ports) run in the
test's event loop; the gateway runs as its own process (``python -m
emporium.gateway.main``) configured through environment variables, exactly as
the runner and the chart start it. The tests talk to it over HTTP like a
browser does, and read its /healthz and /readyz like a probe does.

No PostgreSQL or Kafka is needed: the gateway has neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from emporium.common.v1 import money_pb2
from emporium.kit.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unavailable,
)
from emporium.kit.grpc import build_server, set_serving
from emporium.orders.v1 import orders_pb2, orders_pb2_grpc
from emporium.recommendations.v1 import recommendations_pb2, recommendations_pb2_grpc
from emporium.testing.pytest_plugin import eventually, free_port

pytestmark = pytest.mark.integration

PAGE_BUDGET_S = 1.0
RECOMMENDATIONS_BUDGET_S = 0.25
RECOMMENDATIONS_RESET_S = 2.0
BREAKER_FAIL_MAX = 5
KEY_HEADER = "Idempotency-Key"


# --- servicers the tests control ------------------------------------------------------


def _product(product_id: str, price: int, stock: int) -> catalog_pb2.Product:
    return catalog_pb2.Product(
        product_id=product_id,
        name=f"Name of {product_id}",
        description="A product of the integration test",
        price=money_pb2.Money(currency_code="EUR", amount_minor=price),
        stock_available=stock,
        category="test",
    )


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self) -> None:
        self.products = {
            "p1": _product("p1", 1250, 10),
            "p2": _product("p2", 399, 3),
            "p3": _product("p3", 10000, 0),
        }
        #: Time the caller left for each GetProduct call, in seconds.
        self.time_left: list[float] = []

    async def GetProduct(
        self, request: catalog_pb2.GetProductRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.GetProductResponse:
        remaining = context.time_remaining()
        if remaining is not None:
            self.time_left.append(remaining)
        product = self.products.get(request.product_id)
        if product is None:
            raise NotFound(f"no product {request.product_id!r}")
        return catalog_pb2.GetProductResponse(product=product)

    async def ListProducts(
        self, request: catalog_pb2.ListProductsRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ListProductsResponse:
        if request.page_token:
            raise InvalidArgument({"page_token": "unknown page token"})
        return catalog_pb2.ListProductsResponse(products=list(self.products.values()))


class RecommendationServicer(recommendations_pb2_grpc.RecommendationServiceServicer):
    def __init__(self) -> None:
        self.hang = False
        self.calls = 0
        self.time_left: list[float] = []
        self._released = asyncio.Event()

    def release(self) -> None:
        """Ends every hung call and answers normally from now on."""
        self.hang = False
        self._released.set()
        self._released = asyncio.Event()

    async def ListRecommendations(
        self,
        request: recommendations_pb2.ListRecommendationsRequest,
        context: grpc.aio.ServicerContext,
    ) -> recommendations_pb2.ListRecommendationsResponse:
        self.calls += 1
        remaining = context.time_remaining()
        if remaining is not None:
            self.time_left.append(remaining)
        if self.hang:
            # Hung, not dead: the connection is fine, the answer never comes.
            await asyncio.wait_for(self._released.wait(), 60)
        suggestions = {"p1": ["p2", "p3", "ghost"], "p2": ["p1"]}
        return recommendations_pb2.ListRecommendationsResponse(
            recommendations=[
                recommendations_pb2.Recommendation(product_id=pid, score=10 - i)
                for i, pid in enumerate(suggestions.get(request.product_id, []))
            ]
        )


class OrderServicer(orders_pb2_grpc.OrderServiceServicer):
    def __init__(self) -> None:
        self.by_key: dict[str, orders_pb2.Order] = {}
        self.created = 0
        #: When set, PlaceOrder raises it (a kit error, mapped by the kit's interceptor).
        self.fail_with: ServiceError | None = None

    async def PlaceOrder(
        self, request: orders_pb2.PlaceOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.PlaceOrderResponse:
        if self.fail_with is not None:
            raise self.fail_with
        existing = self.by_key.get(request.idempotency_key)
        if existing is not None:
            return orders_pb2.PlaceOrderResponse(order=existing, created=False)
        items = [
            orders_pb2.OrderItem(
                product_id=i.product_id,
                quantity=i.quantity,
                unit_price=money_pb2.Money(currency_code="EUR", amount_minor=500),
            )
            for i in request.items
        ]
        order = orders_pb2.Order(
            order_id=str(uuid.uuid4()),
            customer_id=request.customer_id,
            items=items,
            total=money_pb2.Money(
                currency_code="EUR", amount_minor=sum(500 * i.quantity for i in items)
            ),
            status=orders_pb2.ORDER_STATUS_PENDING,
        )
        order.created_at.GetCurrentTime()
        order.updated_at.GetCurrentTime()
        self.by_key[request.idempotency_key] = order
        self.created += 1
        return orders_pb2.PlaceOrderResponse(order=order, created=True)

    async def GetOrder(
        self, request: orders_pb2.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.GetOrderResponse:
        for order in self.by_key.values():
            if order.order_id == request.order_id:
                return orders_pb2.GetOrderResponse(order=order)
        raise NotFound(f"no order {request.order_id}")


@dataclass
class Downstream:
    """One servicer on a fixed loopback port that a test can stop and start again."""

    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any
    service_name: str
    port: int = field(default_factory=free_port)
    server: grpc.aio.Server | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        if self.server is not None:
            return
        built = build_server(
            host="127.0.0.1",
            port=self.port,
            servicers=[(self.add_to_server, self.servicer)],
            service_names=[self.service_name],
        )
        await built.server.start()
        task = set_serving(built.health, [self.service_name], True)
        if task is not None:
            await task
        self.server = built.server

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
            self.server = None


@dataclass
class Gateway:
    base_url: str
    admin_url: str
    running: Any  # the conftest's GatewayProcess
    http: httpx.AsyncClient

    async def page(self, product_id: str) -> tuple[httpx.Response, float]:
        started = time.perf_counter()
        response = await self.http.get(f"/api/products/{product_id}")
        return response, time.perf_counter() - started

    async def healthz(self) -> dict[str, Any]:
        response = await self.http.get(f"{self.admin_url}/healthz")
        body: dict[str, Any] = response.json()
        return body

    async def breaker(self, name: str) -> str:
        state: str = (await self.healthz())["breakers"][name]["state"]
        return state

    async def ready(self) -> bool:
        return (await self.http.get(f"{self.admin_url}/readyz")).status_code == 200

    def log_tail(self) -> str:
        return self.running.log_tail()


@dataclass
class World:
    catalog: Downstream
    recommendations: Downstream
    orders: Downstream
    gateway: Gateway

    @property
    def recs(self) -> RecommendationServicer:
        servicer: RecommendationServicer = self.recommendations.servicer
        return servicer

    @property
    def order_servicer(self) -> OrderServicer:
        servicer: OrderServicer = self.orders.servicer
        return servicer


@pytest.fixture(scope="module")
async def world(
    tmp_path_factory: pytest.TempPathFactory,
    start_gateway: Callable[..., contextlib.AbstractAsyncContextManager[Any]],
) -> AsyncIterator[World]:
    catalog = Downstream(
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server,
        CatalogServicer(),
        "emporium.catalog.v1.CatalogService",
    )
    recommendations = Downstream(
        recommendations_pb2_grpc.add_RecommendationServiceServicer_to_server,
        RecommendationServicer(),
        "emporium.recommendations.v1.RecommendationService",
    )
    orders = Downstream(
        orders_pb2_grpc.add_OrderServiceServicer_to_server,
        OrderServicer(),
        "emporium.orders.v1.OrderService",
    )
    for downstream in (catalog, recommendations, orders):
        await downstream.start()

    settings = {
        "LOG_LEVEL": "INFO",
        "CACHE_TTL_SECONDS": "0.5",
        "PRODUCT_PAGE_BUDGET_MS": str(int(PAGE_BUDGET_S * 1000)),
        "RECOMMENDATIONS_TIMEOUT_MS": str(int(RECOMMENDATIONS_BUDGET_S * 1000)),
        "CATALOG_ADDR": catalog.addr,
        "RECOMMENDATIONS_ADDR": recommendations.addr,
        "ORDERS_ADDR": orders.addr,
        "RECOMMENDATIONS_BREAKER_FAIL_MAX": str(BREAKER_FAIL_MAX),
        "RECOMMENDATIONS_BREAKER_RESET_SECONDS": str(RECOMMENDATIONS_RESET_S),
        "CATALOG_BREAKER_RESET_SECONDS": "1",
        "ORDERS_BREAKER_RESET_SECONDS": "1",
    }
    log_path = tmp_path_factory.mktemp("gateway") / "gateway.log"
    try:
        async with (
            start_gateway(settings, log_path) as running,
            httpx.AsyncClient(base_url=running.base_url, timeout=5) as http,
        ):
            gateway = Gateway(running.base_url, running.admin_url, running, http)
            yield World(catalog, recommendations, orders, gateway)
    finally:
        for downstream in (catalog, recommendations, orders):
            await downstream.stop()
    assert running.exit_code == 0, (
        f"gateway exit code {running.exit_code} after SIGTERM:\n{running.log_tail()}"
    )


@pytest.fixture
async def system(world: World) -> AsyncIterator[World]:
    """Every downstream running and answering, and the recommendations breaker closed."""
    yield world
    world.recs.release()
    world.order_servicer.fail_with = None
    for downstream in (world.catalog, world.recommendations, world.orders):
        await downstream.start()

    async def recovered() -> bool:
        response, _ = await world.gateway.page("p1")
        return response.status_code == 200 and response.json()["recommendations_available"]

    await eventually(recovered, RECOMMENDATIONS_RESET_S + 5, "recommendations back", 0.2)
    await eventually(world.gateway.ready, 10, "gateway ready again")


# --- product page ---------------------------------------------------------------------


async def test_product_page_composes_catalog_and_recommendations(system: World) -> None:
    response, _ = await system.gateway.page("p1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["product"]["name"] == "Name of p1"
    assert body["product"]["price"] == {"currency_code": "EUR", "amount_minor": 1250}
    assert body["recommendations_available"] is True
    # "ghost" is unknown to the catalog and left out; p3 is shown although sold out.
    assert [(r["product_id"], r["in_stock"]) for r in body["recommendations"]] == [
        ("p2", True),
        ("p3", False),
    ]
    # Deadlines reach the servicers: each call got at most its own budget
    # (plus what the two processes' clocks disagree on, well under 10 ms).
    assert 0 < max(system.recs.time_left) <= RECOMMENDATIONS_BUDGET_S + 0.01
    catalog: CatalogServicer = system.catalog.servicer
    assert 0 < max(catalog.time_left) <= 0.8 + 0.01


async def test_hung_recommendations_open_the_breaker_and_the_page_keeps_its_budget(
    system: World,
) -> None:
    gateway = system.gateway
    await gateway.page("p1")  # warm the product cache as in normal traffic
    system.recs.hang = True
    calls_before = system.recs.calls
    timings = []
    for _ in range(BREAKER_FAIL_MAX + 3):
        response, elapsed = await gateway.page("p1")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["product"]["product_id"] == "p1"
        assert body["recommendations_available"] is False
        assert body["recommendations"] == []
        timings.append(elapsed)
    assert max(timings) < PAGE_BUDGET_S, timings
    # Each hung call is cut at its own budget (250 ms), far below the page budget.
    assert max(timings) < RECOMMENDATIONS_BUDGET_S + 0.2, timings
    assert system.recs.calls - calls_before == BREAKER_FAIL_MAX

    assert await gateway.breaker("recommendations") == "open"
    health = await gateway.healthz()
    assert health["breakers"]["recommendations"]["failures"] >= BREAKER_FAIL_MAX
    assert await gateway.ready(), "recommendations are optional: the gateway stays ready"

    # While the breaker is open, pages cost no call to the hung servicer at all.
    calls_open = system.recs.calls
    fast = []
    for _ in range(10):
        response, elapsed = await gateway.page("p1")
        assert response.json()["recommendations_available"] is False
        fast.append(elapsed)
    assert system.recs.calls == calls_open
    assert statistics.median(fast) < 0.05, fast
    print(
        f"\nhung recommendations: slowest page {max(timings) * 1000:.0f} ms before the breaker "
        f"opened, median {statistics.median(fast) * 1000:.1f} ms once open"
    )


async def test_stopped_recommendations_then_recovery(system: World) -> None:
    gateway = system.gateway
    await system.recommendations.stop()
    for _ in range(BREAKER_FAIL_MAX + 2):
        response, elapsed = await gateway.page("p2")
        assert response.status_code == 200, response.text
        assert response.json()["recommendations_available"] is False
        assert elapsed < PAGE_BUDGET_S
    assert await gateway.breaker("recommendations") == "open"

    async def reported_down() -> bool:
        health = await gateway.healthz()
        dependency = health["dependencies"]["recommendations"]
        return dependency["status"] == "down" and dependency["critical"] is False

    await eventually(reported_down, 3, "recommendations down in /healthz")
    assert await gateway.ready()

    await system.recommendations.start()

    async def back() -> bool:
        response, _ = await gateway.page("p2")
        return bool(response.json()["recommendations_available"])

    took = await eventually(back, RECOMMENDATIONS_RESET_S + 5, "recommendations back", 0.2)
    assert await gateway.breaker("recommendations") == "closed"
    response, _ = await gateway.page("p2")
    assert [r["product_id"] for r in response.json()["recommendations"]] == ["p1"]
    print(f"\nrecommendations back on the page {took:.1f}s after the servicer restarted")


async def test_a_system_without_recommendations(
    system: World,
    tmp_path: Path,
    start_gateway: Callable[..., contextlib.AbstractAsyncContextManager[Any]],
) -> None:
    """RECOMMENDATIONS_ADDR unset (the service removed, docs/forking.md): a second real
    gateway process serves product pages as when recommendations are down, is ready, and
    its /healthz names only the dependencies it has."""
    assert "RECOMMENDATIONS_ADDR" not in os.environ, "the test process must not set it"
    calls_before = system.recs.calls
    settings = {
        "LOG_LEVEL": "INFO",
        "CATALOG_ADDR": system.catalog.addr,
        "ORDERS_ADDR": system.orders.addr,
    }
    async with (
        start_gateway(settings, tmp_path / "gateway.log") as running,
        httpx.AsyncClient(base_url=running.base_url, timeout=5) as http,
    ):
        gateway = Gateway(running.base_url, running.admin_url, running, http)
        for product_id in ("p1", "p2"):
            response, elapsed = await gateway.page(product_id)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["product"]["product_id"] == product_id
            assert body["recommendations"] == []
            assert body["recommendations_available"] is False
            assert elapsed < PAGE_BUDGET_S
        assert (await http.get("/api/products/nope")).status_code == 404
        health = await gateway.healthz()
        assert set(health["dependencies"]) == {"catalog", "orders"}, health
        assert set(health["breakers"]) == {"catalog", "orders"}, health
        assert await gateway.ready()
        metrics = await http.get(f"{running.admin_url}/metrics")
        assert metrics.status_code == 200
        assert 'dependency="recommendations"' not in metrics.text
    assert running.exit_code == 0, running.log_tail()
    assert "recommendations are not part of this system" in running.log_tail()
    assert system.recs.calls == calls_before, "no call reached the recommendations servicer"


async def test_catalog_down_is_a_clear_503_and_makes_the_gateway_unready(system: World) -> None:
    gateway = system.gateway
    await system.catalog.stop()
    stopped = time.monotonic()

    async def unavailable() -> bool:
        response, _ = await gateway.page("p1")
        return response.status_code == 503

    await eventually(unavailable, 5, "product page 503")
    response, elapsed = await gateway.page("p1")
    error = response.json()["error"]
    assert error["code"] == "unavailable"
    assert error["message"].startswith("catalog is unavailable right now")
    assert elapsed < PAGE_BUDGET_S
    listing = await gateway.http.get("/api/products")
    assert listing.status_code == 503
    assert listing.json()["error"]["code"] == "unavailable"

    await eventually(lambda: _not(gateway.ready), 5, "gateway unready")
    unready_after = time.monotonic() - stopped
    health = await gateway.http.get(f"{gateway.admin_url}/healthz")
    assert health.status_code == 503
    assert health.json()["dependencies"]["catalog"]["status"] == "down"

    await system.catalog.start()
    ready_after = await eventually(gateway.ready, 10, "gateway ready again")
    print(f"\ncatalog down: unready after {unready_after:.1f}s, ready {ready_after:.1f}s after")


async def _not(check: Callable[[], Any]) -> bool:
    return not await check()


# --- checkout and orders ----------------------------------------------------------------


ORDER = {"customer_id": "integration", "items": [{"product_id": "p1", "quantity": 2}]}


async def test_checkout_idempotency_key(system: World) -> None:
    http = system.gateway.http
    created_before = system.order_servicer.created
    missing = await http.post("/api/checkout", json=ORDER)
    assert missing.status_code == 400
    assert missing.json()["error"]["fields"][0]["field"] == KEY_HEADER

    key = f"it-{uuid.uuid4()}"
    first = await http.post("/api/checkout", json=ORDER, headers={KEY_HEADER: key})
    assert first.status_code == 201, first.text
    order = first.json()["order"]
    assert order["status"] == "pending"
    assert order["total"] == {"currency_code": "EUR", "amount_minor": 1000}
    again = await http.post("/api/checkout", json=ORDER, headers={KEY_HEADER: key})
    assert again.status_code == 200, again.text
    assert again.json()["order"]["order_id"] == order["order_id"]
    assert system.order_servicer.created == created_before + 1

    status = await http.get(f"/api/orders/{order['order_id']}")
    assert status.status_code == 200
    assert status.json()["order"]["status"] == "pending"
    assert (await http.get(f"/api/orders/{uuid.uuid4()}")).status_code == 404


@pytest.mark.parametrize(
    ("error", "status", "code", "fields", "words"),
    [
        (
            InvalidArgument([FieldViolation("items[0].product_id", "unknown product")]),
            400,
            "invalid_argument",
            [{"field": "items[0].product_id", "description": "unknown product"}],
            "",
        ),
        (FailedPrecondition("p1: only 1 left"), 409, "conflict", [], "only 1 left"),
        (
            Unavailable("catalog unavailable (UNAVAILABLE)", dependency="catalog"),
            503,
            "unavailable",
            [],
            "catalog is unavailable",
        ),
    ],
    ids=["field-violations", "out-of-stock", "catalog-behind-orders"],
)
async def test_checkout_errors_from_orders(
    system: World,
    error: ServiceError,
    status: int,
    code: str,
    fields: list[dict[str, str]],
    words: str,
) -> None:
    system.order_servicer.fail_with = error
    response = await system.gateway.http.post(
        "/api/checkout", json=ORDER, headers={KEY_HEADER: f"it-{uuid.uuid4()}"}
    )
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code
    assert body["fields"] == fields
    assert words in body["message"]


async def test_orders_down_fails_checkout_but_not_browsing(system: World) -> None:
    gateway = system.gateway
    await system.orders.stop()
    response = await gateway.http.post(
        "/api/checkout", json=ORDER, headers={KEY_HEADER: f"it-{uuid.uuid4()}"}
    )
    assert response.status_code == 503, response.text
    assert response.json()["error"]["message"].startswith("orders is unavailable")
    page, _ = await gateway.page("p1")
    assert page.status_code == 200
    assert await gateway.ready(), "orders is not critical for the gateway's readiness"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/products?page_size=500", "page_size"),
        ("/api/products?page_token=stale", "page_token"),  # refused by the catalog itself
    ],
)
async def test_bad_queries_name_the_field(system: World, path: str, field: str) -> None:
    response = await system.gateway.http.get(path)
    assert response.status_code == 400
    assert [f["field"] for f in response.json()["error"]["fields"]] == [field]


async def test_bad_checkout_names_the_field(system: World) -> None:
    body = {"customer_id": "c", "items": [{"product_id": "p1", "quantity": "two"}]}
    response = await system.gateway.http.post(
        "/api/checkout", json=body, headers={KEY_HEADER: f"it-{uuid.uuid4()}"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["field"] == "items[0].quantity"
    malformed = await system.gateway.http.post(
        "/api/checkout",
        content=b'{"customer_id": ',
        headers={KEY_HEADER: f"it-{uuid.uuid4()}", "Content-Type": "application/json"},
    )
    assert malformed.status_code == 400
    assert "not valid JSON" in malformed.json()["error"]["message"]


async def test_storefront_page_is_served(system: World) -> None:
    page = await system.gateway.http.get("/")
    assert page.status_code == 200
    assert 'data-testid="view"' in page.text
    assert (await system.gateway.http.get("/static/app.js")).status_code == 200


# --- figures ----------------------------------------------------------------------------


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def test_product_page_latency(system: World) -> None:
    """An informal figure: sequential product pages against the in-process servicers."""
    requests = 300
    for _ in range(10):  # warm up connections and the cache
        await system.gateway.page("p1")

    async def measure() -> list[float]:
        samples = []
        for _ in range(requests):
            response, elapsed = await system.gateway.page("p1")
            assert response.status_code == 200
            samples.append(elapsed)
        return samples

    healthy = await measure()
    system.recs.hang = True
    degraded = await measure()  # the first 5 wait 250 ms, then the breaker is open
    for name, samples in (("healthy", healthy), ("recommendations hung", degraded)):
        median, p99 = statistics.median(samples), _percentile(samples, 0.99)
        print(
            f"\nproduct page, {name}: {len(samples)} requests, "
            f"median {median * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"max {max(samples) * 1000:.1f} ms"
        )
        assert max(samples) < PAGE_BUDGET_S
