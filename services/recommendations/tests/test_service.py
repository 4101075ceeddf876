"""The recommendations' composition (main.build) on a real PostgreSQL database and real Kafka.

The service runs in this process on loopback ports, with its own database and
its own topics; it is fed real events and called over real gRPC.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import grpc
import pytest

from emporium.common.v1 import money_pb2
from emporium.events.v1 import order_events_pb2
from emporium.kit.config import parse_settings
from emporium.kit.kafka import EventProducer
from emporium.orders.v1 import orders_pb2
from emporium.recommendations.main import MIGRATIONS_DIR, build
from emporium.recommendations.settings import RecommendationsSettings
from emporium.recommendations.topics import Topics
from emporium.recommendations.v1 import recommendations_pb2, recommendations_pb2_grpc
from emporium.testing.pytest_plugin import RunningService, eventually, service_env

pytestmark = pytest.mark.integration


@pytest.fixture
async def topics(topic_factory: Callable[..., Awaitable[str]]) -> Topics:
    return Topics(order_placed=await topic_factory("recommendations.order-placed"))


@pytest.fixture
async def recommendations(
    database_factory: Callable[..., Awaitable[str]],
    kafka_bootstrap: str,
    topics: Topics,
    run_service: Callable[..., Awaitable[RunningService]],
) -> RunningService:
    env = service_env(
        "recommendations",
        DATABASE_URL=await database_factory(MIGRATIONS_DIR),
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
    )
    return await run_service(await build(parse_settings(RecommendationsSettings, env), topics))


def order_placed(*product_ids: str) -> order_events_pb2.OrderPlaced:
    price = money_pb2.Money(currency_code="EUR", amount_minor=100)
    return order_events_pb2.OrderPlaced(
        event_id=str(uuid.uuid4()),
        order_id=str(uuid.uuid4()),
        customer_id="c-1",
        items=[
            orders_pb2.OrderItem(product_id=p, quantity=1, unit_price=price) for p in product_ids
        ],
        total=money_pb2.Money(currency_code="EUR", amount_minor=100 * len(product_ids)),
    )


async def test_placed_orders_become_recommendations_of_the_running_service(
    recommendations: RunningService, topics: Topics, producer: EventProducer
) -> None:
    for event in (order_placed("grinder", "beans", "scale"), order_placed("grinder", "beans")):
        await producer.send(
            topics.order_placed,
            event.order_id,
            event.SerializeToString(),
            {"event-id": event.event_id},
        )
    async with grpc.aio.insecure_channel(recommendations.grpc_addr) as channel:
        stub = recommendations_pb2_grpc.RecommendationServiceStub(channel)
        request = recommendations_pb2.ListRecommendationsRequest(product_id="grinder")

        async def both_counted() -> bool:
            reply = await stub.ListRecommendations(request)
            return [(r.product_id, r.score) for r in reply.recommendations] == [
                ("beans", 2),
                ("scale", 1),
            ]

        took = await eventually(both_counted, within=20, what="both orders counted")
    print(f"two orders counted {took:.2f}s after publishing")
    health = await recommendations.healthz()
    assert set(health["dependencies"]) == {"postgres", "kafka"}
    assert health["kafka_consumer"]["topics"] == [topics.order_placed]
