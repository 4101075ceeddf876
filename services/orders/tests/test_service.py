"""The orders service over real gRPC, on a real PostgreSQL database and real Kafka.

The service is the composition of main.py, started in this process on
loopback ports; the catalog is a test double served over real gRPC whose
answers the tests control.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from emporium.events.v1 import fraud_events_pb2, order_events_pb2
from emporium.kit.config import KafkaSettings, parse_settings
from emporium.kit.db import Database
from emporium.kit.kafka import EventProducer
from emporium.orders import domain
from emporium.orders.repository import PostgresOrderRepository, PostgresOrderStatusStore
from emporium.orders.topics import Topics
from emporium.orders.v1 import orders_pb2
from emporium.testing.pytest_plugin import eventually, log_line_traces

pytestmark = pytest.mark.integration

PENDING = orders_pb2.ORDER_STATUS_PENDING
PENDING_STATUS = domain.OrderStatus.PENDING
APPROVED = orders_pb2.ORDER_STATUS_APPROVED
REJECTED = orders_pb2.ORDER_STATUS_REJECTED


def place_request(
    key: str | None = None, customer: str = "alice", **items: int
) -> orders_pb2.PlaceOrderRequest:
    items = items or {"sku_1": 2, "sku_2": 1}
    return orders_pb2.PlaceOrderRequest(
        idempotency_key=key or f"key-{uuid.uuid4().hex}",
        customer_id=customer,
        items=[
            orders_pb2.OrderItem(product_id=pid.replace("_", "-"), quantity=qty)
            for pid, qty in items.items()
        ],
    )


async def counts(db: Database) -> dict[str, int]:
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM orders) AS orders,"
        " (SELECT count(*) FROM order_lines) AS lines,"
        " (SELECT count(*) FROM idempotency_keys) AS keys,"
        " (SELECT count(*) FROM outbox) AS outbox"
    )
    return dict(row)


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    found = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


async def publish_decision(
    kafka_bootstrap: str,
    topic: str,
    order_id: str,
    decision: int,
    *,
    event_id: str | None = None,
    reason: str = "",
    risk_score: int = 42,
    payload: bytes | None = None,
) -> str:
    settings = parse_settings(KafkaSettings, {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    producer = EventProducer(settings, client_id="orders-tests")
    await producer.start()
    event_id = event_id or str(uuid.uuid4())
    message = fraud_events_pb2.FraudDecisionMade(
        event_id=event_id,
        order_id=order_id,
        decision=decision,
        risk_score=risk_score,
        reason=reason,
    )
    try:
        await producer.send(
            topic,
            order_id,
            payload if payload is not None else message.SerializeToString(),
            {"event-id": event_id},
        )
    finally:
        await producer.stop()
    return event_id


# --- PlaceOrder and GetOrder --------------------------------------------------------


async def test_place_order_writes_order_lines_key_and_outbox_row(
    orders: Any, db: Database, catalog_server: Any, topics: Topics, read_topic: Any
) -> None:
    reply = await orders.stub.PlaceOrder(place_request(), timeout=5)
    order = reply.order
    assert reply.created
    assert order.status == PENDING
    assert order.total.currency_code == "EUR"
    assert order.total.amount_minor == 2 * 1999 + 500
    assert [(i.product_id, i.quantity, i.unit_price.amount_minor) for i in order.items] == [
        ("sku-1", 2, 1999),
        ("sku-2", 1, 500),
    ]
    assert uuid.UUID(order.order_id)
    assert order.order_id in catalog_server.servicer.reservations
    # One catalog call: the reservation answered with the prices.
    assert catalog_server.servicer.calls == {"ReserveStock": 1}
    assert await counts(db) == {"orders": 1, "lines": 2, "keys": 1, "outbox": 1}

    outbox = await db.fetchrow("SELECT topic, key, payload, event_id FROM outbox")
    assert (outbox["topic"], outbox["key"]) == (topics.order_placed, order.order_id)
    placed = order_events_pb2.OrderPlaced.FromString(outbox["payload"])
    assert placed.order_id == order.order_id
    assert placed.event_id == outbox["event_id"]
    assert placed.total == order.total
    assert list(placed.items) == list(order.items)

    fetched = await orders.stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order.order_id))
    assert fetched.order == order

    # The relay publishes the event to Kafka, keyed by order id.
    records = await read_topic(topics.order_placed, 1)
    assert [
        (r.key.decode(), order_events_pb2.OrderPlaced.FromString(r.value)) for r in records
    ] == [(order.order_id, placed)]


async def test_a_catalog_without_prices_in_its_reservations_is_asked_for_them(
    orders: Any, db: Database, catalog_server: Any
) -> None:
    # A catalog from before ReserveStock answered with prices (a rolling upgrade).
    catalog_server.servicer.prices_in_reservation = False
    reply = await orders.stub.PlaceOrder(place_request(), timeout=5)
    assert reply.order.total.amount_minor == 2 * 1999 + 500
    assert [(i.product_id, i.unit_price.amount_minor) for i in reply.order.items] == [
        ("sku-1", 1999),
        ("sku-2", 500),
    ]
    assert catalog_server.servicer.calls == {"ReserveStock": 1, "BatchGetPrices": 1}
    assert await counts(db) == {"orders": 1, "lines": 2, "keys": 1, "outbox": 1}


async def test_same_key_twice_returns_the_first_order(
    orders: Any, db: Database, catalog_server: Any
) -> None:
    request = place_request()
    first = await orders.stub.PlaceOrder(request, timeout=5)
    second = await orders.stub.PlaceOrder(request, timeout=5)
    assert (first.created, second.created) == (True, False)
    assert second.order == first.order
    assert await counts(db) == {"orders": 1, "lines": 2, "keys": 1, "outbox": 1}
    assert catalog_server.servicer.calls.get("ReserveStock") == 1

    changed = place_request(key=request.idempotency_key, sku_1=5)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await orders.stub.PlaceOrder(changed, timeout=5)
    assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error.value.details() == "idempotency key reused with a different request"


async def test_ten_concurrent_requests_with_one_key_make_one_order(
    orders: Any, db: Database, catalog_server: Any
) -> None:
    request = place_request()
    replies = await asyncio.gather(
        *(orders.stub.PlaceOrder(request, timeout=10) for _ in range(10))
    )
    assert len({r.order.order_id for r in replies}) == 1
    assert sum(r.created for r in replies) == 1
    assert await counts(db) == {"orders": 1, "lines": 2, "keys": 1, "outbox": 1}
    # Requests that lost the race gave their reservations back.
    assert list(catalog_server.servicer.reservations) == [replies[0].order.order_id]
    reserved = catalog_server.servicer.calls.get("ReserveStock", 0)
    assert len(catalog_server.servicer.released) == reserved - 1
    print(f"10 concurrent PlaceOrder, one key: {reserved} reservations, {reserved - 1} released")
    assert catalog_server.servicer.stock["sku-1"] == 1000 - 2


async def test_bad_requests_name_their_fields(orders: Any, db: Database) -> None:
    request = orders_pb2.PlaceOrderRequest(
        idempotency_key="short",
        customer_id="",
        items=[
            orders_pb2.OrderItem(product_id="sku-1", quantity=1),
            orders_pb2.OrderItem(product_id="sku-2", quantity=0),
            orders_pb2.OrderItem(product_id="sku-1", quantity=1),
        ],
    )
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await orders.stub.PlaceOrder(request, timeout=5)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(error.value)) == {
        "idempotency_key",
        "customer_id",
        "items[1].quantity",
        "items[2].product_id",
    }
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await orders.stub.GetOrder(orders_pb2.GetOrderRequest(order_id="nope"), timeout=5)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error.value) == {"order_id": "must be a UUID"}
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await orders.stub.GetOrder(orders_pb2.GetOrderRequest(order_id=str(uuid.uuid4())))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await counts(db))["orders"] == 0


async def test_ten_thousand_identical_lines_get_a_small_refusal(orders: Any, db: Database) -> None:
    request = place_request()
    del request.items[:]
    request.items.extend([orders_pb2.OrderItem(product_id="sku-1", quantity=1)] * 10_000)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await orders.stub.PlaceOrder(request, timeout=5)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    listed = field_violations(error.value)
    assert len(listed) == 20
    assert listed["items"] == "must contain 1 to 50 items, got 10000"
    details = error.value.details() or ""
    assert details.endswith(" more")
    # The rich status (message and BadRequest) travels in this trailer.
    size = len(error.value.trailing_metadata()["grpc-status-details-bin"])
    print(f"refusal of 10,000 identical lines: {size} bytes (message {len(details)})")
    assert size < 3072
    assert (await counts(db))["orders"] == 0


async def test_control_characters_are_invalid_not_internal(
    orders: Any, db: Database, catalog_server: Any
) -> None:
    # PostgreSQL cannot store NUL in text: before validation refused it, the
    # insert failed with INTERNAL, which callers count as a failure of orders
    # (five such requests opened the gateway's breaker for every customer).
    for customer in ("evil\x00", "tab\there", "bell\x07"):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await orders.stub.PlaceOrder(place_request(customer=customer), timeout=5)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, customer
        assert set(field_violations(error.value)) == {"customer_id"}
    assert await counts(db) == {"orders": 0, "lines": 0, "keys": 0, "outbox": 0}
    assert catalog_server.servicer.calls.get("ReserveStock", 0) == 0


async def test_any_printable_ascii_idempotency_key_is_accepted(orders: Any, db: Database) -> None:
    # The contract (orders.proto, docs/api.md) allows 8 to 128 printable ASCII
    # characters: base64 keys and keys with spaces inside are valid.
    for key in ("abc+def/ghi=", "order 2026 #17", "~!@$%^&*()[]{}"):
        reply = await orders.stub.PlaceOrder(place_request(key=key), timeout=5)
        assert reply.created, key
        again = await orders.stub.PlaceOrder(place_request(key=key), timeout=5)
        assert again.order.order_id == reply.order.order_id
        assert not again.created
    for key in ("caf\u00e9-key-1", "tab\tin-key"):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await orders.stub.PlaceOrder(place_request(key=key), timeout=5)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, key
        assert set(field_violations(error.value)) == {"idempotency_key"}
    assert (await counts(db))["orders"] == 3


async def test_catalog_refusals_write_nothing(
    orders: Any, db: Database, catalog_server: Any
) -> None:
    catalog_server.servicer.stock["sku-2"] = 0
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await orders.stub.PlaceOrder(place_request(), timeout=5)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await orders.stub.PlaceOrder(place_request(sku_1=1, sku_404=1), timeout=5)
    # The catalog refuses the reservation naming product ids; orders finds out
    # which cart line is unknown (BatchGetPrices is all or nothing, so per
    # product) and names it.
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error.value) == {"items[1].product_id": "unknown product"}
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await orders.stub.PlaceOrder(place_request(sku_1=1, sku_usd=1), timeout=5)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "currencies" in (error.value.details() or "")
    assert await counts(db) == {"orders": 0, "lines": 0, "keys": 0, "outbox": 0}
    assert catalog_server.servicer.reservations == {}


async def test_catalog_down_is_unavailable_and_writes_nothing(
    orders: Any, db: Database, catalog_server: Any
) -> None:
    await catalog_server.stop()
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await orders.stub.PlaceOrder(place_request(), timeout=5)
    elapsed = time.monotonic() - started
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "catalog" in (error.value.details() or "")
    assert elapsed < 2.0, f"UNAVAILABLE took {elapsed:.2f}s"
    assert await counts(db) == {"orders": 0, "lines": 0, "keys": 0, "outbox": 0}
    # Repeated failures open the catalog breaker; calls then fail fast, still UNAVAILABLE.
    for _ in range(5):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await orders.stub.PlaceOrder(place_request(), timeout=5)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    async with httpx.AsyncClient(timeout=2) as http:
        health = (await http.get(orders.admin_url + "/healthz")).json()
    assert health["breakers"]["catalog"]["state"] == "open"
    pending_before = await db.fetchval("SELECT count(*) FROM pending_reservations")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await orders.stub.PlaceOrder(place_request(), timeout=5)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    # Failing fast is the breaker refusing the call before it leaves, not a
    # wall-clock bound (which a loaded machine breaks).
    assert "circuit breaker open" in (error.value.details() or "")
    assert await counts(db) == {"orders": 0, "lines": 0, "keys": 0, "outbox": 0}
    # The breaker refused the reservation before it left: nothing for the sweeper.
    assert await db.fetchval("SELECT count(*) FROM pending_reservations") == pending_before
    # Catalog is critical for checkout: orders reports unready while it is down.
    await eventually(lambda: _ready_is(orders, False), within=5)
    await catalog_server.start()
    await eventually(lambda: _ready_is(orders, True), within=15)

    # After the breaker's reset time a trial call goes through and closes it.
    async def placed() -> bool:
        try:
            return bool((await orders.stub.PlaceOrder(place_request(), timeout=5)).created)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            return False

    await eventually(placed, within=5, interval=0.2)
    assert (await counts(db))["orders"] == 1


async def test_order_and_outbox_row_commit_or_roll_back_together(
    orders: Any, db: Database, catalog_server: Any
) -> None:
    # Make the outbox insert, the last statement of the transaction, fail.
    await db.execute(
        """
        CREATE FUNCTION refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'outbox refused by the test'; END $$;
        CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox
            FOR EACH ROW EXECUTE FUNCTION refuse_outbox();
        """
    )
    request = place_request()
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await orders.stub.PlaceOrder(request, timeout=5)
    assert error.value.code() == grpc.StatusCode.INTERNAL
    assert await counts(db) == {"orders": 0, "lines": 0, "keys": 0, "outbox": 0}
    # The stock reserved for the order that was never acknowledged went back.
    assert catalog_server.servicer.reservations == {}
    assert len(catalog_server.servicer.released) == 1

    await db.execute("DROP TRIGGER refuse_outbox ON outbox")
    reply = await orders.stub.PlaceOrder(request, timeout=5)
    assert reply.created
    assert await counts(db) == {"orders": 1, "lines": 2, "keys": 1, "outbox": 1}


async def _ready_is(orders: Any, expected: bool) -> bool:
    async with httpx.AsyncClient(timeout=1) as http:
        try:
            response = await http.get(orders.admin_url + "/readyz")
        except httpx.HTTPError:
            return False
    return (response.status_code == 200) is expected


# --- the orders database going away ---------------------------------------------------


async def test_database_down_between_reservation_and_commit(
    database: str,
    db: Database,
    catalog_server: Any,
    topics: Topics,
    start_orders: Callable[..., Awaitable[Any]],
    make_env: Any,
    tcp_proxy: Any,
) -> None:
    host, port = database.rsplit("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
    proxy = await tcp_proxy(host, int(port))
    through_proxy = database.replace(f"@{host}:{port}/", f"@127.0.0.1:{proxy.port}/")
    env = make_env(
        through_proxy,
        catalog_server.addr,
        RESERVATION_HOLD_SECONDS="1",
        RESERVATION_SWEEP_INTERVAL_SECONDS="0.2",
    )
    orders = await start_orders(env, topics)

    # The database goes away after the stock was reserved, before the commit.
    catalog_server.servicer.after_reserve = proxy.cut
    request = place_request()
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await orders.stub.PlaceOrder(request, timeout=5)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE, error.value.details()
    assert time.monotonic() - started < 5
    # Whether the commit happened cannot be known while the database is away,
    # so the stock stays held for now (releasing it could strip a stored order).
    assert len(catalog_server.servicer.reservations) == 1
    assert catalog_server.servicer.released == []
    catalog_server.servicer.after_reserve = None

    # While it is down: a clean UNAVAILABLE before any reservation, and unready within 5 s.
    unready_after = await eventually(lambda: _ready_is(orders, False), within=5)
    reservations_before = catalog_server.servicer.calls.get("ReserveStock", 0)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await orders.stub.PlaceOrder(place_request(), timeout=5)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert catalog_server.servicer.calls.get("ReserveStock", 0) == reservations_before

    await proxy.start()
    ready_after = await eventually(lambda: _ready_is(orders, True), within=5)
    print(f"orders unready {unready_after:.1f}s after the cut, ready {ready_after:.1f}s after")
    assert await counts(db) == {"orders": 0, "lines": 0, "keys": 0, "outbox": 0}

    # The order was not stored, so the reservation sweeper gives its stock back.
    async def released() -> bool:
        return catalog_server.servicer.reservations == {}

    await eventually(released, within=10, what="stock released by the sweeper")
    assert len(catalog_server.servicer.released) == 1
    # The client retries with the same key: now it is placed, once.
    reply = await orders.stub.PlaceOrder(request, timeout=5)
    assert reply.created
    assert await counts(db) == {"orders": 1, "lines": 2, "keys": 1, "outbox": 1}


async def test_kafka_unreachable_checkout_goes_on(
    database: str,
    db: Database,
    catalog_server: Any,
    topics: Topics,
    start_orders: Callable[..., Awaitable[Any]],
    make_env: Any,
    unused_port: int,
) -> None:
    env = make_env(database, catalog_server.addr, kafka=f"127.0.0.1:{unused_port}")
    orders = await start_orders(env, topics)
    replies = [await orders.stub.PlaceOrder(place_request(), timeout=5) for _ in range(3)]
    assert all(r.created and r.order.status == PENDING for r in replies)
    assert await _ready_is(orders, True)
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 3
    async with httpx.AsyncClient(timeout=2) as http:
        health = (await http.get(orders.admin_url + "/healthz")).json()
    assert health["dependencies"]["kafka"]["status"] == "down"
    assert health["dependencies"]["kafka"]["critical"] is False
    assert health["dependencies"]["postgres"]["status"] == "up"


# --- fraud decisions ------------------------------------------------------------------


async def test_fraud_decisions_flip_the_status_and_emit_events(
    orders: Any, db: Database, topics: Topics, kafka_bootstrap: str, read_topic: Any
) -> None:
    approved = (await orders.stub.PlaceOrder(place_request(), timeout=5)).order
    rejected = (await orders.stub.PlaceOrder(place_request(customer="fraud-x"), timeout=5)).order
    await publish_decision(kafka_bootstrap, topics.fraud_decision_made, approved.order_id, 1)
    await publish_decision(
        kafka_bootstrap,
        topics.fraud_decision_made,
        rejected.order_id,
        2,
        reason="customer is on the deny list",
    )

    async def decided() -> bool:
        statuses = {
            o.order_id: (
                await orders.stub.GetOrder(orders_pb2.GetOrderRequest(order_id=o.order_id))
            ).order.status
            for o in (approved, rejected)
        }
        return statuses == {approved.order_id: APPROVED, rejected.order_id: REJECTED}

    took = await eventually(decided, within=30)
    print(f"decisions applied {took:.2f}s after publishing")
    reply = await orders.stub.GetOrder(orders_pb2.GetOrderRequest(order_id=rejected.order_id))
    assert reply.order.status_reason == "customer is on the deny list"
    assert reply.order.updated_at.ToDatetime() > reply.order.created_at.ToDatetime()

    records = await read_topic(topics.order_status_changed, 2)
    changes = {
        r.key.decode(): order_events_pb2.OrderStatusChanged.FromString(r.value) for r in records
    }
    assert set(changes) == {approved.order_id, rejected.order_id}
    assert (changes[approved.order_id].previous_status, changes[approved.order_id].status) == (
        PENDING,
        APPROVED,
    )
    assert changes[rejected.order_id].status == REJECTED
    assert changes[rejected.order_id].reason == "customer is on the deny list"


async def test_duplicate_late_and_unknown_decisions_are_ignored(
    orders: Any, db: Database, topics: Topics, kafka_bootstrap: str
) -> None:
    order = (await orders.stub.PlaceOrder(place_request(), timeout=5)).order
    topic = topics.fraud_decision_made
    event_id = await publish_decision(kafka_bootstrap, topic, order.order_id, 1)
    await eventually(
        lambda: _status_is(db, order.order_id, "APPROVED"),
        within=30,
    )
    # The same event again, a contradicting late decision and one for an unknown order.
    await publish_decision(kafka_bootstrap, topic, order.order_id, 1, event_id=event_id)
    await publish_decision(kafka_bootstrap, topic, order.order_id, 2, reason="late")
    await publish_decision(kafka_bootstrap, topic, str(uuid.uuid4()), 2)
    await eventually(
        lambda: _processed(db, 3),  # the duplicate is not recorded a second time
        within=30,
    )
    assert await _status_is(db, order.order_id, "APPROVED")
    assert (
        await db.fetchval(
            "SELECT count(*) FROM outbox WHERE topic = $1", topics.order_status_changed
        )
        == 1
    )


async def test_a_decision_waits_for_one_in_flight_for_the_same_order_then_is_ignored(
    orders: Any, db: Database, topics: Topics
) -> None:
    order_id = (await orders.stub.PlaceOrder(place_request(), timeout=5)).order.order_id
    approve = domain.FraudDecision(order_id, domain.FraudVerdict.APPROVE, 0, "")
    reject = domain.FraudDecision(order_id, domain.FraudVerdict.REJECT, 90, "late")

    async def decide(decision: domain.FraudDecision) -> domain.OrderStatusChangedEvent | None:
        async with db.unit_of_work() as uow:
            return await domain.apply_fraud_decision(
                PostgresOrderStatusStore(uow, topics), decision
            )

    async with db.unit_of_work() as first:
        store = PostgresOrderStatusStore(first, topics)
        pending = await store.get_for_update([order_id])  # holds the order's row
        assert pending[order_id].status is domain.OrderStatus.PENDING
        second = asyncio.create_task(decide(reject))
        await asyncio.sleep(0.5)
        assert not second.done(), "the second decision did not wait for the first"
        event = await domain.apply_fraud_decision(store, approve)
        assert event is not None
    assert await second is None  # it read the order as the first one left it
    assert await _status_is(db, order_id, "APPROVED")
    assert (
        await db.fetchval(
            "SELECT count(*) FROM outbox WHERE topic = $1", topics.order_status_changed
        )
        == 1
    )


async def test_a_backlog_of_decisions_is_applied_in_batches_each_once(
    database: str,
    kafka_bootstrap: str,
    db: Database,
    topics: Topics,
    catalog_server: Any,
    start_orders: Any,
    make_env: Any,
    spans: InMemorySpanExporter,
) -> None:
    # Six pending orders, written as checkout writes them.
    repository = PostgresOrderRepository(db, topics)
    placed = []
    for i in range(6):
        now = domain.utc_now()
        line = domain.OrderLine("sku-1", 1, domain.Money("EUR", 1999))
        order = domain.Order(
            domain.new_id(), "alice", (line,), line.unit_price, PENDING_STATUS, "", now, now
        )
        assert await repository.hold_reservation(order.order_id, f"key-backlog-{i}") is None
        event = domain.OrderPlacedEvent(domain.new_id(), order)
        await repository.add_placed_order(order, f"key-backlog-{i}", f"f-{i}", event)
        placed.append(order)
    # Their decisions are queued before orders starts, so polls bring several
    # at once; the first order gets a second, later decision, which must lose.
    topic = topics.fraud_decision_made
    event_ids = {}
    for i, order in enumerate(placed):
        verdict = 2 if i % 3 == 2 else 1  # REJECT every third
        event_ids[order.order_id] = await publish_decision(
            kafka_bootstrap, topic, order.order_id, verdict, reason="limit"
        )
    await publish_decision(kafka_bootstrap, topic, placed[0].order_id, 2, reason="late")

    with log_line_traces("emporium.orders.domain") as lines:
        await start_orders(make_env(database, catalog_server.addr), topics)
        expected = {
            o.order_id: "REJECTED" if i % 3 == 2 else "APPROVED" for i, o in enumerate(placed)
        }

        async def all_decided() -> bool:
            rows = await db.fetch("SELECT order_id::text, status FROM orders")
            return {row["order_id"]: row["status"] for row in rows} == expected

        await eventually(all_decided, within=30)
        # All seven decisions handled (the ledger has them), the late one included.
        await eventually(lambda: _handled(db, topic, len(placed) + 1), within=10)

    # Fewer transactions than orders: polls brought several decisions, which the
    # batch handler applied together.
    transactions = await db.fetchval("SELECT count(DISTINCT xmin::text) FROM orders")
    assert transactions < len(placed), f"{transactions} transactions for {len(placed)} orders"
    # One status change per order (the late decision was ignored), each
    # logged in the trace of the decision event that made it.
    changes = await db.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = $1", topics.order_status_changed
    )
    assert changes == len(placed)
    consumed = {
        span.attributes["messaging.message.id"]: span.context.trace_id
        for span in spans.get_finished_spans()
        if span.name == f"process {topic}" and span.attributes
    }
    logged = lines.trace_of("order status changed")
    assert logged == {order_id: consumed[event_id] for order_id, event_id in event_ids.items()}


async def _handled(db: Database, topic: str, n: int) -> bool:
    return await db.fetchval("SELECT count(*) FROM processed_events WHERE topic = $1", topic) == n


async def test_a_poison_decision_goes_to_the_dlq_and_consumption_goes_on(
    orders: Any, db: Database, topics: Topics, kafka_bootstrap: str, read_topic: Any
) -> None:
    order = (await orders.stub.PlaceOrder(place_request(), timeout=5)).order
    topic = topics.fraud_decision_made
    await publish_decision(
        kafka_bootstrap, topic, order.order_id, 1, payload=b"\xff\xffnot protobuf"
    )
    await publish_decision(kafka_bootstrap, topic, "not-a-uuid", 1)
    await publish_decision(kafka_bootstrap, topic, order.order_id, 0)  # UNSPECIFIED
    # A rejection no fraud service can make: had it been applied, the order
    # would be rejected (the first decision wins), not approved.
    await publish_decision(kafka_bootstrap, topic, order.order_id, 2, risk_score=-5)
    await publish_decision(kafka_bootstrap, topic, order.order_id, 1)
    await eventually(lambda: _status_is(db, order.order_id, "APPROVED"), within=30)
    dead = await read_topic(f"{topic}.dlq", 4)
    assert len(dead) == 4
    errors = sorted(dict(r.headers)["dlq-error"].decode() for r in dead)
    assert all(e.startswith("PoisonMessage") for e in errors), errors
    assert (
        "PoisonMessage: invalid FraudDecisionMade: risk_score: must be between 0 and 100" in errors
    )


async def _status_is(db: Database, order_id: str, status: str) -> bool:
    return await db.fetchval("SELECT status FROM orders WHERE order_id = $1", order_id) == status


async def _processed(db: Database, expected: int) -> bool:
    return await db.fetchval("SELECT count(*) FROM processed_events") >= expected
