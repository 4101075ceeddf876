"""The catalog's composition (main.build) on a real PostgreSQL database and real Kafka.

The service runs in this process on loopback ports, with its own database and
its own topics; it is called over real gRPC and fed real events.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from emporium.catalog.main import MIGRATIONS_DIR, build
from emporium.catalog.repository import PostgresCatalogRepository, SeedProduct
from emporium.catalog.settings import CatalogSettings
from emporium.catalog.topics import Topics
from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from emporium.events.v1 import order_events_pb2
from emporium.kit.config import parse_settings
from emporium.kit.db import Database
from emporium.kit.kafka import EventProducer
from emporium.orders.v1 import orders_pb2
from emporium.testing.pytest_plugin import (
    RunningService,
    eventually,
    open_database,
    service_env,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def database(database_factory: Callable[..., Awaitable[str]]) -> str:
    return await database_factory(MIGRATIONS_DIR)


@pytest.fixture
async def db(database: str) -> AsyncIterator[Database]:
    pool = await open_database(database, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture
async def topics(topic_factory: Callable[..., Awaitable[str]]) -> Topics:
    return Topics(order_status_changed=await topic_factory("catalog.order-status-changed"))


@pytest.fixture
async def catalog(
    database: str,
    kafka_bootstrap: str,
    topics: Topics,
    run_service: Callable[..., Awaitable[RunningService]],
) -> RunningService:
    env = service_env("catalog", DATABASE_URL=database, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap)
    return await run_service(await build(parse_settings(CatalogSettings, env), topics))


async def test_a_rejected_order_gets_its_stock_back_through_the_running_service(
    catalog: RunningService, db: Database, topics: Topics, producer: EventProducer
) -> None:
    product_id = f"p-{uuid.uuid4().hex[:10]}"
    await PostgresCatalogRepository(db).upsert_products(
        [SeedProduct(product_id, "P", "", "test", 250, "EUR", 10)]
    )
    order_id = str(uuid.uuid4())
    async with grpc.aio.insecure_channel(catalog.grpc_addr) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        await stub.ReserveStock(
            catalog_pb2.ReserveStockRequest(
                order_id=order_id, items=[catalog_pb2.StockItem(product_id=product_id, quantity=4)]
            )
        )
        reply = await stub.GetProduct(catalog_pb2.GetProductRequest(product_id=product_id))
        assert (reply.product.stock_available, reply.product.price.amount_minor) == (6, 250)

        rejection = order_events_pb2.OrderStatusChanged(
            event_id=str(uuid.uuid4()),
            order_id=order_id,
            previous_status=orders_pb2.ORDER_STATUS_PENDING,
            status=orders_pb2.ORDER_STATUS_REJECTED,
            reason="test",
        )
        await producer.send(
            topics.order_status_changed,
            order_id,
            rejection.SerializeToString(),
            {"event-id": rejection.event_id},
        )

        async def released() -> bool:
            reply = await stub.GetProduct(catalog_pb2.GetProductRequest(product_id=product_id))
            return reply.product.stock_available == 10

        took = await eventually(released, within=20, what="the rejected order's stock back")
    print(f"stock released {took:.2f}s after the rejection was published")
    health = await catalog.healthz()
    assert set(health["dependencies"]) == {"postgres", "kafka"}
    assert health["kafka_consumer"]["topics"] == [topics.order_status_changed]
