"""The order-placed consumer: unit tests with a fake ledger, and the real thing on Kafka."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from emporium.common.v1 import money_pb2
from emporium.events.v1 import order_events_pb2
from emporium.kit.config import KafkaSettings, parse_settings
from emporium.kit.kafka import EventProducer, IdempotentConsumer, PoisonMessage
from emporium.orders.v1 import orders_pb2
from emporium.recommendations import consumers
from emporium.recommendations.domain import Recommendation, Recommendations
from emporium.recommendations.repository import PostgresRecommendationRepository
from emporium.recommendations.topics import Topics
from emporium.testing.pytest_plugin import read_partition


def _placed(order_id: str, *product_ids: str, quantity: int = 1) -> bytes:
    """An OrderPlaced as orders writes it: each line at 1.00 EUR, the total their sum."""
    price = money_pb2.Money(currency_code="EUR", amount_minor=100)
    return order_events_pb2.OrderPlaced(
        event_id=str(uuid.uuid4()),
        order_id=order_id,
        customer_id="c-1",
        items=[
            orders_pb2.OrderItem(product_id=p, quantity=quantity, unit_price=price)
            for p in product_ids
        ],
        total=money_pb2.Money(currency_code="EUR", amount_minor=100 * quantity * len(product_ids)),
    ).SerializeToString()


#: Orders' ids are UUIDs.
ORDER = "0b0e5d3c-9d4e-4a4b-8f0e-3c1c7a0f5b2e"


class FakeLedger:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.counted: set[str] = set()

    async def mark_order_counted(self, order_id: str) -> bool:
        fresh = order_id not in self.counted
        self.counted.add(order_id)
        return fresh

    async def add_pairs(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.counts.update(pairs)


@pytest.mark.unit
async def test_an_order_counts_its_pairs() -> None:
    ledger = FakeLedger()
    assert await consumers.count_placed_order(ledger, _placed(ORDER, "b", "a", "c")) == 6
    assert ledger.counts == Counter(
        {("a", "b"): 1, ("b", "a"): 1, ("a", "c"): 1, ("c", "a"): 1, ("b", "c"): 1, ("c", "b"): 1}
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    "value",
    [
        b"\xff\xff\xff",
        _placed("", "a", "b"),
        _placed("o-1", "a", "b"),
        _placed(ORDER, "a", "not an id"),
        _placed(ORDER, "a", "b", quantity=-2),
    ],
    ids=["undecodable", "no-order-id", "order-id-not-a-uuid", "bad-product-id", "negative"],
)
async def test_impossible_events_are_poison(value: bytes) -> None:
    ledger = FakeLedger()
    with pytest.raises(PoisonMessage):
        await consumers.count_placed_order(ledger, value)
    assert not ledger.counts


async def _wait_for(condition: Callable[[], bool], within: float = 30.0) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError("timed out waiting for the consumer")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def _dead_letters(bootstrap: str, topic: str) -> list[Any]:
    return list(await read_partition(bootstrap, [TopicPartition(topic, 0)], 1, within=5.0))


@pytest.mark.integration
async def test_orders_delivered_twice_count_once_and_poison_goes_to_the_dlq(
    pool: Any, kafka_bootstrap: str, kafka_topic: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    grinder, beans, scale = (f"{name}-{suffix}" for name in ("grinder", "beans", "scale"))
    settings = parse_settings(KafkaSettings, {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    producer = EventProducer(settings, client_id="recommendations-test")
    await producer.start()
    first = _placed(str(uuid.uuid4()), grinder, beans, scale)
    first_id = str(uuid.uuid4())
    messages = [
        (first, first_id),
        (first, first_id),  # redelivered
        (b"\xff\xff\xff", str(uuid.uuid4())),  # poison: must not stop the consumer
        (_placed(str(uuid.uuid4()), grinder, beans), str(uuid.uuid4())),
    ]
    for value, event_id in messages:
        await producer.send(kafka_topic, f"o-{suffix}", value, {"event-id": event_id})

    group = f"recommendations-test-{suffix}"
    handlers = consumers.handlers(Topics(order_placed=kafka_topic))
    consumer = IdempotentConsumer(settings, pool, handlers, producer, group_id=group)
    task = asyncio.create_task(consumer.run())
    try:
        waited = await _wait_for(lambda: sum(consumer.counts.values()) >= 4)
    finally:
        await consumer.stop()
        await task
        await producer.stop()
    print(f"consumer took {waited:.2f}s to handle 4 messages")

    assert consumer.counts == {"processed": 2, "duplicate": 1, "retried": 0, "dead_lettered": 1}
    recommendations = Recommendations(PostgresRecommendationRepository(pool))
    assert await recommendations.list_recommendations(grinder, 0) == [
        Recommendation(beans, 2),
        Recommendation(scale, 1),
    ]
    dead = await _dead_letters(kafka_bootstrap, f"{kafka_topic}.dlq")
    assert [record.value for record in dead] == [b"\xff\xff\xff"]
    headers = {name: value.decode() for name, value in dead[0].headers}
    assert headers["dlq-error"].startswith("PoisonMessage: undecodable OrderPlaced")


@pytest.mark.integration
async def test_an_impossible_order_is_dead_lettered_with_its_reason_and_counts_nothing(
    pool: Any, kafka_bootstrap: str, kafka_topic: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    grinder, beans = f"grinder-{suffix}", f"beans-{suffix}"
    settings = parse_settings(KafkaSettings, {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    producer = EventProducer(settings, client_id="recommendations-test")
    await producer.start()
    # The event of the issue: negative quantities and totals. Then a possible order.
    impossible = _placed(str(uuid.uuid4()), grinder, beans, quantity=-3)
    possible = _placed(str(uuid.uuid4()), beans, grinder)
    for value in (impossible, possible):
        await producer.send(kafka_topic, suffix, value, {"event-id": str(uuid.uuid4())})

    handlers = consumers.handlers(Topics(order_placed=kafka_topic))
    consumer = IdempotentConsumer(
        settings, pool, handlers, producer, group_id=f"recommendations-test-{suffix}"
    )
    task = asyncio.create_task(consumer.run())
    try:
        await _wait_for(lambda: sum(consumer.counts.values()) >= 2)
    finally:
        await consumer.stop()
        await task
        await producer.stop()

    assert consumer.counts == {"processed": 1, "duplicate": 0, "retried": 0, "dead_lettered": 1}
    # Only the possible order was counted.
    recommendations = Recommendations(PostgresRecommendationRepository(pool))
    assert await recommendations.list_recommendations(grinder, 0) == [Recommendation(beans, 1)]
    dead = await _dead_letters(kafka_bootstrap, f"{kafka_topic}.dlq")
    assert [record.value for record in dead] == [impossible]
    headers = {name: value.decode() for name, value in dead[0].headers}
    assert headers["dlq-error"] == (
        "PoisonMessage: invalid OrderPlaced: items[0].quantity: must be between 1 and 100; "
        "items[1].quantity: must be between 1 and 100; "
        "total.amount_minor: must not be negative, got -600"
    )
