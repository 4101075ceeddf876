"""The order-status consumer: unit tests with a fake ledger, and the real thing on Kafka."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from emporium.catalog import consumers, domain
from emporium.catalog.domain import Catalog, StockLine
from emporium.catalog.repository import PostgresCatalogRepository, SeedProduct
from emporium.catalog.topics import Topics
from emporium.events.v1 import order_events_pb2
from emporium.kit.config import KafkaSettings, parse_settings
from emporium.kit.kafka import EventProducer, IdempotentConsumer, PoisonMessage
from emporium.orders.v1 import orders_pb2

#: Orders' ids are UUIDs.
ORDER = "7d5bd4a6-0f0e-4a8e-9a59-61b2f1f8a0c1"


def _status(order_id: str, status: int, event_id: str = "e-1") -> bytes:
    return order_events_pb2.OrderStatusChanged(
        event_id=event_id,
        order_id=order_id,
        previous_status=orders_pb2.ORDER_STATUS_PENDING,
        status=status,  # type: ignore[arg-type]
        reason="test",
    ).SerializeToString()


class RecordingLedger:
    def __init__(self) -> None:
        self.released: list[str] = []

    @asynccontextmanager
    async def open(self, order_id: str) -> AsyncIterator[Any]:
        recorder = self

        class _Ledger:
            async def release(self) -> int:
                recorder.released.append(order_id)
                return 3

        yield _Ledger()


async def _apply(ledger: RecordingLedger, value: bytes) -> int | None:
    """What the consumer's handler does with a payload, on a fake ledger."""
    change = consumers.decode_order_status_changed(value)
    return await domain.apply_status_change(ledger.open, change)


@pytest.mark.unit
async def test_rejected_order_releases_its_stock() -> None:
    ledger = RecordingLedger()
    assert await _apply(ledger, _status(ORDER, orders_pb2.ORDER_STATUS_REJECTED)) == 3
    assert ledger.released == [ORDER]


@pytest.mark.unit
@pytest.mark.parametrize(
    "status", [orders_pb2.ORDER_STATUS_APPROVED, orders_pb2.ORDER_STATUS_PENDING]
)
async def test_other_statuses_release_nothing(status: int) -> None:
    ledger = RecordingLedger()
    assert await _apply(ledger, _status(ORDER, status)) is None
    assert ledger.released == []


@pytest.mark.unit
@pytest.mark.parametrize(
    "value",
    [
        b"\xff\xff\xff",
        _status("", orders_pb2.ORDER_STATUS_REJECTED),
        _status("o-1", orders_pb2.ORDER_STATUS_REJECTED),
        _status(ORDER, orders_pb2.ORDER_STATUS_REJECTED, event_id=""),
        _status(ORDER, orders_pb2.ORDER_STATUS_UNSPECIFIED),
    ],
    ids=["undecodable", "no-order-id", "not-a-uuid", "no-event-id", "no-status"],
)
async def test_impossible_events_are_poison(value: bytes) -> None:
    ledger = RecordingLedger()
    with pytest.raises(PoisonMessage):
        await _apply(ledger, value)
    assert ledger.released == []


async def _wait_for(condition: Callable[[], bool], within: float = 30.0) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError("timed out waiting for the consumer")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.integration
async def test_rejection_event_delivered_twice_releases_once(
    pool: Any, kafka_bootstrap: str, kafka_topic: str
) -> None:
    repository = PostgresCatalogRepository(pool)
    catalog = Catalog(repository)
    product_id = f"p-{uuid.uuid4().hex[:10]}"
    await repository.upsert_products([SeedProduct(product_id, "P", "", "test", 100, "EUR", 10)])
    rejected, approved = str(uuid.uuid4()), str(uuid.uuid4())
    await catalog.reserve_stock(rejected, [StockLine(product_id, 4)])
    await catalog.reserve_stock(approved, [StockLine(product_id, 5)])
    assert (await catalog.get_product(product_id)).stock_available == 1

    settings = parse_settings(KafkaSettings, {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    producer = EventProducer(settings, client_id="catalog-test")
    await producer.start()
    event_id = str(uuid.uuid4())
    rejection = _status(rejected, orders_pb2.ORDER_STATUS_REJECTED, event_id)
    # The same event twice (a producer retry or a redelivery), and another order's approval.
    for key, value, eid in [
        (rejected, rejection, event_id),
        (rejected, rejection, event_id),
        (approved, _status(approved, orders_pb2.ORDER_STATUS_APPROVED), str(uuid.uuid4())),
    ]:
        await producer.send(kafka_topic, key, value, {"event-id": eid})

    group = f"catalog-test-{uuid.uuid4().hex[:8]}"
    consumer = IdempotentConsumer(
        settings,
        pool,
        consumers.handlers(Topics(order_status_changed=kafka_topic)),
        producer,
        group_id=group,
    )
    task = asyncio.create_task(consumer.run())
    try:
        waited = await _wait_for(
            lambda: consumer.counts["processed"] + consumer.counts["duplicate"] == 3
        )
    finally:
        await consumer.stop()
        await task
        await producer.stop()
    print(f"consumer took {waited:.2f}s to apply 3 messages")

    assert consumer.counts == {"processed": 2, "duplicate": 1, "retried": 0, "dead_lettered": 0}
    assert (await catalog.get_product(product_id)).stock_available == 5
    states = {
        row["order_id"]: row["state"]
        for row in await pool.fetch(
            "SELECT order_id, state FROM stock_reservations WHERE product_id = $1", product_id
        )
    }
    assert states == {rejected: "released", approved: "reserved"}
    recorded = await pool.fetchval(
        "SELECT count(*) FROM processed_events WHERE consumer_group = $1 AND event_id = $2",
        group,
        event_id,
    )
    assert recorded == 1


@pytest.mark.integration
async def test_an_impossible_status_change_is_dead_lettered_and_releases_nothing(
    pool: Any, kafka_bootstrap: str, kafka_topic: str, read_topic: Any
) -> None:
    repository = PostgresCatalogRepository(pool)
    catalog = Catalog(repository)
    product_id = f"p-{uuid.uuid4().hex[:10]}"
    await repository.upsert_products([SeedProduct(product_id, "P", "", "test", 100, "EUR", 10)])
    order_id = str(uuid.uuid4())
    await catalog.reserve_stock(order_id, [StockLine(product_id, 4)])

    settings = parse_settings(KafkaSettings, {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    producer = EventProducer(settings, client_id="catalog-test")
    await producer.start()
    # A rejection without its event id cannot come from orders: it must not
    # release the order's stock. The approval after it is applied as usual.
    impossible = _status(order_id, orders_pb2.ORDER_STATUS_REJECTED, event_id="")
    approval = _status(order_id, orders_pb2.ORDER_STATUS_APPROVED, str(uuid.uuid4()))
    for value in (impossible, approval):
        await producer.send(kafka_topic, order_id, value, {"event-id": str(uuid.uuid4())})

    consumer = IdempotentConsumer(
        settings,
        pool,
        consumers.handlers(Topics(order_status_changed=kafka_topic)),
        producer,
        group_id=f"catalog-test-{uuid.uuid4().hex[:8]}",
    )
    task = asyncio.create_task(consumer.run())
    try:
        await _wait_for(lambda: sum(consumer.counts.values()) >= 2)
    finally:
        await consumer.stop()
        await task
        await producer.stop()

    assert consumer.counts == {"processed": 1, "duplicate": 0, "retried": 0, "dead_lettered": 1}
    assert (await catalog.get_product(product_id)).stock_available == 6
    dead = await read_topic(f"{kafka_topic}.dlq", 1)
    assert [record.value for record in dead] == [impossible]
    reason = dict(dead[0].headers)["dlq-error"].decode()
    assert reason == "PoisonMessage: invalid OrderStatusChanged: event_id: is required"
