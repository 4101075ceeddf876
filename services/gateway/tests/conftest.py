"""Hand-written fakes of the gateway's downstream interfaces, an HTTP client over
the real ASGI app built on them (no sockets, no servers), and the start of the
real gateway process for the integration tests (the ``start_gateway`` fixture)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from emporium.gateway.cache import TTLCache
from emporium.gateway.domain import (
    Budgets,
    CheckoutRequest,
    Money,
    Order,
    OrderLine,
    PlacedOrder,
    Product,
    ProductList,
    Storefront,
)
from emporium.gateway.http_api import build_app
from emporium.kit.errors import NotFound
from emporium.testing.pytest_plugin import eventually, free_port


def product(product_id: str, price: int = 1999, stock: int = 5) -> Product:
    return Product(
        product_id=product_id,
        name=f"Product {product_id}",
        description=f"About {product_id}",
        price=Money("EUR", price),
        stock_available=stock,
        category="test",
    )


@dataclass
class Behaviour:
    """What a fake does on its next calls: answer, fail, or take its time."""

    error: Exception | None = None
    delay: float = 0.0
    calls: int = 0

    async def act(self) -> None:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error


@dataclass
class FakeCatalog:
    products: dict[str, Product] = field(default_factory=dict)
    behaviour: Behaviour = field(default_factory=Behaviour)
    requested: list[str] = field(default_factory=list)

    async def get_product(self, product_id: str) -> Product:
        self.requested.append(product_id)
        await self.behaviour.act()
        if product_id not in self.products:
            raise NotFound(f"no product {product_id!r}")
        return self.products[product_id]

    async def list_products(self, page_size: int, page_token: str) -> ProductList:
        await self.behaviour.act()
        ordered = sorted(self.products)
        start = int(page_token or 0)
        page = ordered[start : start + page_size]
        more = start + page_size < len(ordered)
        return ProductList([self.products[i] for i in page], str(start + page_size) if more else "")


@dataclass
class FakeRecommendations:
    suggestions: dict[str, list[str]] = field(default_factory=dict)
    behaviour: Behaviour = field(default_factory=Behaviour)

    async def list_recommendations(self, product_id: str, max_results: int) -> list[str]:
        await self.behaviour.act()
        return self.suggestions.get(product_id, [])[:max_results]


@dataclass
class FakeOrders:
    behaviour: Behaviour = field(default_factory=Behaviour)
    by_key: dict[str, Order] = field(default_factory=dict)
    placed: list[CheckoutRequest] = field(default_factory=list)

    async def place_order(self, request: CheckoutRequest) -> PlacedOrder:
        await self.behaviour.act()
        self.placed.append(request)
        if request.idempotency_key in self.by_key:
            return PlacedOrder(self.by_key[request.idempotency_key], created=False)
        now = datetime.now(UTC)
        lines = [OrderLine(i.product_id, i.quantity, Money("EUR", 1000)) for i in request.items]
        order = Order(
            order_id=str(uuid.uuid4()),
            customer_id=request.customer_id,
            items=lines,
            total=Money("EUR", sum(1000 * line.quantity for line in lines)),
            status="pending",
            created_at=now,
            updated_at=now,
        )
        self.by_key[request.idempotency_key] = order
        return PlacedOrder(order, created=True)

    async def get_order(self, order_id: str) -> Order:
        await self.behaviour.act()
        for order in self.by_key.values():
            if order.order_id == order_id:
                return order
        raise NotFound(f"no order {order_id}")


@dataclass
class Fakes:
    catalog: FakeCatalog
    recommendations: FakeRecommendations
    orders: FakeOrders


#: Small budgets keep the timing tests short.
TEST_BUDGETS = Budgets(product_page=0.5, checkout=0.5, recommendations=0.08)


@pytest.fixture
def fakes() -> Fakes:
    catalog = FakeCatalog({p: product(p) for p in ("p1", "p2", "p3", "p4")})
    catalog.products["sold-out"] = product("sold-out", stock=0)
    recommendations = FakeRecommendations({"p1": ["p2", "p3", "p1", "gone"]})
    return Fakes(catalog, recommendations, FakeOrders())


@pytest.fixture
def make_storefront(fakes: Fakes) -> Callable[..., Storefront]:
    def make(budgets: Budgets = TEST_BUDGETS, ttl: float = 5.0) -> Storefront:
        return Storefront(
            fakes.catalog,
            fakes.recommendations,
            fakes.orders,
            product_cache=TTLCache("test-products", ttl, 100),
            list_cache=TTLCache("test-lists", ttl, 100),
            budgets=budgets,
        )

    return make


@pytest.fixture
async def http(make_storefront: Callable[..., Storefront]) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(make_storefront())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield client


# --- the real gateway process ----------------------------------------------------------


@dataclass
class GatewayProcess:
    """``python -m emporium.gateway.main`` running with its output in ``log_path``."""

    process: asyncio.subprocess.Process
    base_url: str
    admin_url: str
    log_path: Path
    #: The exit code after SIGTERM, once :func:`gateway_process` has stopped it.
    exit_code: int | None = None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@contextlib.asynccontextmanager
async def gateway_process(
    settings: Mapping[str, str], log_path: Path, ready_within: float = 30
) -> AsyncIterator[GatewayProcess]:
    """Starts the gateway as the runner and the chart do and waits for ``/readyz`` 200.

    ``settings`` are its environment variables on top of the test process's
    (downstream addresses and whatever the test tunes); ports are free ones
    unless given. On exit it gets SIGTERM, 15 s to drain, then SIGKILL; the
    exit code is left in ``exit_code``.
    """
    ports = {name: str(free_port()) for name in ("HTTP_PORT", "ADMIN_PORT", "GRPC_PORT")}
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "BIND_HOST": "127.0.0.1",
        "SHUTDOWN_GRACE_SECONDS": "2",
        "HEALTH_CHECK_INTERVAL_SECONDS": "0.5",
        "OTEL_TRACES_EXPORTER": "none",
        **ports,
        **settings,
    }
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "emporium.gateway.main",
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    gateway = GatewayProcess(
        process,
        f"http://127.0.0.1:{env['HTTP_PORT']}",
        f"http://127.0.0.1:{env['ADMIN_PORT']}",
        log_path,
    )
    try:
        async with httpx.AsyncClient(timeout=5) as probe:

            async def ready() -> bool:
                if process.returncode is not None:
                    raise AssertionError(f"gateway exited:\n{gateway.log_tail()}")
                try:
                    return (await probe.get(f"{gateway.admin_url}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            started = await eventually(ready, ready_within, "gateway ready")
        print(f"\ngateway process ready {started:.2f}s after start")
        yield gateway
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            gateway.exit_code = await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            gateway.exit_code = await process.wait()


@pytest.fixture(scope="session")
def start_gateway() -> Callable[..., contextlib.AbstractAsyncContextManager[GatewayProcess]]:
    """:func:`gateway_process`, for tests that start the real gateway process."""
    return gateway_process
