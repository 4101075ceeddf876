"""The catalog's rules: products, prices and stock reservations.

Nothing here knows gRPC or SQL. Requests are validated into plain values, and
the reservation rules run against a :class:`StockLedger`, the repository's view
of one order's reservations inside one transaction with the products' rows
locked, so the same rules hold for the Postgres repository and the fakes of the
unit tests.

Stock model: a product has ``stock_on_hand`` units, of which ``stock_reserved``
are promised to orders; ``stock_available = on_hand - reserved`` is what can
still be reserved. A reservation belongs to one order and is either active
(``reserved``) or ``released``. An order whose stock was released cannot
reserve again: a retry that arrives after its own compensation must not take
stock that nobody will ever release.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from emporium.contracts import limits
from emporium.kit.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound

#: Reservations are keyed by the caller's order id (orders sends UUIDs); any
#: short token is accepted so that another caller's keys work too.
ORDER_ID_MAX_LENGTH = 128
ORDER_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

_PAGE_TOKEN_PREFIX = "after:"


@dataclass(frozen=True)
class Money:
    currency_code: str
    amount_minor: int


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    description: str
    category: str
    price: Money
    stock_available: int


@dataclass(frozen=True)
class ProductPage:
    products: list[Product]
    next_page_token: str


@dataclass(frozen=True)
class StockLine:
    product_id: str
    quantity: int


class ReservationState(Enum):
    NONE = "none"  # the order never reserved anything
    RESERVED = "reserved"
    RELEASED = "released"


@dataclass(frozen=True)
class OrderReservation:
    state: ReservationState
    lines: tuple[StockLine, ...] = ()
    #: The current prices of the reserved lines' products (RESERVED only).
    prices: Mapping[str, Money] = field(default_factory=dict)


@dataclass(frozen=True)
class ProductStock:
    on_hand: int
    reserved: int
    price: Money

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class StockLedger(Protocol):
    """One order's reservations inside one transaction (the order is locked)."""

    async def reservation(self) -> OrderReservation: ...

    async def lock_stock(self, product_ids: Sequence[str]) -> dict[str, ProductStock]:
        """Locks the rows of the existing products among ``product_ids``, in id order.

        Returns their stock and current price.
        """
        ...

    async def reserve(self, lines: Sequence[StockLine]) -> None: ...

    async def release(self) -> int:
        """Returns the order's active reservations to stock and marks the order released.

        Returns the number of units released (0 when there was nothing active).
        """
        ...


#: Opens one order's stock ledger (the order locked) in a transaction its caller owns.
LedgerOpener = Callable[[str], AbstractAsyncContextManager[StockLedger]]


@dataclass(frozen=True)
class OrderStatusChange:
    """An order's new status as the catalog sees it: rejected, or not."""

    order_id: str
    rejected: bool


class CatalogRepository(Protocol):
    async def get_product(self, product_id: str) -> Product | None: ...

    async def list_products(self, after_id: str | None, limit: int) -> list[Product]:
        """Products with an id greater than ``after_id``, ordered by id."""
        ...

    async def get_prices(self, product_ids: Sequence[str]) -> dict[str, Money]: ...

    def stock_ledger(self, order_id: str) -> AbstractAsyncContextManager[StockLedger]:
        """A transaction holding the order's lock; commits when the block succeeds."""
        ...


# ---------------------------------------------------------------------------
# Validation


def validate_product_id(value: str, field: str = "product_id") -> FieldViolation | None:
    problem = limits.PRODUCT_ID.problem(value)
    return FieldViolation(field, problem) if problem else None


def _order_id_violation(value: str) -> FieldViolation | None:
    if not value:
        return FieldViolation("order_id", "required")
    if not ORDER_ID_PATTERN.fullmatch(value):
        return FieldViolation(
            "order_id",
            f"must be 1-{ORDER_ID_MAX_LENGTH} characters of letters, digits, '.', '_', ':' or '-'",
        )
    return None


def require_product_id(value: str) -> str:
    violation = validate_product_id(value)
    if violation:
        raise InvalidArgument([violation])
    return value


def require_order_id(value: str) -> str:
    violation = _order_id_violation(value)
    if violation:
        raise InvalidArgument([violation])
    return value


def page_size_or_default(page_size: int) -> int:
    """0 (unset) is the default page size."""
    if page_size and (problem := limits.PAGE_SIZE.problem(page_size)):
        raise InvalidArgument({"page_size": f"{problem}, or 0 for the default"})
    return page_size or limits.DEFAULT_PAGE_SIZE


def encode_page_token(last_product_id: str) -> str:
    raw = (_PAGE_TOKEN_PREFIX + last_product_id).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> str | None:
    """The id after which the next page starts; None for the first page."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    last_id = raw.removeprefix(_PAGE_TOKEN_PREFIX)
    if not raw.startswith(_PAGE_TOKEN_PREFIX) or validate_product_id(last_id):
        raise InvalidArgument({"page_token": "not a token returned by ListProducts"})
    return last_id


def validate_price_ids(product_ids: Sequence[str]) -> list[str]:
    """Distinct ids in request order (asking twice for one price is harmless)."""
    if not product_ids:
        raise InvalidArgument({"product_ids": "at least one product id is required"})
    if len(product_ids) > limits.PRICE_BATCH.maximum:
        raise InvalidArgument({"product_ids": f"at most {limits.PRICE_BATCH.maximum} ids per call"})
    violations = [
        violation
        for index, product_id in enumerate(product_ids)
        if (violation := validate_product_id(product_id, f"product_ids[{index}]"))
    ]
    if violations:
        raise InvalidArgument(violations)
    return list(dict.fromkeys(product_ids))


def validate_reservation(order_id: str, lines: Sequence[StockLine]) -> list[StockLine]:
    violations: list[FieldViolation] = []
    if violation := _order_id_violation(order_id):
        violations.append(violation)
    if limits.ORDER_ITEMS.problem(len(lines)):
        violations.append(
            FieldViolation(
                "items", f"must contain {limits.ORDER_ITEMS.rule()} items, got {len(lines)}"
            )
        )
    seen: set[str] = set()
    for index, line in enumerate(lines[: limits.ORDER_ITEMS.maximum]):
        if violation := validate_product_id(line.product_id, f"items[{index}].product_id"):
            violations.append(violation)
        elif line.product_id in seen:
            violations.append(
                FieldViolation(f"items[{index}].product_id", "appears more than once")
            )
        seen.add(line.product_id)
        if problem := limits.QUANTITY.problem(line.quantity):
            violations.append(FieldViolation(f"items[{index}].quantity", problem))
    if violations:
        raise InvalidArgument(violations)
    return sorted(lines, key=lambda line: line.product_id)


# ---------------------------------------------------------------------------
# Use cases


@dataclass(frozen=True)
class ReservedStock:
    """What a reservation answers: whether it was made now, and the products' prices."""

    #: False when the order already held exactly this (a retried call).
    created: bool
    prices: Mapping[str, Money]


async def reserve_order_stock(
    ledger: StockLedger, order_id: str, lines: list[StockLine]
) -> ReservedStock:
    """Reserves every line or nothing; answers with the reserved products' current prices.

    ``lines`` are validated and sorted by product id.
    """
    existing = await ledger.reservation()
    if existing.state is ReservationState.RELEASED:
        raise FailedPrecondition(f"stock for order {order_id} was already released")
    if existing.state is ReservationState.RESERVED:
        if sorted(existing.lines, key=lambda line: line.product_id) == lines:
            return ReservedStock(created=False, prices=existing.prices)
        raise FailedPrecondition(f"order {order_id} already holds a different stock reservation")
    stock = await ledger.lock_stock([line.product_id for line in lines])
    missing = [line.product_id for line in lines if line.product_id not in stock]
    if missing:
        raise NotFound(f"unknown product ids: {', '.join(missing)}")
    for line in lines:
        if stock[line.product_id].available < line.quantity:
            raise FailedPrecondition(f"insufficient stock for {line.product_id}")
    await ledger.reserve(lines)
    return ReservedStock(created=True, prices={p: stock[p].price for p in stock})


async def apply_status_change(open_ledger: LedgerOpener, change: OrderStatusChange) -> int | None:
    """When an order is rejected, the stock it reserved goes back on sale.

    Returns the units released, or None when the change releases nothing.
    """
    if not change.rejected:
        return None
    async with open_ledger(change.order_id) as ledger:
        return await ledger.release()


class Catalog:
    """The catalog's use cases over a repository."""

    def __init__(self, repository: CatalogRepository) -> None:
        self._repository = repository

    async def get_product(self, product_id: str) -> Product:
        product = await self._repository.get_product(require_product_id(product_id))
        if product is None:
            raise NotFound(f"product {product_id} not found")
        return product

    async def list_products(self, page_size: int, page_token: str) -> ProductPage:
        limit = page_size_or_default(page_size)
        after_id = decode_page_token(page_token)
        # One extra row tells whether another page exists without a count query.
        rows = await self._repository.list_products(after_id, limit + 1)
        products = rows[:limit]
        more = len(rows) > limit
        return ProductPage(
            products=products,
            next_page_token=encode_page_token(products[-1].product_id) if more else "",
        )

    async def batch_get_prices(self, product_ids: Sequence[str]) -> list[tuple[str, Money]]:
        wanted = validate_price_ids(product_ids)
        prices = await self._repository.get_prices(wanted)
        missing = [product_id for product_id in wanted if product_id not in prices]
        if missing:
            raise NotFound(f"unknown product ids: {', '.join(missing)}")
        return [(product_id, prices[product_id]) for product_id in wanted]

    async def reserve_stock(self, order_id: str, lines: Sequence[StockLine]) -> ReservedStock:
        valid = validate_reservation(order_id, lines)
        async with self._repository.stock_ledger(order_id) as ledger:
            return await reserve_order_stock(ledger, order_id, valid)

    async def release_stock(self, order_id: str) -> int:
        require_order_id(order_id)
        async with self._repository.stock_ledger(order_id) as ledger:
            return await ledger.release()
