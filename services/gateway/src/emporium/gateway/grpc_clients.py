"""The downstream interfaces of :mod:`emporium.gateway.ports` over real gRPC.

Each adapter owns one kit :class:`~emporium.kit.grpc.DownstreamClient`
(deadline, breaker, bounded retries, error mapping) and only translates
between protobuf messages and the gateway's plain values.
"""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from emporium.common.v1 import money_pb2
from emporium.gateway.model import (
    CheckoutRequest,
    Money,
    Order,
    OrderLine,
    OrderStatus,
    PlacedOrder,
    Product,
    ProductList,
)
from emporium.kit.errors import DeadlineExceeded, Unavailable
from emporium.kit.grpc import DownstreamClient
from emporium.orders.v1 import orders_pb2, orders_pb2_grpc
from emporium.recommendations.v1 import recommendations_pb2, recommendations_pb2_grpc

STATUS_NAMES: dict[int, OrderStatus] = {
    orders_pb2.ORDER_STATUS_PENDING: "pending",
    orders_pb2.ORDER_STATUS_APPROVED: "approved",
    orders_pb2.ORDER_STATUS_REJECTED: "rejected",
}


class GrpcCatalog:
    def __init__(self, client: DownstreamClient) -> None:
        self.client = client
        self.stub = catalog_pb2_grpc.CatalogServiceStub(client.channel)

    async def get_product(self, product_id: str) -> Product:
        reply = await self.client.call(
            self.stub.GetProduct,
            catalog_pb2.GetProductRequest(product_id=product_id),
            idempotent=True,
        )
        return product_from_proto(reply.product)

    async def list_products(self, page_size: int, page_token: str) -> ProductList:
        reply = await self.client.call(
            self.stub.ListProducts,
            catalog_pb2.ListProductsRequest(page_size=page_size, page_token=page_token),
            idempotent=True,
        )
        return ProductList(
            products=[product_from_proto(p) for p in reply.products],
            next_page_token=reply.next_page_token,
        )


class GrpcRecommendations:
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


class GrpcOrders:
    def __init__(self, client: DownstreamClient) -> None:
        self.client = client
        self.stub = orders_pb2_grpc.OrderServiceStub(client.channel)

    async def place_order(self, request: CheckoutRequest) -> PlacedOrder:
        # Retrying PlaceOrder is safe: the idempotency key makes a repeated
        # call return the order the first one created.
        try:
            reply = await self.client.call(
                self.stub.PlaceOrder,
                orders_pb2.PlaceOrderRequest(
                    idempotency_key=request.idempotency_key,
                    customer_id=request.customer_id,
                    items=[
                        orders_pb2.OrderItem(product_id=line.product_id, quantity=line.quantity)
                        for line in request.items
                    ],
                ),
                idempotent=True,
            )
        except (Unavailable, DeadlineExceeded) as error:
            raise blame_root_cause(error) from error
        return PlacedOrder(order=order_from_proto(reply.order), created=reply.created)

    async def get_order(self, order_id: str) -> Order:
        reply = await self.client.call(
            self.stub.GetOrder, orders_pb2.GetOrderRequest(order_id=order_id), idempotent=True
        )
        return order_from_proto(reply.order)


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


def money_from_proto(money: money_pb2.Money) -> Money:
    return Money(currency_code=money.currency_code, amount_minor=money.amount_minor)


def product_from_proto(product: catalog_pb2.Product) -> Product:
    return Product(
        product_id=product.product_id,
        name=product.name,
        description=product.description,
        price=money_from_proto(product.price),
        stock_available=product.stock_available,
        category=product.category,
    )


def order_from_proto(order: orders_pb2.Order) -> Order:
    return Order(
        order_id=order.order_id,
        customer_id=order.customer_id,
        items=[
            OrderLine(
                product_id=item.product_id,
                quantity=item.quantity,
                unit_price=money_from_proto(item.unit_price)
                if item.HasField("unit_price")
                else None,
            )
            for item in order.items
        ],
        total=money_from_proto(order.total) if order.HasField("total") else None,
        status=STATUS_NAMES.get(order.status, "unknown"),
        status_reason=order.status_reason,
        created_at=_time(order.created_at) if order.HasField("created_at") else None,
        updated_at=_time(order.updated_at) if order.HasField("updated_at") else None,
    )


def _time(timestamp: Timestamp) -> datetime:
    return timestamp.ToDatetime(tzinfo=UTC)
