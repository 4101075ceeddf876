"""Checkout rules, validation and fraud decisions, with fakes for the edges."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from emporium.kit.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from emporium.orders import domain
from emporium.orders.domain import OrderStatus, PlaceOrder, RequestedItem

pytestmark = pytest.mark.unit


def request(key: str = "checkout-0001", customer: str = "alice", **items: int) -> PlaceOrder:
    items = items or {"sku-1": 2, "sku-2": 1}
    return PlaceOrder(
        key, customer, tuple(RequestedItem(p.replace("_", "-"), q) for p, q in items.items())
    )


def violations(error: pytest.ExceptionInfo[InvalidArgument]) -> dict[str, str]:
    return {v.field: v.description for v in error.value.violations}


# --- validation -------------------------------------------------------------------


def test_a_valid_request_passes() -> None:
    domain.validate_place_order(request())


@pytest.mark.parametrize(
    "key", ["short", "x" * 129, "tab\there-123", "nul\x00here-123", "ключ-12345", ""]
)
def test_bad_idempotency_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        domain.validate_place_order(request(key=key))
    assert set(violations(error)) == {"idempotency_key"}


@pytest.mark.parametrize(
    "key",
    ["abcdefgh", "A-b_c:d.e-0123456789", "k" * 128, "has space here", "key/with/slash+b64="],
)
def test_good_idempotency_keys_pass(key: str) -> None:
    domain.validate_place_order(request(key=key))


def test_customer_id_is_required_and_bounded() -> None:
    with pytest.raises(InvalidArgument) as error:
        domain.validate_place_order(request(customer=""))
    assert violations(error) == {"customer_id": "is required"}
    with pytest.raises(InvalidArgument) as error:
        domain.validate_place_order(request(customer="c" * 65))
    assert set(violations(error)) == {"customer_id"}
    domain.validate_place_order(request(customer="c" * 64))


def test_items_are_required_and_at_most_fifty() -> None:
    with pytest.raises(InvalidArgument) as error:
        domain.validate_place_order(PlaceOrder("checkout-0001", "alice", ()))
    assert set(violations(error)) == {"items"}
    many = tuple(RequestedItem(f"sku-{i}", 1) for i in range(51))
    with pytest.raises(InvalidArgument) as error:
        domain.validate_place_order(PlaceOrder("checkout-0001", "alice", many))
    assert set(violations(error)) == {"items"}
    domain.validate_place_order(PlaceOrder("checkout-0001", "alice", many[:50]))


def test_item_violations_name_the_item() -> None:
    items = (
        RequestedItem("sku-1", 1),
        RequestedItem("sku-2", 0),
        RequestedItem("", 1),
        RequestedItem("sku-1", 101),
    )
    with pytest.raises(InvalidArgument) as error:
        domain.validate_place_order(PlaceOrder("checkout-0001", "alice", items))
    assert violations(error) == {
        "items[1].quantity": "must be between 1 and 100",
        "items[2].product_id": "is required",
        "items[3].product_id": "duplicate product; use one item with a quantity",
        "items[3].quantity": "must be between 1 and 100",
    }


def test_every_violation_is_reported_at_once() -> None:
    with pytest.raises(InvalidArgument) as error:
        domain.validate_place_order(PlaceOrder("bad", "", ()))
    assert set(violations(error)) == {"idempotency_key", "customer_id", "items"}


def test_fingerprint_ignores_item_order_but_not_content() -> None:
    a = PlaceOrder("k" * 8, "alice", (RequestedItem("a", 1), RequestedItem("b", 2)))
    b = PlaceOrder("k" * 8, "alice", (RequestedItem("b", 2), RequestedItem("a", 1)))
    c = PlaceOrder("k" * 8, "alice", (RequestedItem("a", 1), RequestedItem("b", 3)))
    d = PlaceOrder("k" * 8, "bob", (RequestedItem("a", 1), RequestedItem("b", 2)))
    assert a.fingerprint() == b.fingerprint()
    assert len({a.fingerprint(), c.fingerprint(), d.fingerprint()}) == 3


def test_order_ids_must_be_uuids() -> None:
    with pytest.raises(InvalidArgument) as error:
        domain.parse_order_id("not-a-uuid")
    assert violations(error) == {"order_id": "must be a UUID"}
    value = uuid.uuid4()
    assert domain.parse_order_id(str(value).upper()) == str(value)


# --- pricing ----------------------------------------------------------------------


def test_total_is_computed_from_catalog_prices() -> None:
    lines = domain.price_lines(
        [RequestedItem("a", 3), RequestedItem("b", 2)],
        {"a": domain.Money("EUR", 1999), "b": domain.Money("EUR", 1)},
    )
    assert domain.order_total(lines) == domain.Money("EUR", 3 * 1999 + 2)


def test_mixed_currencies_are_refused() -> None:
    lines = domain.price_lines(
        [RequestedItem("a", 1), RequestedItem("b", 1)],
        {"a": domain.Money("EUR", 100), "b": domain.Money("USD", 100)},
    )
    with pytest.raises(FailedPrecondition, match="different currencies"):
        domain.order_total(lines)


def test_unknown_products_name_their_cart_lines() -> None:
    with pytest.raises(InvalidArgument) as error:
        domain.price_lines(
            [RequestedItem("a", 1), RequestedItem("nope", 1)], {"a": domain.Money("EUR", 100)}
        )
    assert [(v.field, v.description) for v in error.value.violations] == [
        ("items[1].product_id", "unknown product")
    ]


# --- place_order ------------------------------------------------------------------


async def test_place_order_writes_order_and_event_and_reserves_stock(
    checkout: domain.Checkout, repository: Any, catalog: Any
) -> None:
    result = await checkout.place_order(request())
    assert result.created
    order = result.order
    assert order.status is OrderStatus.PENDING
    assert order.total == domain.Money("EUR", 2 * 1999 + 500)
    assert [(line.product_id, line.quantity) for line in order.lines] == [
        ("sku-1", 2),
        ("sku-2", 1),
    ]
    assert repository.orders == {order.order_id: order}
    assert [event.order for event in repository.outbox] == [order]
    assert repository.outbox[0].event_id != order.order_id
    assert catalog.stock["sku-1"] == 48
    assert order.order_id in catalog.reservations
    uuid.UUID(order.order_id)


async def test_same_key_same_request_returns_the_same_order(
    checkout: domain.Checkout, repository: Any, catalog: Any
) -> None:
    first = await checkout.place_order(request())
    second = await checkout.place_order(request())
    assert second.created is False
    assert second.order == first.order
    assert len(repository.orders) == 1
    assert len(repository.outbox) == 1
    assert list(catalog.reservations) == [first.order.order_id]  # the retry reserved nothing
    assert catalog.price_calls == 0  # the reservation answered with the prices


async def test_same_key_different_request_is_already_exists(checkout: domain.Checkout) -> None:
    await checkout.place_order(request())
    with pytest.raises(AlreadyExists, match="idempotency key reused with a different request"):
        await checkout.place_order(request(sku_1=3))
    with pytest.raises(AlreadyExists):
        await checkout.place_order(request(customer="mallory"))


async def test_concurrent_requests_with_one_key_make_one_order(
    repository: Any, catalog: Any
) -> None:
    repository.write_delay = 0.01
    checkout = domain.Checkout(repository=repository, catalog=catalog)
    results = await asyncio.gather(*(checkout.place_order(request()) for _ in range(10)))
    assert len({r.order.order_id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert len(repository.orders) == 1
    # The losers gave their reservations back: only the winner holds stock.
    assert list(catalog.reservations) == [results[0].order.order_id]
    assert catalog.stock["sku-1"] == 48
    assert len(catalog.released) == 9


async def test_catalog_down_writes_nothing(
    checkout: domain.Checkout, repository: Any, catalog: Any
) -> None:
    catalog.down = True
    with pytest.raises(Unavailable):
        await checkout.place_order(request())
    assert repository.orders == {}
    assert repository.outbox == []
    # The catalog may have reserved before it went away: the release is left
    # to the sweeper, claimed.
    assert list(repository.pending.values()) == ["releasing"]


async def test_a_reservation_that_never_left_leaves_nothing_to_release(
    checkout: domain.Checkout, repository: Any, catalog: Any
) -> None:
    catalog.breaker_open = True
    with pytest.raises(Unavailable, match="circuit breaker open"):
        await checkout.place_order(request())
    assert repository.pending == {}  # dropped, not left for the sweeper
    assert catalog.released == []
    assert repository.orders == {}


async def test_out_of_stock_writes_nothing(
    checkout: domain.Checkout, repository: Any, catalog: Any
) -> None:
    catalog.stock["sku-2"] = 0
    with pytest.raises(FailedPrecondition, match="out of stock"):
        await checkout.place_order(request())
    assert repository.orders == {}
    assert catalog.stock["sku-1"] == 50


async def test_unknown_product_is_refused_before_any_reservation(
    checkout: domain.Checkout, repository: Any, catalog: Any
) -> None:
    with pytest.raises(InvalidArgument):
        await checkout.place_order(request(sku_1=1, sku_404=1))
    assert catalog.reservations == {}
    assert repository.pending == {}


async def test_mixed_currencies_keep_nothing_reserved(
    checkout: domain.Checkout, repository: Any, catalog: Any
) -> None:
    with pytest.raises(FailedPrecondition):
        await checkout.place_order(request(sku_1=1, sku_usd=1))
    # Reserved (the prices come with the reservation), then released at once.
    assert len(catalog.released) == 1
    assert catalog.reservations == {}
    assert catalog.stock["sku-1"] == 50
    assert repository.pending == {}


async def test_a_lost_reservation_answer_releases_the_order_id(
    checkout: domain.Checkout, repository: Any, catalog: Any
) -> None:
    catalog.lose_reserve_answer = True
    with pytest.raises(DeadlineExceeded):
        await checkout.place_order(request())
    assert catalog.reservations == {}
    assert len(catalog.released) == 1
    assert catalog.stock["sku-1"] == 50
    assert repository.orders == {}


async def test_a_business_refusal_releases_nothing(checkout: domain.Checkout, catalog: Any) -> None:
    catalog.stock["sku-1"] = 0
    with pytest.raises(FailedPrecondition):
        await checkout.place_order(request())
    assert catalog.released == []


async def test_database_down_at_commit_releases_the_stock(repository: Any, catalog: Any) -> None:
    class FailingWrite(type(repository)):  # type: ignore[misc]
        async def add_placed_order(self, *args: Any) -> None:
            raise Unavailable("orders database unavailable", dependency="postgres")

    checkout = domain.Checkout(repository=FailingWrite(), catalog=catalog)
    with pytest.raises(Unavailable):
        await checkout.place_order(request())
    assert catalog.reservations == {}
    assert catalog.stock["sku-1"] == 50
    assert len(catalog.released) == 1


async def test_a_failed_release_is_reported_not_raised(repository: Any, catalog: Any) -> None:
    class FailingWrite(type(repository)):  # type: ignore[misc]
        async def add_placed_order(self, *args: Any) -> None:
            raise Unavailable("orders database unavailable", dependency="postgres")

    failures: list[str] = []
    catalog.release_fails = True
    checkout = domain.Checkout(
        repository=FailingWrite(),
        catalog=catalog,
        on_release_failure=lambda order_id, error: failures.append(order_id),
    )
    with pytest.raises(Unavailable, match="database"):
        await checkout.place_order(request())
    assert failures == list(catalog.reservations)
    # Left for the sweeper (test_a_lost_release_is_made_by_the_sweeper).
    assert list(checkout.repository.pending) == failures  # type: ignore[attr-defined]


async def test_a_lost_release_is_made_by_the_sweeper(repository: Any, catalog: Any) -> None:
    """The commit fails after the reservation and the compensating release fails too."""

    class FailingWrite(type(repository)):  # type: ignore[misc]
        async def add_placed_order(self, *args: Any) -> None:
            raise Unavailable("orders database unavailable", dependency="postgres")

    failing = FailingWrite()
    catalog.release_fails = True
    checkout = domain.Checkout(repository=failing, catalog=catalog)
    with pytest.raises(Unavailable):
        await checkout.place_order(request())
    [order_id] = catalog.reservations
    assert failing.pending == {order_id: "releasing"}  # claimed: the order did not commit
    assert catalog.stock["sku-1"] == 48

    # The catalog is still refusing: the claimed reservation stays for the next round.
    assert await domain.release_stale_reservations(failing, catalog, older_than_seconds=30) == 0
    assert failing.pending == {order_id: "releasing"}
    catalog.release_fails = False
    assert await domain.release_stale_reservations(failing, catalog, older_than_seconds=30) == 1
    assert catalog.reservations == {}
    assert catalog.stock["sku-1"] == 50
    assert failing.pending == {}


async def test_a_commit_whose_acknowledgement_was_lost_keeps_its_stock(
    repository: Any, catalog: Any
) -> None:
    """The transaction committed but the answer never came back: the order exists."""

    class LostAcknowledgement(type(repository)):  # type: ignore[misc]
        async def add_placed_order(self, *args: Any) -> None:
            await super().add_placed_order(*args)
            raise Unavailable("orders database unavailable", dependency="postgres")

    lost = LostAcknowledgement()
    checkout = domain.Checkout(repository=lost, catalog=catalog)
    with pytest.raises(Unavailable):
        await checkout.place_order(request())
    [order_id] = lost.orders
    assert list(catalog.reservations) == [order_id]
    assert catalog.released == []
    assert lost.pending == {}
    assert await domain.release_stale_reservations(lost, catalog, 0) == 0
    # The client's retry with the same key finds the order, which still holds its stock.
    again = await domain.Checkout(repository=lost, catalog=catalog)._existing(
        "checkout-0001", request().fingerprint()
    )
    assert again is not None
    assert again.order.order_id == order_id


async def test_the_sweeper_never_releases_a_placed_order(
    checkout: domain.Checkout, repository: Any, catalog: Any
) -> None:
    placed = await checkout.place_order(request())
    assert repository.pending == {}
    assert await domain.release_stale_reservations(repository, catalog, 0) == 0
    assert list(catalog.reservations) == [placed.order.order_id]


async def test_a_reservation_claimed_by_the_sweeper_cannot_commit(
    repository: Any, catalog: Any
) -> None:
    """A checkout stalled past the hold: the sweeper wins, the order is refused, stock returns."""
    repository.write_delay = 0.05
    checkout = domain.Checkout(repository=repository, catalog=catalog)
    stalled = asyncio.create_task(checkout.place_order(request()))
    await repository.write_started.wait()
    assert await domain.release_stale_reservations(repository, catalog, 0) == 1
    with pytest.raises(domain.ReservationReleased) as refused:
        await stalled
    assert isinstance(refused.value, Unavailable)  # retryable for the caller
    assert repository.orders == {}
    assert catalog.reservations == {}
    assert catalog.stock["sku-1"] == 50
    assert repository.pending == {}
    # The same key can be retried.
    repository.write_delay = 0
    assert (await checkout.place_order(request())).created


async def test_a_refused_reservation_leaves_nothing_pending(
    checkout: domain.Checkout, repository: Any, catalog: Any
) -> None:
    catalog.stock["sku-1"] = 0
    with pytest.raises(FailedPrecondition):
        await checkout.place_order(request())
    assert repository.pending == {}


async def test_no_reservation_is_made_when_it_cannot_be_recorded(
    repository: Any, catalog: Any
) -> None:
    class UnrecordedHold(type(repository)):  # type: ignore[misc]
        async def hold_reservation(self, order_id: str, idempotency_key: str) -> None:
            raise Unavailable("orders database unavailable", dependency="postgres")

    checkout = domain.Checkout(repository=UnrecordedHold(), catalog=catalog)
    with pytest.raises(Unavailable):
        await checkout.place_order(request())
    assert catalog.reservations == {}


async def test_a_cancelled_caller_does_not_abandon_the_commit(
    repository: Any, catalog: Any
) -> None:
    repository.write_delay = 0.05
    checkout = domain.Checkout(repository=repository, catalog=catalog)
    task = asyncio.create_task(checkout.place_order(request()))
    await repository.write_started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The transaction finished: the order exists and keeps its stock, so a
    # retry with the same key finds it instead of creating a second one.
    assert len(repository.orders) == 1
    assert catalog.released == []
    again = await checkout.place_order(request())
    assert again.created is False


async def test_get_order(checkout: domain.Checkout) -> None:
    placed = await checkout.place_order(request())
    assert await checkout.get_order(placed.order.order_id) == placed.order
    with pytest.raises(NotFound):
        await checkout.get_order(str(uuid.uuid4()))
    with pytest.raises(InvalidArgument):
        await checkout.get_order("42")


# --- fraud decisions --------------------------------------------------------------


def pending_order(order_id: str | None = None) -> domain.Order:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    return domain.Order(
        order_id=order_id or str(uuid.uuid4()),
        customer_id="alice",
        lines=(domain.OrderLine("sku-1", 1, domain.Money("EUR", 100)),),
        total=domain.Money("EUR", 100),
        status=OrderStatus.PENDING,
        status_reason="",
        created_at=now,
        updated_at=now,
    )


@pytest.mark.parametrize(
    ("verdict", "status", "reason"),
    [
        (domain.FraudVerdict.APPROVE, OrderStatus.APPROVED, ""),
        (domain.FraudVerdict.REJECT, OrderStatus.REJECTED, "total above limit"),
    ],
)
async def test_a_decision_moves_a_pending_order(
    status_store: Any, verdict: domain.FraudVerdict, status: OrderStatus, reason: str
) -> None:
    order = pending_order()
    status_store.orders[order.order_id] = order
    decision = domain.FraudDecision(order.order_id, verdict, 42, "total above limit")
    event = await domain.apply_fraud_decision(status_store, decision)
    assert event is not None
    stored = status_store.orders[order.order_id]
    assert (stored.status, stored.status_reason) == (status, reason)
    assert stored.updated_at > order.updated_at
    assert (event.previous_status, event.status, event.reason) == (
        OrderStatus.PENDING,
        status,
        reason,
    )
    assert status_store.outbox == [event]


async def test_a_second_decision_is_ignored(status_store: Any) -> None:
    order = pending_order()
    status_store.orders[order.order_id] = order
    approve = domain.FraudDecision(order.order_id, domain.FraudVerdict.APPROVE, 1, "")
    reject = domain.FraudDecision(order.order_id, domain.FraudVerdict.REJECT, 99, "late")
    assert await domain.apply_fraud_decision(status_store, approve) is not None
    assert await domain.apply_fraud_decision(status_store, reject) is None
    assert await domain.apply_fraud_decision(status_store, approve) is None
    assert status_store.orders[order.order_id].status is OrderStatus.APPROVED
    assert len(status_store.outbox) == 1


async def test_a_decision_for_an_unknown_order_is_ignored(status_store: Any) -> None:
    decision = domain.FraudDecision(str(uuid.uuid4()), domain.FraudVerdict.APPROVE, 1, "")
    assert await domain.apply_fraud_decision(status_store, decision) is None
    assert status_store.outbox == []


async def test_a_rejection_without_reason_gets_one(status_store: Any) -> None:
    order = pending_order()
    status_store.orders[order.order_id] = order
    decision = domain.FraudDecision(order.order_id, domain.FraudVerdict.REJECT, 80, "")
    event = await domain.apply_fraud_decision(status_store, decision)
    assert event is not None
    assert event.reason == "rejected by fraud checks"


async def test_decisions_applied_together_give_each_the_effect_it_would_have_alone(
    status_store: Any,
) -> None:
    first, second = pending_order(), pending_order()
    status_store.orders.update({first.order_id: first, second.order_id: second})
    approve = domain.FraudDecision(first.order_id, domain.FraudVerdict.APPROVE, 1, "")
    late = domain.FraudDecision(first.order_id, domain.FraudVerdict.REJECT, 99, "late")
    reject = domain.FraudDecision(second.order_id, domain.FraudVerdict.REJECT, 90, "too much")
    unknown = domain.FraudDecision(str(uuid.uuid4()), domain.FraudVerdict.APPROVE, 1, "")

    made = await domain.apply_fraud_decisions(status_store, [approve, late, unknown, reject])

    # The first decision of an order wins, in order; the unknown order is ignored.
    assert [(e.order_id, e.status) for e in made] == [
        (first.order_id, OrderStatus.APPROVED),
        (second.order_id, OrderStatus.REJECTED),
    ]
    assert status_store.outbox == made
    assert status_store.orders[first.order_id].status is OrderStatus.APPROVED
    assert status_store.orders[second.order_id].status_reason == "too much"
    # One read of the orders and one write of the changes for the four decisions.
    assert (status_store.reads, status_store.writes) == (1, 1)
