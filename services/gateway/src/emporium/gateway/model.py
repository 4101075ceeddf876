"""What the gateway talks about, as plain values, and their JSON form.

The downstream adapters turn protobuf messages into these; the HTTP layer
turns these into JSON. Nothing here knows gRPC or HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

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
