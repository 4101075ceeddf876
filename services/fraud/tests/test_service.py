"""The fraud service on a real PostgreSQL database and real Kafka.

The service is the composition of main.py, started in this process on
loopback ports, fed ``OrderPlaced`` events on its own test topics.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from emporium.common.v1 import money_pb2
from emporium.events.v1 import fraud_events_pb2, order_events_pb2
from emporium.fraud.main import build
from emporium.fraud.settings import FraudSettings
from emporium.fraud.topics import Topics
from emporium.kit.config import parse_settings
from emporium.kit.db import Database
from emporium.kit.kafka import EventProducer
from emporium.orders.v1 import orders_pb2
from emporium.testing.pytest_plugin import eventually, log_line_traces, service_env

pytestmark = pytest.mark.integration

APPROVE = fraud_events_pb2.FRAUD_DECISION_APPROVE
REJECT = fraud_events_pb2.FRAUD_DECISION_REJECT


def order_placed(
    customer: str = "alice", total_minor: int = 4_498, order_id: str | None = None, **items: int
) -> order_events_pb2.OrderPlaced:
    """An OrderPlaced as orders writes it: lines priced so that they add up to the total.

    Every line but the last costs 1.00 EUR a unit; the last one takes the rest.
    """
    items = items or {"sku_1": 2, "sku_2": 1}
    *others, (last, last_quantity) = items.items()
    rest = total_minor - 100 * sum(quantity for _, quantity in others)
    assert rest >= 0, "the total is smaller than the other lines"
    assert rest % last_quantity == 0, "the total does not split into the lines"
    prices = {pid: 100 for pid, _ in others} | {last: rest // last_quantity}
    return order_events_pb2.OrderPlaced(
        event_id=str(uuid.uuid4()),
        order_id=order_id or str(uuid.uuid4()),
        customer_id=customer,
        items=[
            orders_pb2.OrderItem(
                product_id=pid.replace("_", "-"),
                quantity=qty,
                unit_price=money_pb2.Money(currency_code="EUR", amount_minor=prices[pid]),
            )
            for pid, qty in items.items()
        ],
        total=money_pb2.Money(currency_code="EUR", amount_minor=total_minor),
    )


async def publish(
    producer: EventProducer,
    topic: str,
    event: order_events_pb2.OrderPlaced,
    *,
    event_id: str | None = None,
    payload: bytes | None = None,
) -> None:
    await producer.send(
        topic,
        event.order_id,
        payload if payload is not None else event.SerializeToString(),
        {"event-id": event_id or event.event_id},
    )


async def decision_count(db: Database) -> int:
    return int(await db.fetchval("SELECT count(*) FROM decisions"))


async def test_orders_are_scored_and_decisions_published(
    fraud: Any, db: Database, topics: Topics, producer: EventProducer, read_topic: Any
) -> None:
    ordinary = order_placed()
    denied = order_placed(customer="fraud-mallory")
    expensive = order_placed(total_minor=250_000)
    for event in (ordinary, denied, expensive):
        await publish(producer, topics.order_placed, event)
    took = await eventually(lambda: _has(db, 3), within=20)
    print(f"three orders decided {took:.2f}s after publishing")

    rows = {
        r["order_id"]: r
        for r in await db.fetch("SELECT order_id, verdict, risk_score, reason FROM decisions")
    }
    assert (rows[ordinary.order_id]["verdict"], rows[ordinary.order_id]["risk_score"]) == (
        "APPROVE",
        0,
    )
    assert rows[denied.order_id]["verdict"] == "REJECT"
    assert rows[denied.order_id]["reason"] == "customer is on the deny list"
    assert rows[expensive.order_id]["verdict"] == "REJECT"
    assert "2500.00 EUR" in rows[expensive.order_id]["reason"]

    records = await read_topic(topics.fraud_decision_made, 3)
    published = {
        r.key.decode(): fraud_events_pb2.FraudDecisionMade.FromString(r.value) for r in records
    }
    assert {k: v.decision for k, v in published.items()} == {
        ordinary.order_id: APPROVE,
        denied.order_id: REJECT,
        expensive.order_id: REJECT,
    }
    assert all(v.order_id == k and v.event_id for k, v in published.items())
    assert published[denied.order_id].risk_score == 100


async def test_a_redelivered_order_gets_no_second_decision(
    fraud: Any, db: Database, topics: Topics, producer: EventProducer, read_topic: Any
) -> None:
    event = order_placed()
    await publish(producer, topics.order_placed, event)
    await eventually(lambda: _has(db, 1), within=20)
    # The same event again, and the same order under a new event id.
    await publish(producer, topics.order_placed, event)
    await publish(producer, topics.order_placed, event, event_id=str(uuid.uuid4()))

    async def both_seen() -> bool:
        counts = (await fraud.healthz())["kafka_consumer"]["counts"]
        return bool(counts["duplicate"] >= 1 and counts["processed"] >= 2)

    await eventually(both_seen, within=20)
    assert await decision_count(db) == 1
    assert await db.fetchval("SELECT count(*) FROM outbox") == 1
    await asyncio.sleep(0.5)  # give the relay a chance to publish anything extra
    records = await read_topic(topics.fraud_decision_made, 2, within=2)
    assert len(records) == 1


async def test_poison_events_go_to_the_dlq_and_consumption_goes_on(
    fraud: Any, db: Database, topics: Topics, producer: EventProducer, read_topic: Any
) -> None:
    good = order_placed()
    await publish(producer, topics.order_placed, good, payload=b"\xff\xfenot protobuf")
    no_total = order_placed()
    no_total.ClearField("total")
    await publish(producer, topics.order_placed, no_total)
    await publish(producer, topics.order_placed, order_placed(order_id="42"))
    await publish(producer, topics.order_placed, good, event_id=str(uuid.uuid4()))
    await eventually(lambda: _has(db, 1), within=20)
    dead = await read_topic(f"{topics.order_placed}.dlq", 3)
    assert len(dead) == 3
    assert all(dict(r.headers)["dlq-error"].startswith(b"PoisonMessage") for r in dead)
    assert await db.fetchval("SELECT order_id FROM decisions") == good.order_id


async def test_an_impossible_order_is_dead_lettered_with_its_reason_and_never_scored(
    fraud: Any, db: Database, topics: Topics, producer: EventProducer, read_topic: Any
) -> None:
    # The order of the issue: negative quantity and totals, for an order that
    # does not exist. Scored, it would have been approved.
    impossible = order_placed()
    impossible.items[0].quantity = -2
    impossible.total.amount_minor = -4_498
    no_customer = order_placed(customer="")
    good = order_placed()
    for event in (impossible, no_customer, good):
        await publish(producer, topics.order_placed, event)
    await eventually(lambda: _has(db, 1), within=20)
    dead = await read_topic(f"{topics.order_placed}.dlq", 2)
    reasons = {r.key.decode(): dict(r.headers)["dlq-error"].decode() for r in dead}
    assert reasons == {
        impossible.order_id: "PoisonMessage: invalid OrderPlaced: "
        "items[0].quantity: must be between 1 and 100; "
        "total.amount_minor: must not be negative, got -4498",
        no_customer.order_id: "PoisonMessage: invalid OrderPlaced: customer_id: is required",
    }
    assert [r.value for r in dead if r.key.decode() == impossible.order_id] == [
        impossible.SerializeToString()
    ]
    assert await db.fetchval("SELECT order_id FROM decisions") == good.order_id
    assert await db.fetchval("SELECT count(*) FROM outbox") == 1


async def _backlog(producer: EventProducer, topics: Topics, poison: bool) -> list[Any]:
    """40 orders (the 6th denied, the 10th too expensive), queued before fraud starts.

    Then a redelivery of the 4th and the 5th order under a new event id; with
    ``poison``, an undecodable event in the middle.
    """
    orders = [order_placed() for _ in range(40)]
    orders[5] = order_placed(customer="fraud-mallory")
    orders[9] = order_placed(total_minor=250_000)
    for i, event in enumerate(orders):
        if poison and i == 20:
            await publish(producer, topics.order_placed, order_placed(), payload=b"\xffnot it")
        await publish(producer, topics.order_placed, event)
    await publish(producer, topics.order_placed, orders[3])
    await publish(producer, topics.order_placed, orders[4], event_id=str(uuid.uuid4()))
    return orders


async def _each_decided_once(
    orders: list[Any], db: Database, topics: Topics, read_topic: Any
) -> None:
    await eventually(lambda: _has(db, 40), within=30)
    records = await read_topic(topics.fraud_decision_made, 41, within=5)
    published = [fraud_events_pb2.FraudDecisionMade.FromString(r.value) for r in records]
    assert sorted(d.order_id for d in published) == sorted(o.order_id for o in orders)
    verdicts = {d.order_id: d.decision for d in published}
    assert [o.order_id for o in orders if verdicts[o.order_id] == REJECT] == [
        orders[5].order_id,
        orders[9].order_id,
    ]
    assert await decision_count(db) == 40
    assert await db.fetchval("SELECT count(*) FROM outbox") == 40


async def test_a_backlog_is_decided_in_batches_each_order_once(
    database: str,
    kafka_bootstrap: str,
    db: Database,
    topics: Topics,
    producer: EventProducer,
    read_topic: Any,
    run_service: Any,
) -> None:
    orders = await _backlog(producer, topics, poison=False)
    env = service_env("fraud", DATABASE_URL=database, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap)
    await run_service(await build(parse_settings(FraudSettings, env), topics))
    await _each_decided_once(orders, db, topics, read_topic)
    # Many decisions per transaction: the backlog was not applied one by one.
    transactions = await db.fetchval("SELECT count(DISTINCT xmin::text) FROM decisions")
    assert transactions < 20, f"{transactions} transactions for 40 decisions"


async def test_a_poison_event_in_a_backlog_is_dead_lettered_and_the_rest_decided(
    database: str,
    kafka_bootstrap: str,
    db: Database,
    topics: Topics,
    producer: EventProducer,
    read_topic: Any,
    run_service: Any,
) -> None:
    orders = await _backlog(producer, topics, poison=True)
    env = service_env("fraud", DATABASE_URL=database, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap)
    await run_service(await build(parse_settings(FraudSettings, env), topics))
    await _each_decided_once(orders, db, topics, read_topic)
    dead = await read_topic(f"{topics.order_placed}.dlq", 1)
    assert [r.value for r in dead] == [b"\xffnot it"]


async def test_a_batchs_decision_log_lines_carry_their_own_orders_trace(
    database: str,
    kafka_bootstrap: str,
    db: Database,
    topics: Topics,
    producer: EventProducer,
    run_service: Any,
    spans: InMemorySpanExporter,
) -> None:
    # Queued before fraud starts, so one poll brings them as one batch.
    orders = [order_placed() for _ in range(5)]
    for event in orders:
        await publish(producer, topics.order_placed, event)
    with log_line_traces("emporium.fraud.domain") as lines:
        env = service_env("fraud", DATABASE_URL=database, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap)
        await run_service(await build(parse_settings(FraudSettings, env), topics))
        await eventually(lambda: _has(db, 5), within=20)

    assert await db.fetchval("SELECT count(DISTINCT xmin::text) FROM decisions") < 5
    consumed = {
        span.attributes["messaging.message.id"]: span.context.trace_id
        for span in spans.get_finished_spans()
        if span.name == f"process {topics.order_placed}" and span.attributes
    }
    logged = lines.trace_of("fraud decision made")
    assert logged == {event.order_id: consumed[event.event_id] for event in orders}
    assert len(set(logged.values())) == 5


async def test_grpc_port_serves_health_and_reflection(fraud: Any) -> None:
    async with grpc.aio.insecure_channel(fraud.grpc_addr) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=2
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=2
        )
        services = [s.name async for reply in stream for s in reply.list_services_response.service]
    assert "grpc.health.v1.Health" in services
    report = await fraud.healthz()
    assert report["dependencies"]["postgres"]["critical"] is True
    assert report["dependencies"]["kafka"]["critical"] is False


async def _has(db: Database, expected: int) -> bool:
    return await decision_count(db) >= expected
