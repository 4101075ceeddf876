"""The gateway's domain: what it talks about and what the storefront does.

Plain values (and their JSON form), the small interfaces the storefront needs
from its downstream services, and the storefront's use cases, composed from
them with plain asyncio: no HTTP and no gRPC here. The gRPC adapters in
:mod:`emporium.gateway.clients` implement the interfaces over the kit's
DownstreamClient; unit tests implement them with hand-written fakes.
Implementations raise the kit's errors (NotFound, InvalidArgument,
FailedPrecondition, Unavailable, DeadlineExceeded), never gRPC exceptions.

Every request runs under a deadline (the kit's ``deadline_scope``), which the
gRPC clients turn into per-call deadlines; ``asyncio`` timeouts slightly
behind those deadlines make sure that nothing, not even a downstream that
ignores deadlines, holds a response past its budget.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

from emporium.kit.errors import DeadlineExceeded, NotFound, ServiceError
from emporium.kit.grpc.deadlines import deadline_scope
from emporium.kit.logging import AccessLogSampler

OrderStatus = Literal["pending", "approved", "rejected", "unknown"]


@dataclass(frozen=True)
class Money:
    """An amount in the currency's minor unit (cents): never a float."""

    currency_code: str
    amount_minor: int

    def as_json(self) -> dict[str, Any]:
        return {"currency_code": self.currency_code, "amount_minor": self.amount_minor}


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    description: str
    price: Money
    stock_available: int
    category: str

    def as_json(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "name": self.name,
            "description": self.description,
            "category": self.category,
            "price": self.price.as_json(),
            "stock_available": self.stock_available,
            "in_stock": self.stock_available > 0,
        }

    def summary_json(self) -> dict[str, Any]:
        """The short form used for recommendations."""
        return {
            "product_id": self.product_id,
            "name": self.name,
            "price": self.price.as_json(),
            "stock_available": self.stock_available,
            "in_stock": self.stock_available > 0,
        }


@dataclass(frozen=True)
class ProductList:
    products: list[Product]
    next_page_token: str

    def as_json(self) -> dict[str, Any]:
        return {
            "products": [product.as_json() for product in self.products],
            "next_page_token": self.next_page_token,
        }


@dataclass(frozen=True)
class ProductPage:
    """The product page: the product, and what was bought with it when available."""

    product: Product
    recommendations: list[Product]
    recommendations_available: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "product": self.product.as_json(),
            "recommendations": [item.summary_json() for item in self.recommendations],
            "recommendations_available": self.recommendations_available,
        }


@dataclass(frozen=True)
class OrderLine:
    product_id: str
    quantity: int
    #: Set by orders from the catalog's price; None on input.
    unit_price: Money | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "quantity": self.quantity,
            "unit_price": self.unit_price.as_json() if self.unit_price else None,
        }


@dataclass(frozen=True)
class Order:
    order_id: str
    customer_id: str
    items: list[OrderLine]
    total: Money | None
    status: OrderStatus
    status_reason: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "customer_id": self.customer_id,
            "items": [item.as_json() for item in self.items],
            "total": self.total.as_json() if self.total else None,
            "status": self.status,
            "status_reason": self.status_reason,
            "created_at": _timestamp(self.created_at),
            "updated_at": _timestamp(self.updated_at),
        }


@dataclass(frozen=True)
class CheckoutRequest:
    idempotency_key: str
    customer_id: str
    items: list[OrderLine] = field(default_factory=list)


@dataclass(frozen=True)
class PlacedOrder:
    order: Order
    #: False when the idempotency key matched an order placed before.
    created: bool


def _timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the storefront's downstream services ------------------------------------------


class Catalog(Protocol):
    async def get_product(self, product_id: str) -> Product: ...

    async def list_products(self, page_size: int, page_token: str) -> ProductList: ...


class Recommendations(Protocol):
    async def list_recommendations(self, product_id: str, max_results: int) -> list[str]:
        """Ids of products bought together with ``product_id``, best first."""
        ...


class Orders(Protocol):
    async def place_order(self, request: CheckoutRequest) -> PlacedOrder: ...

    async def get_order(self, order_id: str) -> Order: ...


# -- the storefront ----------------------------------------------------------------

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The recommendations call gets this much longer than its gRPC deadline
#: before the gateway stops waiting on its own, so the gRPC deadline normally
#: fires first and the breaker counts the failure.
SAFETY_MARGIN_SECONDS = 0.1
#: At most one "served without recommendations" line per dependency this often.
DEGRADED_LOG_INTERVAL_SECONDS = 1.0


class ReadCache(Protocol):
    """The gateway's TTLCache (:mod:`emporium.gateway.cache`), as far as the storefront uses it."""

    async def get_or_load(self, key: Any, loader: Callable[[], Awaitable[Any]]) -> Any: ...


@dataclass(frozen=True)
class Budgets:
    """Time budgets in seconds (PRODUCT_PAGE_BUDGET_MS, CHECKOUT_BUDGET_MS, ...)."""

    product_page: float = 1.0
    checkout: float = 3.0
    recommendations: float = 0.25
    max_recommendations: int = 4


@dataclass(frozen=True)
class Degradation:
    """Why a page was served without an optional part."""

    dependency: str
    reason: str


class Storefront:
    def __init__(
        self,
        catalog: Catalog,
        recommendations: Recommendations | None,
        orders: Orders,
        *,
        product_cache: ReadCache,
        list_cache: ReadCache,
        budgets: Budgets,
    ) -> None:
        self.catalog = catalog
        self.recommendations = recommendations
        self.orders = orders
        self.product_cache = product_cache
        self.list_cache = list_cache
        self.budgets = budgets
        self._degraded_lines = AccessLogSampler(
            rate=0, slow_seconds=math.inf, interval_seconds=DEGRADED_LOG_INTERVAL_SECONDS
        )

    async def list_products(self, page_size: int, page_token: str) -> ProductList:
        with deadline_scope(self.budgets.product_page) as deadline:
            async with _until(deadline, "catalog", "product list"):
                result: ProductList = await self.list_cache.get_or_load(
                    (page_size, page_token),
                    lambda: self.catalog.list_products(page_size, page_token),
                )
                return result

    async def product_page(self, product_id: str) -> tuple[ProductPage, Degradation | None]:
        """The product and its recommendations, fetched in parallel.

        The catalog is critical: its errors are the page's errors. The
        recommendations are optional: when they fail, time out or their
        breaker is open, the page comes without them and says so. Without a
        recommendations service at all (``recommendations`` is None), every
        page comes without them and says so too, but that is the system's
        shape, not a degradation: nothing is counted or logged.
        """
        recommendations = self.recommendations
        if recommendations is None:
            with deadline_scope(self.budgets.product_page) as deadline:
                async with _until(deadline, "catalog", "product page"):
                    product = await self._product(product_id)
            return ProductPage(product, [], recommendations_available=False), None
        with deadline_scope(self.budgets.product_page) as deadline:
            assert deadline is not None
            recommended = asyncio.create_task(
                self._recommended(recommendations, product_id, deadline)
            )
            try:
                async with _until(deadline, "catalog", "product page"):
                    product = await self._product(product_id)
            except BaseException:
                await _cancel(recommended)
                raise
            products, degradation = await recommended
        page = ProductPage(product, products, recommendations_available=degradation is None)
        return page, degradation

    async def checkout(self, request: CheckoutRequest) -> PlacedOrder:
        with deadline_scope(self.budgets.checkout) as deadline:
            async with _until(deadline, "orders", "checkout"):
                return await self.orders.place_order(request)

    async def order(self, order_id: str) -> Order:
        with deadline_scope(self.budgets.product_page) as deadline:
            async with _until(deadline, "orders", "order status"):
                return await self.orders.get_order(order_id)

    async def _product(self, product_id: str) -> Product:
        product: Product = await self.product_cache.get_or_load(
            product_id, lambda: self.catalog.get_product(product_id)
        )
        return product

    async def _recommended(
        self, recommendations: Recommendations, product_id: str, deadline: float
    ) -> tuple[list[Product], Degradation | None]:
        """Recommended products with names and prices, or why there are none."""
        budget = min(self.budgets.recommendations + SAFETY_MARGIN_SECONDS, _left(deadline))
        try:
            async with asyncio.timeout(max(budget, 0)):
                ids = await recommendations.list_recommendations(
                    product_id, self.budgets.max_recommendations
                )
        except (ServiceError, TimeoutError) as error:
            return [], self._degraded("recommendations", error)
        except Exception as error:
            # An optional part never takes the page down, not even through a bug.
            log.exception("recommendations failed unexpectedly")
            return [], self._degraded("recommendations", error)
        wanted = list(dict.fromkeys(i for i in ids if i and i != product_id))
        wanted = wanted[: self.budgets.max_recommendations]
        if not wanted:
            return [], None
        # Names and prices come from the catalog (cached), within what is left
        # of the page's budget: a slow catalog costs the recommendations, not the page.
        try:
            async with asyncio.timeout(max(_left(deadline) - 0.01, 0)):
                found = await asyncio.gather(
                    *(self._product(i) for i in wanted), return_exceptions=True
                )
        except TimeoutError as error:
            return [], self._degraded("catalog", error)
        products = [item for item in found if isinstance(item, Product)]
        failures = [item for item in found if isinstance(item, BaseException) and not _gone(item)]
        if failures and not products:
            return [], self._degraded("catalog", failures[0])
        return products, None

    def _degraded(self, dependency: str, error: BaseException) -> Degradation:
        if isinstance(error, TimeoutError):
            reason = "did not answer in time"
        else:
            reason = getattr(error, "message", "") or str(error) or type(error).__name__
        # Every degraded page is counted (emporium_degraded_responses_total); the
        # log gets one line per dependency per second, saying how many it left out:
        # with the breaker open, a line per page would cost more than the page.
        left_out = self._degraded_lines.decide(dependency, 0.0)
        if left_out is not None:
            log.warning(
                "product page served without recommendations",
                extra={
                    "dependency": dependency,
                    "reason": reason,
                    "error": type(error).__name__,
                    "sampled_out": left_out,
                },
            )
        return Degradation(dependency, reason)


def _gone(error: BaseException) -> bool:
    """A recommended product that the catalog no longer has is simply left out."""
    return isinstance(error, NotFound)


def _left(deadline: float) -> float:
    return deadline - time.monotonic()


class _until:
    """``asyncio.timeout`` at an absolute ``time.monotonic()`` deadline.

    Expiry becomes DeadlineExceeded naming the dependency, so the HTTP layer
    answers 504 with a message instead of a bare timeout.
    """

    def __init__(self, deadline: float | None, dependency: str, what: str) -> None:
        self._deadline = deadline
        self._dependency = dependency
        self._what = what
        self._timeout: asyncio.Timeout | None = None

    async def __aenter__(self) -> None:
        left = None if self._deadline is None else max(_left(self._deadline), 0)
        self._timeout = asyncio.timeout(left)
        await self._timeout.__aenter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self._timeout is not None
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            raise DeadlineExceeded(
                f"{self._dependency} did not answer within the {self._what} budget",
                dependency=self._dependency,
            ) from None


async def _cancel(task: asyncio.Task[T]) -> None:
    """Cancels a task nobody needs any more and waits until it has finished."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
