"""No reserved stock leaks: the pending-reservation log and its sweeper, for real.

The orders service (main.build) runs on a real PostgreSQL database; the
catalog is the gRPC test double of conftest.py, reached through a TCP relay
the tests cut to lose calls for real. Commits are made to fail with a
trigger in the orders database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from emporium.kit.db import Database
from emporium.orders import domain
from emporium.orders.repository import PostgresOrderRepository
from emporium.orders.topics import Topics
from emporium.testing.pytest_plugin import eventually

from .test_service import counts, place_request

pytestmark = pytest.mark.integration

REFUSE_COMMIT_AFTER_A_SECOND = """
CREATE FUNCTION refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(1); RAISE EXCEPTION 'outbox refused by the test'; END $$;
CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION refuse_outbox();
"""


async def pending(db: Database) -> list[tuple[str, str]]:
    rows = await db.fetch("SELECT order_id::text, state FROM pending_reservations")
    return [(row["order_id"], row["state"]) for row in rows]


async def test_a_failed_commit_whose_release_is_lost_gets_its_stock_back(
    database: str,
    db: Database,
    catalog_server: Any,
    topics: Topics,
    start_orders: Callable[..., Any],
    make_env: Any,
    tcp_proxy: Any,
) -> None:
    """The commit fails after the reservation, and the catalog is unreachable for the release."""
    link = await tcp_proxy("127.0.0.1", catalog_server.port)
    env = make_env(
        database,
        f"127.0.0.1:{link.port}",
        RESERVATION_HOLD_SECONDS="1",
        RESERVATION_SWEEP_INTERVAL_SECONDS="0.2",
    )
    orders = await start_orders(env, topics)
    await db.execute(REFUSE_COMMIT_AFTER_A_SECOND)
    stock_before = dict(catalog_server.servicer.stock)

    # The reservation is answered; a moment later the link to the catalog goes
    # down, before the commit fails and orders tries to give the stock back.
    def cut_soon() -> None:
        asyncio.get_running_loop().call_later(0.3, lambda: asyncio.ensure_future(link.cut()))

    async def after_reserve() -> None:
        cut_soon()

    catalog_server.servicer.after_reserve = after_reserve
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await orders.stub.PlaceOrder(place_request(), timeout=10)
    assert error.value.code() == grpc.StatusCode.INTERNAL  # the trigger's error
    catalog_server.servicer.after_reserve = None
    [order_id] = catalog_server.servicer.reservations
    assert await counts(db) == {"orders": 0, "lines": 0, "keys": 0, "outbox": 0}
    # The release was lost: the stock is still held, and the log knows it.
    assert catalog_server.servicer.stock != stock_before
    assert [entry[0] for entry in await pending(db)] == [order_id]

    await link.start()

    async def released() -> bool:
        return catalog_server.servicer.reservations == {} and await pending(db) == []

    took = await eventually(released, within=15, what="stock released by the sweeper")
    print(f"stock of the failed checkout released {took:.1f}s after the catalog was back")
    assert catalog_server.servicer.stock == stock_before
    assert order_id in catalog_server.servicer.released


async def test_a_checkout_that_died_after_reserving_gets_its_stock_back(
    database: str,
    db: Database,
    catalog_server: Any,
    topics: Topics,
    start_orders: Callable[..., Any],
    make_env: Any,
) -> None:
    """What a process killed between reservation and commit leaves: a pending row, held stock."""
    order_id = "0d7a2a5e-7d0a-4c4b-9b8e-2f8f3c1b6a11"
    await db.execute("INSERT INTO pending_reservations (order_id) VALUES ($1)", order_id)
    catalog_server.servicer.stock["sku-1"] -= 3
    catalog_server.servicer.reservations[order_id] = [("sku-1", 3)]

    env = make_env(
        database,
        catalog_server.addr,
        RESERVATION_HOLD_SECONDS="0.5",
        RESERVATION_SWEEP_INTERVAL_SECONDS="0.2",
    )
    await start_orders(env, topics)

    async def released() -> bool:
        return catalog_server.servicer.reservations == {} and await pending(db) == []

    await eventually(released, within=10, what="stock released by the sweeper")
    assert catalog_server.servicer.stock["sku-1"] == 1000


async def test_placed_orders_keep_their_stock(
    database: str,
    db: Database,
    catalog_server: Any,
    topics: Topics,
    start_orders: Callable[..., Any],
    make_env: Any,
) -> None:
    env = make_env(
        database,
        catalog_server.addr,
        # Long enough for a placement on a loaded machine; the sweeps after it
        # then find these reservations older than the hold.
        RESERVATION_HOLD_SECONDS="2",
        RESERVATION_SWEEP_INTERVAL_SECONDS="0.1",
    )
    orders = await start_orders(env, topics)
    placed = [
        (await orders.stub.PlaceOrder(place_request(), timeout=5)).order.order_id for _ in range(5)
    ]
    assert await pending(db) == []
    await asyncio.sleep(3)  # past the hold, several sweeps
    assert sorted(catalog_server.servicer.reservations) == sorted(placed)
    assert catalog_server.servicer.released == []


# --- the fence between commit and sweeper, on the real SQL ---------------------------


def _order(order_id: str) -> domain.Order:
    now = domain.utc_now()
    line = domain.OrderLine("sku-1", 1, domain.Money("EUR", 100))
    return domain.Order(
        order_id,
        "alice",
        (line,),
        domain.Money("EUR", 100),
        domain.OrderStatus.PENDING,
        "",
        now,
        now,
    )


async def test_a_claimed_reservation_cannot_commit(db: Database) -> None:
    repository = PostgresOrderRepository(db, Topics())
    order = _order(domain.new_id())
    await repository.hold_reservation(order.order_id, "key-claimed-1")
    assert await repository.claim_stale_reservations(0, 10) == [order.order_id]
    event = domain.OrderPlacedEvent(domain.new_id(), order)
    with pytest.raises(domain.ReservationReleased):
        await repository.add_placed_order(order, "key-claimed-1", "f", event)
    assert await counts(db) == {"orders": 0, "lines": 0, "keys": 0, "outbox": 0}


async def test_the_sweeper_skips_a_reservation_whose_order_is_committing(
    db: Database,
) -> None:
    repository = PostgresOrderRepository(db, Topics())
    order = _order(domain.new_id())
    await repository.hold_reservation(order.order_id, "key-commit-1")
    # Hold the commit open for a second after its reservation was settled.
    await db.execute(
        """
        CREATE FUNCTION slow_order() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(1); RETURN NEW; END $$;
        CREATE TRIGGER slow_order BEFORE INSERT ON orders
            FOR EACH ROW EXECUTE FUNCTION slow_order();
        """
    )
    event = domain.OrderPlacedEvent(domain.new_id(), order)
    commit = asyncio.create_task(repository.add_placed_order(order, "key-commit-1", "f", event))
    await asyncio.sleep(0.3)
    assert not commit.done()
    assert await repository.claim_stale_reservations(0, 10) == []
    await commit
    assert await pending(db) == []
    assert (await counts(db))["orders"] == 1


async def test_the_hold_and_the_idempotency_lookup_are_one_statement(db: Database) -> None:
    repository = PostgresOrderRepository(db, Topics())
    order = _order(domain.new_id())
    # A new key: nothing placed, the hold is written.
    assert await repository.hold_reservation(order.order_id, "key-hold-1") is None
    assert [order_id for order_id, _ in await pending(db)] == [order.order_id]
    event = domain.OrderPlacedEvent(domain.new_id(), order)
    await repository.add_placed_order(order, "key-hold-1", "fingerprint-1", event)
    assert await pending(db) == []

    # The same key again (a retry): the placed order comes back and nothing is held.
    retry_id = domain.new_id()
    placed = await repository.hold_reservation(retry_id, "key-hold-1")
    assert placed is not None
    found, fingerprint = placed
    assert (found.order_id, found.lines, found.total) == (order.order_id, order.lines, order.total)
    assert fingerprint == "fingerprint-1"
    assert await pending(db) == []
