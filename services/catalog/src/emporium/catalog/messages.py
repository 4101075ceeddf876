"""Translation between the catalog's domain objects and the protobuf wire messages.

One place for it, shared by the gRPC servicer and the Kafka handlers, so the
domain never sees a protobuf class.
"""

from __future__ import annotations

from collections.abc import Iterable

from emporium.catalog import domain
from emporium.catalog.v1 import catalog_pb2
from emporium.common.v1 import money_pb2
from emporium.events.v1 import order_events_pb2
from emporium.orders.v1 import orders_pb2


def money_to_wire(money: domain.Money) -> money_pb2.Money:
    return money_pb2.Money(currency_code=money.currency_code, amount_minor=money.amount_minor)


def product_to_wire(product: domain.Product) -> catalog_pb2.Product:
    return catalog_pb2.Product(
        product_id=product.product_id,
        name=product.name,
        description=product.description,
        category=product.category,
        price=money_to_wire(product.price),
        stock_available=product.stock_available,
    )


def product_price_to_wire(product_id: str, price: domain.Money) -> catalog_pb2.ProductPrice:
    return catalog_pb2.ProductPrice(product_id=product_id, price=money_to_wire(price))


def stock_lines_from_wire(items: Iterable[catalog_pb2.StockItem]) -> list[domain.StockLine]:
    return [domain.StockLine(item.product_id, item.quantity) for item in items]


def status_change_from_wire(
    message: order_events_pb2.OrderStatusChanged,
) -> domain.OrderStatusChange:
    return domain.OrderStatusChange(
        order_id=message.order_id, rejected=message.status == orders_pb2.ORDER_STATUS_REJECTED
    )
