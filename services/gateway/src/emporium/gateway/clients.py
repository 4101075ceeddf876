"""The downstream interfaces of :mod:`emporium.gateway.domain` over real gRPC.

Each client owns one kit :class:`~emporium.kit.grpc.DownstreamClient`
(deadline, breaker, bounded retries, error mapping); the translation between
protobuf messages and the gateway's plain values is in
:mod:`emporium.gateway.messages`.
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from emporium.gateway import messages
from emporium.gateway.domain import CheckoutRequest, Order, PlacedOrder, Product, ProductList
from emporium.kit.errors import DeadlineExceeded, Unavailable
from emporium.kit.grpc import DownstreamClient
from emporium.orders.v1 import orders_pb2, orders_pb2_grpc
from emporium.recommendations.v1 import recommendations_pb2, recommendations_pb2_grpc


class CatalogClient:
    def __init__(self, client: DownstreamClient) -> None:
        self.client = client
        self.stub = catalog_pb2_grpc.CatalogServiceStub(client.channel)

    async def get_product(self, product_id: str) -> Product:
        reply = await self.client.call(
            self.stub.GetProduct,
            catalog_pb2.GetProductRequest(product_id=product_id),
            idempotent=True,
        )
        return messages.product_from_wire(reply.product)

    async def list_products(self, page_size: int, page_token: str) -> ProductList:
        reply = await self.client.call(
            self.stub.ListProducts,
            catalog_pb2.ListProductsRequest(page_size=page_size, page_token=page_token),
            idempotent=True,
        )
        return ProductList(
            products=[messages.product_from_wire(p) for p in reply.products],
            next_page_token=reply.next_page_token,
        )


class RecommendationsClient:
    def __init__(self, client: DownstreamClient) -> None:
        self.client = client
        self.stub = recommendations_pb2_grpc.RecommendationServiceStub(client.channel)

    async def list_recommendations(self, product_id: str, max_results: int) -> list[str]:
        reply = await self.client.call(
            self.stub.ListRecommendations,
            recommendations_pb2.ListRecommendationsRequest(
                product_id=product_id, max_results=max_results
            ),
            idempotent=True,
        )
        return [item.product_id for item in reply.recommendations]


class OrdersClient:
    def __init__(self, client: DownstreamClient) -> None:
        self.client = client
        self.stub = orders_pb2_grpc.OrderServiceStub(client.channel)

    async def place_order(self, request: CheckoutRequest) -> PlacedOrder:
        # Retrying PlaceOrder is safe: the idempotency key makes a repeated
        # call return the order the first one created.
        try:
            reply = await self.client.call(
                self.stub.PlaceOrder,
                messages.place_order_to_wire(request),
                idempotent=True,
            )
        except (Unavailable, DeadlineExceeded) as error:
            raise blame_root_cause(error) from error
        return PlacedOrder(order=messages.order_from_wire(reply.order), created=reply.created)

    async def get_order(self, order_id: str) -> Order:
        reply = await self.client.call(
            self.stub.GetOrder, orders_pb2.GetOrderRequest(order_id=order_id), idempotent=True
        )
        return messages.order_from_wire(reply.order)


def blame_root_cause(error: Unavailable | DeadlineExceeded) -> Unavailable | DeadlineExceeded:
    """Names the service that really failed, when the callee says so.

    When orders cannot reach the catalog it answers UNAVAILABLE with an
    ErrorInfo detail naming "catalog"; the customer should read "catalog is
    unavailable", not "orders is unavailable".
    """
    root = _failed_dependency(error.__cause__)
    if not root or root == error.dependency:
        return error
    message = f"{root} (behind {error.dependency}): {error.message}"
    if isinstance(error, DeadlineExceeded):
        return DeadlineExceeded(message, dependency=root)
    return Unavailable(message, dependency=root)


def _failed_dependency(cause: BaseException | None) -> str:
    if not isinstance(cause, grpc.aio.AioRpcError):
        return ""
    try:
        status = rpc_status.from_call(cause)  # type: ignore[arg-type]
    except ValueError:
        return ""
    for detail in status.details if status is not None else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            dependency: str = info.metadata.get("dependency", "")
            if dependency:
                return dependency
    return ""
