"""Unit tests of the catalog's rules, over a small in-memory repository."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from emporium.catalog.domain import (
    Catalog,
    Money,
    OrderReservation,
    Product,
    ProductStock,
    ReservationState,
    StockLine,
    decode_page_token,
    encode_page_token,
    page_size_or_default,
    validate_price_ids,
    validate_reservation,
)
from emporium.kit.errors import FailedPrecondition, InvalidArgument, NotFound

pytestmark = pytest.mark.unit


@dataclass
class _State:
    on_hand: dict[str, int] = field(default_factory=dict)
    reserved: dict[str, int] = field(default_factory=dict)
    reservations: dict[str, dict[str, int]] = field(default_factory=dict)
    released: set[str] = field(default_factory=set)
    prices: dict[str, int] = field(default_factory=dict)


class FakeLedger:
    def __init__(self, state: _State, order_id: str) -> None:
        self.state = state
        self.order_id = order_id

    async def reservation(self) -> OrderReservation:
        if self.order_id in self.state.released:
            return OrderReservation(ReservationState.RELEASED)
        lines = self.state.reservations.get(self.order_id)
        if not lines:
            return OrderReservation(ReservationState.NONE)
        return OrderReservation(
            ReservationState.RESERVED,
            tuple(StockLine(p, q) for p, q in sorted(lines.items())),
            {p: Money("EUR", self.state.prices[p]) for p in lines},
        )

    async def lock_stock(self, product_ids: Sequence[str]) -> dict[str, ProductStock]:
        return {
            p: ProductStock(
                self.state.on_hand[p], self.state.reserved[p], Money("EUR", self.state.prices[p])
            )
            for p in product_ids
            if p in self.state.on_hand
        }

    async def reserve(self, lines: Sequence[StockLine]) -> None:
        for line in lines:
            self.state.reserved[line.product_id] += line.quantity
        self.state.reservations[self.order_id] = {line.product_id: line.quantity for line in lines}

    async def release(self) -> int:
        lines = self.state.reservations.pop(self.order_id, {})
        for product_id, quantity in lines.items():
            self.state.reserved[product_id] -= quantity
        self.state.released.add(self.order_id)
        return sum(lines.values())


class FakeRepository:
    """Products in a dict; a stock ledger works on a copy that replaces the state on success."""

    def __init__(self, products: dict[str, tuple[int, int]]) -> None:
        # product id -> (price in cents, stock on hand)
        self.prices = {p: price for p, (price, _) in products.items()}
        self.state = _State(
            on_hand={p: stock for p, (_, stock) in products.items()},
            reserved=dict.fromkeys(products, 0),
            prices=dict(self.prices),
        )

    def _product(self, product_id: str) -> Product:
        return Product(
            product_id,
            f"name of {product_id}",
            "",
            "things",
            Money("EUR", self.prices[product_id]),
            self.available(product_id),
        )

    def available(self, product_id: str) -> int:
        return self.state.on_hand[product_id] - self.state.reserved[product_id]

    async def get_product(self, product_id: str) -> Product | None:
        return self._product(product_id) if product_id in self.prices else None

    async def list_products(self, after_id: str | None, limit: int) -> list[Product]:
        ids = sorted(p for p in self.prices if after_id is None or p > after_id)
        return [self._product(p) for p in ids[:limit]]

    async def get_prices(self, product_ids: Sequence[str]) -> dict[str, Money]:
        return {p: Money("EUR", self.prices[p]) for p in product_ids if p in self.prices}

    @asynccontextmanager
    async def stock_ledger(self, order_id: str) -> AsyncIterator[FakeLedger]:
        working = copy.deepcopy(self.state)
        yield FakeLedger(working, order_id)
        self.state = working  # commit only when the block did not raise


def make_catalog(**products: tuple[int, int]) -> tuple[Catalog, FakeRepository]:
    repository = FakeRepository(products)
    return Catalog(repository), repository


def _fields(error: InvalidArgument) -> dict[str, str]:
    return {v.field: v.description for v in error.violations}


# --- validation --------------------------------------------------------------


@pytest.mark.parametrize("product_id", ["", " ", "a b", "x" * 65, "-leading-dash", "é"])
async def test_get_product_rejects_empty_or_malformed_ids(product_id: str) -> None:
    catalog, _ = make_catalog(mug=(1000, 1))
    with pytest.raises(InvalidArgument) as caught:
        await catalog.get_product(product_id)
    assert list(_fields(caught.value)) == ["product_id"]


async def test_get_product_unknown_id_is_not_found() -> None:
    catalog, _ = make_catalog(mug=(1000, 1))
    with pytest.raises(NotFound, match="nope"):
        await catalog.get_product("nope")


@pytest.mark.parametrize(("given", "expected"), [(0, 20), (1, 1), (100, 100)])
def test_page_size_defaults_and_bounds(given: int, expected: int) -> None:
    assert page_size_or_default(given) == expected


@pytest.mark.parametrize("given", [-1, 101])
def test_page_size_out_of_range_is_invalid(given: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        page_size_or_default(given)
    assert list(_fields(caught.value)) == ["page_size"]


def test_page_token_round_trips_and_is_opaque() -> None:
    token = encode_page_token("beans-brazil-1kg")
    assert "beans" not in token
    assert decode_page_token(token) == "beans-brazil-1kg"
    assert decode_page_token("") is None


@pytest.mark.parametrize(
    "token", ["garbage!", "YWJj", encode_page_token("x")[:-2] + "%%", "YWZ0ZXI6"]
)
def test_bad_page_tokens_are_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_page_token(token)
    assert list(_fields(caught.value)) == ["page_token"]


def test_price_ids_are_bounded_and_named_by_index() -> None:
    with pytest.raises(InvalidArgument) as empty:
        validate_price_ids([])
    assert list(_fields(empty.value)) == ["product_ids"]
    with pytest.raises(InvalidArgument):
        validate_price_ids([f"p{i}" for i in range(101)])
    with pytest.raises(InvalidArgument) as bad:
        validate_price_ids(["ok", "not ok", ""])
    assert list(_fields(bad.value)) == ["product_ids[1]", "product_ids[2]"]
    assert validate_price_ids(["b", "a", "b"]) == ["b", "a"]


def test_reservation_validation_names_every_bad_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_reservation(
            "",
            [
                StockLine("mug", 1),
                StockLine("mug", 2),
                StockLine("", 1),
                StockLine("kettle", 0),
                StockLine("scale", 101),
            ],
        )
    assert _fields(caught.value).keys() == {
        "order_id",
        "items[1].product_id",
        "items[2].product_id",
        "items[3].quantity",
        "items[4].quantity",
    }


def test_reservation_needs_between_1_and_50_items() -> None:
    with pytest.raises(InvalidArgument) as none:
        validate_reservation("o-1", [])
    assert list(_fields(none.value)) == ["items"]
    with pytest.raises(InvalidArgument) as many:
        validate_reservation("o-1", [StockLine(f"p{i}", 1) for i in range(51)])
    assert list(_fields(many.value)) == ["items"]
    fifty = [StockLine(f"p{i:02}", 1) for i in range(50)]
    assert validate_reservation("o-1", list(reversed(fifty))) == fifty


# --- reading -----------------------------------------------------------------


async def test_list_products_pages_through_everything_once() -> None:
    catalog, _ = make_catalog(**{f"p{i:02}": (100 + i, 5) for i in range(25)})
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await catalog.list_products(10, token)
        pages += 1
        seen += [p.product_id for p in page.products]
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == [f"p{i:02}" for i in range(25)]


async def test_list_products_last_full_page_has_no_token() -> None:
    catalog, _ = make_catalog(**{f"p{i}": (100, 1) for i in range(4)})
    page = await catalog.list_products(4, "")
    assert len(page.products) == 4
    assert page.next_page_token == ""


async def test_batch_prices_in_request_order_and_missing_ids_named() -> None:
    catalog, _ = make_catalog(mug=(1000, 1), kettle=(8900, 1))
    prices = await catalog.batch_get_prices(["kettle", "mug"])
    assert prices == [("kettle", Money("EUR", 8900)), ("mug", Money("EUR", 1000))]
    with pytest.raises(NotFound) as caught:
        await catalog.batch_get_prices(["mug", "ghost", "phantom"])
    assert caught.value.message == "unknown product ids: ghost, phantom"


# --- stock -------------------------------------------------------------------


async def test_reserve_takes_stock_and_is_idempotent_per_order() -> None:
    catalog, repo = make_catalog(mug=(1000, 10), kettle=(8900, 3))
    lines = [StockLine("mug", 2), StockLine("kettle", 3)]
    prices = {"mug": Money("EUR", 1000), "kettle": Money("EUR", 8900)}
    first = await catalog.reserve_stock("o-1", lines)
    assert (first.created, first.prices) == (True, prices)
    assert (repo.available("mug"), repo.available("kettle")) == (8, 0)
    # Same request again (in another order): nothing changes; the same prices come back.
    again = await catalog.reserve_stock("o-1", list(reversed(lines)))
    assert (again.created, again.prices) == (False, prices)
    assert (repo.available("mug"), repo.available("kettle")) == (8, 0)


async def test_reserve_is_all_or_nothing() -> None:
    catalog, repo = make_catalog(mug=(1000, 10), kettle=(8900, 1))
    with pytest.raises(FailedPrecondition, match="insufficient stock for kettle"):
        await catalog.reserve_stock("o-1", [StockLine("mug", 2), StockLine("kettle", 2)])
    assert (repo.available("mug"), repo.available("kettle")) == (10, 1)
    assert repo.state.reservations == {}


async def test_reserve_unknown_product_is_not_found() -> None:
    catalog, repo = make_catalog(mug=(1000, 10))
    with pytest.raises(NotFound, match="unknown product ids: ghost"):
        await catalog.reserve_stock("o-1", [StockLine("mug", 1), StockLine("ghost", 1)])
    assert repo.available("mug") == 10


async def test_same_order_with_different_items_is_refused() -> None:
    catalog, repo = make_catalog(mug=(1000, 10))
    await catalog.reserve_stock("o-1", [StockLine("mug", 1)])
    with pytest.raises(FailedPrecondition, match="different stock reservation"):
        await catalog.reserve_stock("o-1", [StockLine("mug", 2)])
    assert repo.available("mug") == 9


async def test_release_returns_stock_once_and_blocks_late_reservations() -> None:
    catalog, repo = make_catalog(mug=(1000, 10))
    await catalog.reserve_stock("o-1", [StockLine("mug", 4)])
    assert await catalog.release_stock("o-1") == 4
    assert repo.available("mug") == 10
    assert await catalog.release_stock("o-1") == 0
    assert repo.available("mug") == 10
    with pytest.raises(FailedPrecondition, match="already released"):
        await catalog.reserve_stock("o-1", [StockLine("mug", 4)])
    assert repo.available("mug") == 10


async def test_release_of_an_unknown_order_is_a_no_op() -> None:
    catalog, repo = make_catalog(mug=(1000, 10))
    assert await catalog.release_stock("never-reserved") == 0
    assert repo.available("mug") == 10
    with pytest.raises(InvalidArgument):
        await catalog.release_stock("")
