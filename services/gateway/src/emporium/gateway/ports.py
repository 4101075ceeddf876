"""The small interfaces the gateway needs from its downstream services.

The gRPC adapters in :mod:`emporium.gateway.grpc_clients` implement them over
the kit's DownstreamClient; unit tests implement them with hand-written fakes.
Implementations raise the kit's errors (NotFound, InvalidArgument,
FailedPrecondition, Unavailable, DeadlineExceeded), never gRPC exceptions.
"""

from __future__ import annotations

from typing import Protocol

from emporium.gateway.model import CheckoutRequest, Order, PlacedOrder, Product, ProductList


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
