"""Checkout and order status: the business rules, with no gRPC or SQL in sight.

The flow of :meth:`Checkout.place_order` is what makes "an acknowledged order
is never lost" and "no reserved stock leaks" hold:

1. validate the request and allocate the order id; in one statement, a known
   idempotency key returns its order at once, or else a *pending
   reservation* for the new id is recorded in the orders database (committed);
2. THEN reserve stock under it at the catalog, which answers with the
   products' current prices (the catalog keys reservations by order id, so a
   retried reservation is harmless; when the answer is lost the reservation
   is released, which is always safe); lines that cannot be priced (an
   unknown product, mixed currencies) release it again;
3. write the order, its items, the idempotency key and the ``OrderPlaced``
   outbox event in ONE transaction that also settles the pending reservation.
   Only after that commit is the order acknowledged; the relay publishes the
   event whenever Kafka is reachable.

If step 3 fails the reserved stock is released at once and the pending
reservation forgotten, and the caller gets an error: nothing was
acknowledged, so nothing is lost, and the same idempotency key can be retried.
When that release cannot be made (the catalog is down or shedding load, the
process dies), the pending reservation stays, and
:func:`release_stale_reservations` (run by the orders service's sweeper)
releases it once it is older than the hold. The repository makes the commit
and the sweeper exclude each other: an order whose reservation the sweeper
claimed cannot commit (:class:`ReservationReleased`), and the sweeper never
claims a reservation whose order is committing.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from emporium.contracts import limits
from emporium.kit.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unavailable,
)

log = logging.getLogger(__name__)

#: Totals are int64 on the wire.
MAX_AMOUNT_MINOR = limits.AMOUNT_MINOR.maximum


class OrderStatus(enum.StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class Money:
    currency_code: str
    amount_minor: int


@dataclass(frozen=True)
class RequestedItem:
    product_id: str
    quantity: int


@dataclass(frozen=True)
class PlaceOrder:
    """A checkout request as the customer sent it."""

    idempotency_key: str
    customer_id: str
    items: tuple[RequestedItem, ...]

    def fingerprint(self) -> str:
        """What "the same request" means for an idempotency key.

        The customer and the set of (product, quantity) pairs; the order of
        the items does not matter. Stored with the key so that a reuse of the
        key with a different request is refused instead of silently answered
        with someone else's order.
        """
        canonical = {
            "customer_id": self.customer_id,
            "items": sorted([item.product_id, item.quantity] for item in self.items),
        }
        encoded = json.dumps(canonical, separators=(",", ":"), sort_keys=True)
        return hashlib.sha256(encoded.encode()).hexdigest()


@dataclass(frozen=True)
class OrderLine:
    product_id: str
    quantity: int
    unit_price: Money


@dataclass(frozen=True)
class Order:
    order_id: str
    customer_id: str
    lines: tuple[OrderLine, ...]
    total: Money
    status: OrderStatus
    status_reason: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class OrderPlacedEvent:
    """Goes to ``orders.order-placed.v1`` through the outbox."""

    event_id: str
    order: Order


@dataclass(frozen=True)
class OrderStatusChangedEvent:
    """Goes to ``orders.order-status-changed.v1`` through the outbox."""

    event_id: str
    order_id: str
    previous_status: OrderStatus
    status: OrderStatus
    reason: str
    occurred_at: datetime


@dataclass(frozen=True)
class PlaceOrderResult:
    order: Order
    created: bool


class FraudVerdict(enum.Enum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"


@dataclass(frozen=True)
class FraudDecision:
    """A decision received from fraud (``fraud.decision-made.v1``)."""

    order_id: str
    verdict: FraudVerdict
    risk_score: int
    reason: str


class IdempotencyKeyTaken(Exception):
    """The key was committed by another request while this one was running."""


class ReservationReleased(Unavailable):
    """The sweeper released this checkout's stock before its order could commit.

    Only a checkout stalled for longer than the hold meets this; nothing was
    acknowledged and the caller may retry with the same idempotency key.
    """

    def __init__(self, order_id: str) -> None:
        super().__init__(
            f"the stock reservation of order {order_id} was released before the order "
            "could be stored; retry",
            dependency="postgres",
        )
        self.order_id = order_id


# --- the edges the domain talks to -------------------------------------------------


class Catalog(Protocol):
    """What checkout needs from the catalog service."""

    async def get_prices(self, product_ids: Sequence[str]) -> dict[str, Money]:
        """Prices of the products the catalog knows; unknown ones are left out."""
        ...

    async def reserve_stock(
        self, order_id: str, items: Sequence[RequestedItem]
    ) -> dict[str, Money]:
        """Reserves every item or nothing; returns the reserved products' current prices."""
        ...

    async def release_stock(self, order_id: str) -> None: ...


class OrderRepository(Protocol):
    async def get(self, order_id: str) -> Order | None: ...

    async def find_by_idempotency_key(self, key: str) -> tuple[Order, str] | None:
        """The order placed with ``key`` and the stored request fingerprint."""
        ...

    async def add_placed_order(
        self, order: Order, idempotency_key: str, fingerprint: str, event: OrderPlacedEvent
    ) -> None:
        """Order, items, key and outbox event in one transaction, settling its reservation.

        Raises :class:`IdempotencyKeyTaken` when the key already exists,
        :class:`ReservationReleased` when the order's pending reservation is no
        longer pending (the sweeper claimed it) and ``Unavailable`` when the
        database cannot be reached.
        """
        ...

    async def hold_reservation(
        self, order_id: str, idempotency_key: str
    ) -> tuple[Order, str] | None:
        """Records (committed) that stock is about to be reserved for ``order_id``.

        Unless an order was placed with ``idempotency_key`` already: then
        nothing is held, and that order comes back with the stored request
        fingerprint (as :meth:`find_by_idempotency_key`).
        """
        ...

    async def drop_reservation(self, order_id: str) -> None:
        """Forgets the pending reservation of ``order_id`` (released, or never made)."""
        ...

    async def claim_reservation(self, order_id: str) -> bool:
        """Claims the pending reservation of a checkout whose commit failed.

        True when it was still pending, which proves the order did not commit
        (the commit settles it): its stock may be released. False when the
        order committed after all (only the acknowledgement was lost) or the
        sweeper has it already.
        """
        ...

    async def claim_stale_reservations(self, older_than_seconds: float, limit: int) -> list[str]:
        """Claims pending reservations older than the hold, and ones whose release failed.

        A claimed reservation can no longer be settled by its order's commit.
        Reservations whose order is committing right now are never claimed.
        """
        ...


class OrderStatusStore(Protocol):
    """The order writes of one consumer transaction (see :func:`apply_fraud_decisions`)."""

    async def get_for_update(self, order_ids: Sequence[str]) -> dict[str, Order]:
        """The orders among ``order_ids`` that exist, their rows locked until the transaction ends.

        Locked in id order, so two transactions deciding the same orders
        wait for each other instead of deadlocking; the later one reads the
        rows as the earlier one left them.
        """
        ...

    async def save_statuses(self, changes: Sequence[tuple[Order, OrderStatusChangedEvent]]) -> None:
        """Stores the new statuses and enqueues their events, in the caller's transaction."""
        ...


Clock = Callable[[], datetime]
IdFactory = Callable[[], str]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


# --- validation -------------------------------------------------------------------


def validate_place_order(request: PlaceOrder) -> None:
    """Raises InvalidArgument naming every field that is wrong (the contracts' limits)."""
    violations: list[FieldViolation] = []

    def bad(name: str, why: str | None) -> None:
        if why is not None:
            violations.append(FieldViolation(name, why))

    bad("idempotency_key", limits.IDEMPOTENCY_KEY.problem(request.idempotency_key))
    # NUL cannot be stored in PostgreSQL text; the rule refuses control characters.
    bad("customer_id", limits.CUSTOMER_ID.problem(request.customer_id))
    if limits.ORDER_ITEMS.problem(len(request.items)):
        bad("items", f"must contain {limits.ORDER_ITEMS.rule()} items, got {len(request.items)}")
    seen: set[str] = set()
    for index, item in enumerate(request.items[: limits.ORDER_ITEMS.maximum]):
        problem = limits.PRODUCT_ID.problem(item.product_id)
        if problem is None and item.product_id in seen:
            problem = "duplicate product; use one item with a quantity"
        bad(f"items[{index}].product_id", problem)
        seen.add(item.product_id)
        bad(f"items[{index}].quantity", limits.QUANTITY.problem(item.quantity))
    if violations:
        raise InvalidArgument(violations)


def parse_order_id(value: str, field_name: str = "order_id") -> str:
    """The canonical form of an order id, or InvalidArgument."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument({field_name: "must be a UUID"}) from None


def price_lines(items: Sequence[RequestedItem], prices: dict[str, Money]) -> tuple[OrderLine, ...]:
    """Order lines at the catalog's current prices.

    A product the catalog does not know is a mistake in the request, named by
    its cart line (``items[2].product_id``), so the customer sees which one.
    """
    unknown = [
        FieldViolation(f"items[{index}].product_id", "unknown product")
        for index, item in enumerate(items)
        if item.product_id not in prices
    ]
    if unknown:
        raise InvalidArgument(unknown)
    return tuple(OrderLine(i.product_id, i.quantity, prices[i.product_id]) for i in items)


def order_total(lines: Sequence[OrderLine]) -> Money:
    """The sum of the lines; every line must be priced in the same currency."""
    currencies = {line.unit_price.currency_code for line in lines}
    if len(currencies) != 1:
        raise FailedPrecondition(
            f"items are priced in different currencies ({', '.join(sorted(currencies))}); "
            "one order takes one currency"
        )
    if any(line.unit_price.amount_minor < 0 for line in lines):
        raise FailedPrecondition("the catalog returned a negative price")
    amount = sum(line.unit_price.amount_minor * line.quantity for line in lines)
    if amount > MAX_AMOUNT_MINOR:
        raise FailedPrecondition("order total is too large")
    return Money(currencies.pop(), amount)


# --- use cases --------------------------------------------------------------------


@dataclass
class Checkout:
    repository: OrderRepository
    catalog: Catalog
    clock: Clock = utc_now
    new_id: IdFactory = new_id
    #: Called with (order_id, error) when releasing stock after a failure did not work.
    on_release_failure: Callable[[str, Exception], None] | None = field(default=None)

    async def place_order(self, request: PlaceOrder) -> PlaceOrderResult:
        validate_place_order(request)
        fingerprint = request.fingerprint()
        order_id = self.new_id()
        # One statement: the order a retry of this key already placed, or else
        # the hold, written before the catalog is asked, so whatever happens
        # next the sweeper can find and release what this checkout may reserve.
        placed = await self.repository.hold_reservation(order_id, request.idempotency_key)
        if placed is not None:
            return _replayed(placed, fingerprint)
        try:
            # The reservation answers with the prices: one catalog call per checkout.
            prices = await self._reserve(order_id, request.items)
        except NotFound:
            await self._name_unknown_lines(request.items)
            raise
        try:
            lines = price_lines(request.items, prices)
            total = order_total(lines)
        except ServiceError:
            await self._release(order_id)  # reserved, but it cannot be ordered
            raise
        now = self.clock()
        order = Order(
            order_id=order_id,
            customer_id=request.customer_id,
            lines=lines,
            total=total,
            status=OrderStatus.PENDING,
            status_reason="",
            created_at=now,
            updated_at=now,
        )
        event = OrderPlacedEvent(event_id=self.new_id(), order=order)
        try:
            await self._persist(order, request.idempotency_key, fingerprint, event)
        except IdempotencyKeyTaken:
            # A concurrent request with the same key won; its order is the answer
            # and the stock this request reserved must go back.
            await self._release(order_id)
            winner = await self._existing(request.idempotency_key, fingerprint)
            if winner is None:  # the winner's row must be visible once our insert conflicted
                raise
            return winner
        except Exception:
            # Not acknowledged: give the stock back and let the caller retry the key.
            await self._release(order_id)
            raise
        log.info(
            "order placed",
            extra={"order_id": order_id, "total_minor": total.amount_minor, "lines": len(lines)},
        )
        return PlaceOrderResult(order, created=True)

    async def _name_unknown_lines(self, items: Sequence[RequestedItem]) -> None:
        """After the catalog refused unknown products: which cart lines they are.

        Raises the ``InvalidArgument`` of :func:`price_lines` (``items[1].product_id``),
        so the customer sees which line to fix; returns when the catalog cannot
        say (its refusal then goes out as it came).
        """
        try:
            prices = await self.catalog.get_prices([item.product_id for item in items])
        except ServiceError:
            return
        price_lines(items, prices)

    async def _reserve(self, order_id: str, items: Sequence[RequestedItem]) -> dict[str, Money]:
        """Reserves stock and returns its prices; an answer that never came is "maybe reserved".

        After UNAVAILABLE, a timeout or the caller going away, the catalog may
        have reserved the stock and lost the answer. Releasing the order id is
        always safe (the catalog refuses a reservation arriving after its
        release), so nothing stays held for an order that will never exist.
        Business refusals (out of stock, unknown product) reserve nothing, and
        neither does a call that never left (the catalog's breaker open).
        """
        try:
            return await self.catalog.reserve_stock(order_id, items)
        except ServiceError as error:
            if error.business or not error.sent:
                await self._forget(order_id)
            else:
                await self._release(order_id)
            raise
        except asyncio.CancelledError:
            await self._release(order_id)
            raise

    async def _persist(
        self, order: Order, key: str, fingerprint: str, event: OrderPlacedEvent
    ) -> None:
        """The commit that acknowledges the order, never abandoned half-way.

        If the caller goes away (deadline, disconnect) while the transaction is
        running, the transaction still finishes, so whether the order exists is
        known before the stock is released or kept.
        """
        write = asyncio.ensure_future(
            self.repository.add_placed_order(order, key, fingerprint, event)
        )
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            try:
                await write
            except Exception:
                await self._release(order.order_id)
            raise

    async def get_order(self, order_id: str) -> Order:
        order = await self.repository.get(parse_order_id(order_id))
        if order is None:
            raise NotFound(f"order {order_id} not found")
        return order

    async def _existing(self, key: str, fingerprint: str) -> PlaceOrderResult | None:
        found = await self.repository.find_by_idempotency_key(key)
        return None if found is None else _replayed(found, fingerprint)

    async def _release(self, order_id: str) -> None:
        """Gives the stock of a checkout that failed back now, if it provably did not commit.

        The pending reservation is claimed first: that succeeds only if the
        order's transaction did not commit (a commit whose acknowledgement was
        lost did, and keeps its stock). When the claim cannot be made (the
        database is away) or the release fails, the sweeper releases the stock
        later; the pending reservation is still there exactly when the order
        is not.
        """
        try:
            claimed = await self.repository.claim_reservation(order_id)
        except (ServiceError, OSError, TimeoutError) as error:
            log.warning(
                "stock of a checkout that failed is left for the reservation sweeper",
                extra={"order_id": order_id, "error": str(error)},
            )
            return
        if not claimed:
            log.warning(
                "checkout failed but its reservation is no longer pending; stock kept",
                extra={"order_id": order_id},
            )
            return
        try:
            await self.catalog.release_stock(order_id)
        except (ServiceError, OSError, TimeoutError) as error:
            log.warning(
                "stock of an order that was not placed could not be released now;"
                " the reservation sweeper releases it",
                extra={"order_id": order_id, "error": str(error)},
            )
            if self.on_release_failure is not None:
                self.on_release_failure(order_id, error)
            return
        await self._forget(order_id)

    async def _forget(self, order_id: str) -> None:
        """Drops the pending reservation; if that fails the sweeper releases it again (harmless)."""
        try:
            await self.repository.drop_reservation(order_id)
        except (ServiceError, OSError, TimeoutError) as error:
            log.info(
                "pending reservation left for the sweeper",
                extra={"order_id": order_id, "error": str(error)},
            )


def _replayed(placed: tuple[Order, str], fingerprint: str) -> PlaceOrderResult:
    """The answer to a retry: the order placed with its key, if the request is the same."""
    order, stored_fingerprint = placed
    if stored_fingerprint != fingerprint:
        raise AlreadyExists("idempotency key reused with a different request")
    return PlaceOrderResult(order, created=False)


async def release_stale_reservations(
    repository: OrderRepository,
    catalog: Catalog,
    older_than_seconds: float,
    limit: int = 100,
) -> int:
    """Releases the stock of checkouts that never committed; returns how many were released.

    Claims pending reservations older than the hold (their checkout has given
    up or died, and can no longer commit once claimed), releases each at the
    catalog (idempotent; it also refuses a reservation arriving after its
    release) and forgets it. A release that fails stays claimed and is tried
    again on the next round.
    """
    claimed = await repository.claim_stale_reservations(older_than_seconds, limit)
    released = 0
    for order_id in claimed:
        try:
            await catalog.release_stock(order_id)
        except (ServiceError, OSError, TimeoutError) as error:
            log.warning(
                "could not release the stock of an abandoned checkout; trying again later",
                extra={"order_id": order_id, "error": str(error)},
            )
            continue
        await repository.drop_reservation(order_id)
        released += 1
        log.info("stock of an abandoned checkout released", extra={"order_id": order_id})
    return released


def _no_context(order_id: str) -> AbstractContextManager[None]:
    return nullcontext()


async def apply_fraud_decisions(
    store: OrderStatusStore,
    decisions: Sequence[FraudDecision],
    clock: Clock = utc_now,
    new_id: IdFactory = new_id,
    context_of: Callable[[str], AbstractContextManager[None]] = _no_context,
) -> list[OrderStatusChangedEvent]:
    """PENDING -> APPROVED or REJECTED, in order; anything else is logged and ignored.

    Runs inside the consumer's transaction (the store reads and writes with
    its connection), so the statuses, their outbox events and the processed
    event ids commit together: one read of the orders and one write of the
    changes, however many decisions. Ignoring unknown or already decided
    orders keeps it idempotent even for a decision re-sent under a new event
    id, and a second decision for an order in the same call is ignored as
    it would be alone. ``context_of(order_id)`` is what each decision's log
    lines are written in (the consumer passes the trace of its event).
    Returns the status changes made now.
    """
    orders = await store.get_for_update(sorted({decision.order_id for decision in decisions}))
    changes: list[tuple[Order, OrderStatusChangedEvent]] = []
    for decision in decisions:
        with context_of(decision.order_id):
            change = _status_change(orders.get(decision.order_id), decision, clock(), new_id)
        if change is not None:
            orders[decision.order_id] = change[0]
            changes.append(change)
    await store.save_statuses(changes)
    return [event for _, event in changes]


async def apply_fraud_decision(
    store: OrderStatusStore,
    decision: FraudDecision,
    clock: Clock = utc_now,
    new_id: IdFactory = new_id,
) -> OrderStatusChangedEvent | None:
    """One decision (see :func:`apply_fraud_decisions`); its change, or None when ignored."""
    made = await apply_fraud_decisions(store, [decision], clock, new_id)
    return made[0] if made else None


def _status_change(
    order: Order | None, decision: FraudDecision, now: datetime, new_id: IdFactory
) -> tuple[Order, OrderStatusChangedEvent] | None:
    """The order as the decision leaves it, and the event saying so; None when ignored."""
    if order is None:
        log.warning(
            "fraud decision for an unknown order ignored", extra={"order_id": decision.order_id}
        )
        return None
    if order.status is not OrderStatus.PENDING:
        log.info(
            "fraud decision for an order already decided ignored",
            extra={"order_id": order.order_id, "status": order.status.value},
        )
        return None
    if decision.verdict is FraudVerdict.APPROVE:
        status, reason = OrderStatus.APPROVED, ""
    else:
        status, reason = OrderStatus.REJECTED, decision.reason or "rejected by fraud checks"
    updated = Order(
        order_id=order.order_id,
        customer_id=order.customer_id,
        lines=order.lines,
        total=order.total,
        status=status,
        status_reason=reason,
        created_at=order.created_at,
        updated_at=now,
    )
    event = OrderStatusChangedEvent(
        event_id=new_id(),
        order_id=order.order_id,
        previous_status=order.status,
        status=status,
        reason=reason,
        occurred_at=now,
    )
    log.info(
        "order status changed",
        extra={
            "order_id": order.order_id,
            "status": status.value,
            "risk_score": decision.risk_score,
        },
    )
    return updated, event
