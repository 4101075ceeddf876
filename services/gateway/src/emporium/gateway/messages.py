"""Translation between the gateway's plain values and the protobuf wire messages.

One place for it, used by the downstream clients, so the domain never sees a
protobuf class. (The JSON form of the values, for the HTTP edge, is theirs:
``as_json``.)
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from emporium.catalog.v1 import catalog_pb2
from emporium.common.v1 import money_pb2
from emporium.gateway.domain import CheckoutRequest, Money, Order, OrderLine, OrderStatus, Product
from emporium.orders.v1 import orders_pb2

STATUS_NAMES: dict[int, OrderStatus] = {
    orders_pb2.ORDER_STATUS_PENDING: "pending",
    orders_pb2.ORDER_STATUS_APPROVED: "approved",
    orders_pb2.ORDER_STATUS_REJECTED: "rejected",
}


def place_order_to_wire(request: CheckoutRequest) -> orders_pb2.PlaceOrderRequest:
    return orders_pb2.PlaceOrderRequest(
        idempotency_key=request.idempotency_key,
        customer_id=request.customer_id,
        items=[
            orders_pb2.OrderItem(product_id=line.product_id, quantity=line.quantity)
            for line in request.items
        ],
    )


def money_from_wire(money: money_pb2.Money) -> Money:
    return Money(currency_code=money.currency_code, amount_minor=money.amount_minor)


def product_from_wire(product: catalog_pb2.Product) -> Product:
    return Product(
        product_id=product.product_id,
        name=product.name,
        description=product.description,
        price=money_from_wire(product.price),
        stock_available=product.stock_available,
        category=product.category,
    )


def order_from_wire(order: orders_pb2.Order) -> Order:
    return Order(
        order_id=order.order_id,
        customer_id=order.customer_id,
        items=[
            OrderLine(
                product_id=item.product_id,
                quantity=item.quantity,
                unit_price=money_from_wire(item.unit_price)
                if item.HasField("unit_price")
                else None,
            )
            for item in order.items
        ],
        total=money_from_wire(order.total) if order.HasField("total") else None,
        status=STATUS_NAMES.get(order.status, "unknown"),
        status_reason=order.status_reason,
        created_at=_time(order.created_at) if order.HasField("created_at") else None,
        updated_at=_time(order.updated_at) if order.HasField("updated_at") else None,
    )


def _time(timestamp: Timestamp) -> datetime:
    return timestamp.ToDatetime(tzinfo=UTC)
