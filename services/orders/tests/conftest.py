"""Fixtures of the orders tests: hand-written fakes for unit tests, real servers for integration."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from emporium.common.v1 import money_pb2
from emporium.kit.config import parse_settings
from emporium.kit.db import Database
from emporium.kit.errors import DeadlineExceeded, FailedPrecondition, NotFound, Unavailable
from emporium.orders import domain
from emporium.orders.main import MIGRATIONS_DIR, build
from emporium.orders.settings import OrdersSettings
from emporium.orders.topics import Topics
from emporium.orders.v1 import orders_pb2_grpc
from emporium.testing.pytest_plugin import (
    RunningService,
    free_port,
    open_database,
    service_env,
)


@dataclass
class FakeCatalog:
    prices: dict[str, domain.Money] = field(default_factory=dict)
    stock: dict[str, int] = field(default_factory=dict)
    down: bool = False
    #: The client's breaker is open: calls fail without leaving the process.
    breaker_open: bool = False
    release_fails: bool = False
    #: The next reservation is made but its answer is lost (a timeout).
    lose_reserve_answer: bool = False
    reservations: dict[str, list[domain.RequestedItem]] = field(default_factory=dict)
    released: list[str] = field(default_factory=list)
    price_calls: int = 0

    async def get_prices(self, product_ids: Sequence[str]) -> dict[str, domain.Money]:
        self.price_calls += 1
        if self.down:
            raise Unavailable("catalog unavailable", dependency="catalog")
        return {pid: self.prices[pid] for pid in product_ids if pid in self.prices}

    async def reserve_stock(
        self, order_id: str, items: Sequence[domain.RequestedItem]
    ) -> dict[str, domain.Money]:
        if self.breaker_open:
            refused = Unavailable("catalog unavailable: circuit breaker open", "catalog")
            refused.sent = False
            raise refused
        if self.down:
            raise Unavailable("catalog unavailable", dependency="catalog")
        if self.lose_reserve_answer:
            self.lose_reserve_answer = False
            await self.reserve_stock(order_id, items)
            raise DeadlineExceeded("catalog timed out", dependency="catalog")
        prices = {
            i.product_id: self.prices[i.product_id] for i in items if i.product_id in self.prices
        }
        if order_id in self.reservations:
            return prices
        unknown = [item.product_id for item in items if item.product_id not in self.prices]
        if unknown:
            raise NotFound(f"unknown product ids: {', '.join(unknown)}")
        for item in items:
            if self.stock.get(item.product_id, 0) < item.quantity:
                raise FailedPrecondition(f"{item.product_id} is out of stock")
        for item in items:
            self.stock[item.product_id] -= item.quantity
        self.reservations[order_id] = list(items)
        return prices

    async def release_stock(self, order_id: str) -> None:
        if self.release_fails or self.down:
            raise Unavailable("catalog unavailable", dependency="catalog")
        self.released.append(order_id)
        for item in self.reservations.pop(order_id, []):
            self.stock[item.product_id] += item.quantity


@dataclass
class FakeRepository:
    orders: dict[str, domain.Order] = field(default_factory=dict)
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    outbox: list[domain.OrderPlacedEvent] = field(default_factory=list)
    #: Pending reservations: order id -> "pending" or "releasing" (what the sweeper claimed).
    pending: dict[str, str] = field(default_factory=dict)
    down: bool = False
    #: Delay inside add_placed_order, to let concurrent requests interleave.
    write_delay: float = 0.0
    write_started: asyncio.Event = field(default_factory=asyncio.Event)

    async def get(self, order_id: str) -> domain.Order | None:
        self._check()
        return self.orders.get(order_id)

    async def find_by_idempotency_key(self, key: str) -> tuple[domain.Order, str] | None:
        self._check()
        if key not in self.keys:
            return None
        order_id, fingerprint = self.keys[key]
        return self.orders[order_id], fingerprint

    async def add_placed_order(
        self,
        order: domain.Order,
        idempotency_key: str,
        fingerprint: str,
        event: domain.OrderPlacedEvent,
    ) -> None:
        self._check()
        self.write_started.set()
        if self.write_delay:
            await asyncio.sleep(self.write_delay)
        if idempotency_key in self.keys:
            raise domain.IdempotencyKeyTaken(idempotency_key)
        if self.pending.get(order.order_id) != "pending":
            raise domain.ReservationReleased(order.order_id)
        del self.pending[order.order_id]
        self.orders[order.order_id] = order
        self.keys[idempotency_key] = (order.order_id, fingerprint)
        self.outbox.append(event)

    async def hold_reservation(
        self, order_id: str, idempotency_key: str
    ) -> tuple[domain.Order, str] | None:
        placed = await self.find_by_idempotency_key(idempotency_key)
        if placed is None:
            self.pending[order_id] = "pending"
        return placed

    async def drop_reservation(self, order_id: str) -> None:
        self._check()
        self.pending.pop(order_id, None)

    async def claim_reservation(self, order_id: str) -> bool:
        self._check()
        if self.pending.get(order_id) != "pending":
            return False
        self.pending[order_id] = "releasing"
        return True

    async def claim_stale_reservations(self, older_than_seconds: float, limit: int) -> list[str]:
        """Claims every pending reservation (the fake has no clock; the hold is the test's)."""
        self._check()
        claimed = list(self.pending)[:limit]
        for order_id in claimed:
            self.pending[order_id] = "releasing"
        return claimed

    def _check(self) -> None:
        if self.down:
            raise Unavailable("orders database unavailable", dependency="postgres")


@dataclass
class FakeStatusStore:
    orders: dict[str, domain.Order] = field(default_factory=dict)
    outbox: list[domain.OrderStatusChangedEvent] = field(default_factory=list)
    #: Calls of each method, to tell one read and one write per call from one per decision.
    reads: int = 0
    writes: int = 0

    async def get_for_update(self, order_ids: Sequence[str]) -> dict[str, domain.Order]:
        self.reads += 1
        return {
            order_id: self.orders[order_id] for order_id in order_ids if order_id in self.orders
        }

    async def save_statuses(
        self, changes: Sequence[tuple[domain.Order, domain.OrderStatusChangedEvent]]
    ) -> None:
        self.writes += 1
        for order, event in changes:
            self.orders[order.order_id] = replace(order)
            self.outbox.append(event)


EUR = "EUR"


@pytest.fixture
def catalog() -> FakeCatalog:
    return FakeCatalog(
        prices={
            "sku-1": domain.Money(EUR, 1999),
            "sku-2": domain.Money(EUR, 500),
            "sku-usd": domain.Money("USD", 1000),
        },
        stock={"sku-1": 50, "sku-2": 50, "sku-usd": 50},
    )


@pytest.fixture
def repository() -> FakeRepository:
    return FakeRepository()


@pytest.fixture
def status_store() -> FakeStatusStore:
    return FakeStatusStore()


@pytest.fixture
def checkout(repository: FakeRepository, catalog: FakeCatalog) -> domain.Checkout:
    return domain.Checkout(repository=repository, catalog=catalog)


# --- integration: the real PostgreSQL and Kafka of the local runner -----------------
#
# Each test gets its own database and its own topics, so tests never see each
# other's data or that of a running system (the local platform's plugin,
# testing/src/emporium/testing/pytest_plugin.py, makes both). The catalog is a small
# real gRPC servicer in this process on a loopback port (a test double of a peer
# service over a real socket); the orders service is the real composition from main.py.


@pytest.fixture
async def database(database_factory: Callable[..., Awaitable[str]]) -> str:
    """A fresh database with the orders migrations; dropped afterwards."""
    return await database_factory(MIGRATIONS_DIR)


@pytest.fixture
async def db(database: str) -> AsyncIterator[Database]:
    """The test's own view of the orders database, for assertions."""
    pool = await open_database(database, max_size=3)
    yield pool
    await pool.close()


@pytest.fixture
async def topics(topic_factory: Callable[..., Awaitable[str]]) -> Topics:
    """Uniquely named topics (and .dlq twins) for this test; deleted afterwards."""
    return Topics(
        order_placed=await topic_factory("orders.order-placed"),
        order_status_changed=await topic_factory("orders.order-status-changed"),
        fraud_decision_made=await topic_factory("orders.fraud-decision-made"),
    )


class CatalogDouble(catalog_pb2_grpc.CatalogServiceServicer):
    """A catalog whose answers the test controls, served over real gRPC."""

    def __init__(self) -> None:
        self.prices = {
            "sku-1": ("EUR", 1999),
            "sku-2": ("EUR", 500),
            "sku-usd": ("USD", 1000),
        }
        self.stock = {"sku-1": 1000, "sku-2": 1000, "sku-usd": 1000}
        self.reservations: dict[str, list[tuple[str, int]]] = {}
        self.released: list[str] = []
        self.calls: dict[str, int] = {}
        #: Runs inside ReserveStock after the reservation is made (fault injection).
        self.after_reserve: Callable[[], Awaitable[None]] | None = None
        #: False: ReserveStock answers without prices, as catalogs before them did.
        self.prices_in_reservation = True

    def _count(self, method: str) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1

    def _prices(self, product_ids: Sequence[str]) -> list[Any]:
        return [
            catalog_pb2.ProductPrice(
                product_id=pid,
                price=money_pb2.Money(
                    currency_code=self.prices[pid][0], amount_minor=self.prices[pid][1]
                ),
            )
            for pid in product_ids
            if pid in self.prices
        ]

    async def BatchGetPrices(self, request: Any, context: Any) -> Any:
        self._count("BatchGetPrices")
        unknown = [pid for pid in request.product_ids if pid not in self.prices]
        if unknown:  # all or nothing, as the real catalog
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"unknown product ids: {', '.join(unknown)}"
            )
        return catalog_pb2.BatchGetPricesResponse(prices=self._prices(request.product_ids))

    async def GetProduct(self, request: Any, context: Any) -> Any:
        self._count("GetProduct")
        if request.product_id not in self.prices:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{request.product_id} not found")
        currency, amount = self.prices[request.product_id]
        return catalog_pb2.GetProductResponse(
            product=catalog_pb2.Product(
                product_id=request.product_id,
                price=money_pb2.Money(currency_code=currency, amount_minor=amount),
            )
        )

    async def ReserveStock(self, request: Any, context: Any) -> Any:
        self._count("ReserveStock")
        if request.order_id not in self.reservations:
            unknown = [i.product_id for i in request.items if i.product_id not in self.stock]
            if unknown:  # as the real catalog
                await context.abort(
                    grpc.StatusCode.NOT_FOUND, f"unknown product ids: {', '.join(unknown)}"
                )
            for item in request.items:
                if self.stock[item.product_id] < item.quantity:
                    await context.abort(
                        grpc.StatusCode.FAILED_PRECONDITION, f"{item.product_id} is out of stock"
                    )
            for item in request.items:
                self.stock[item.product_id] -= item.quantity
            self.reservations[request.order_id] = [
                (i.product_id, i.quantity) for i in request.items
            ]
        if self.after_reserve is not None:
            await self.after_reserve()
        if not self.prices_in_reservation:
            return catalog_pb2.ReserveStockResponse()
        return catalog_pb2.ReserveStockResponse(
            prices=self._prices([item.product_id for item in request.items])
        )

    async def ReleaseStock(self, request: Any, context: Any) -> Any:
        self._count("ReleaseStock")
        self.released.append(request.order_id)
        for product_id, quantity in self.reservations.pop(request.order_id, []):
            self.stock[product_id] += quantity
        return catalog_pb2.ReleaseStockResponse()


@dataclass
class CatalogServer:
    servicer: CatalogDouble
    port: int
    server: grpc.aio.Server | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server()
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server(self.servicer, server)
        health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        await health.set("", health_pb2.HealthCheckResponse.SERVING)
        server.add_insecure_port(self.addr)
        await server.start()
        self.server = server

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(None)
            self.server = None


@pytest.fixture
async def catalog_server() -> AsyncIterator[CatalogServer]:
    server = CatalogServer(CatalogDouble(), free_port())
    await server.start()
    yield server
    await server.stop()


class TcpProxy:
    """A loopback TCP relay that a test can cut and restore: a real network fault."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Stops listening and drops every open connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._links.update({writer, up_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.transport.abort()
                self._links.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@dataclass
class RunningOrders(RunningService):
    channel: grpc.aio.Channel
    stub: orders_pb2_grpc.OrderServiceStub


def orders_env(
    database: str, kafka_bootstrap: str, catalog_addr: str, **overrides: str
) -> dict[str, str]:
    return service_env(
        "orders",
        DATABASE_URL=database,
        DATABASE_POOL_MAX_SIZE="10",
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        CATALOG_ADDR=catalog_addr,
        CATALOG_TIMEOUT_MS="800",
        # Short, so a test sees the breaker's trial call soon after the catalog returns.
        CATALOG_BREAKER_RESET_SECONDS="1",
        **overrides,
    )


@pytest.fixture
async def start_orders(
    run_service: Callable[..., Awaitable[RunningService]],
) -> AsyncIterator[Callable[..., Awaitable[RunningOrders]]]:
    """Starts the real orders composition (main.build) in this process; stops it after."""
    channels: list[grpc.aio.Channel] = []

    async def start(env: dict[str, str], topics: Topics, wait_ready: bool = True) -> RunningOrders:
        service = await build(parse_settings(OrdersSettings, env), topics)
        running = await run_service(service, wait_ready=wait_ready)
        channel = grpc.aio.insecure_channel(running.grpc_addr)
        channels.append(channel)
        return RunningOrders(
            running.service, running.task, channel, orders_pb2_grpc.OrderServiceStub(channel)
        )

    yield start
    for channel in channels:
        await channel.close()


@pytest.fixture
async def orders(
    database: str,
    kafka_bootstrap: str,
    catalog_server: CatalogServer,
    topics: Topics,
    start_orders: Callable[..., Awaitable[RunningOrders]],
) -> RunningOrders:
    return await start_orders(orders_env(database, kafka_bootstrap, catalog_server.addr), topics)


@pytest.fixture
def make_env(kafka_bootstrap: str) -> Callable[..., dict[str, str]]:
    """``make_env(database, catalog_addr, kafka=..., **overrides)``: an orders environment."""

    def make(database: str, catalog_addr: str, kafka: str = kafka_bootstrap, **more: str) -> Any:
        return orders_env(database, kafka, catalog_addr, **more)

    return make


@pytest.fixture
async def tcp_proxy() -> AsyncIterator[Callable[[str, int], Awaitable[TcpProxy]]]:
    """``await tcp_proxy(host, port)``: a started relay the test can cut and restore."""
    proxies: list[TcpProxy] = []

    async def make(host: str, port: int) -> TcpProxy:
        proxy = TcpProxy(host, port)
        await proxy.start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        await proxy.cut()


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()
