"""Translation between the domain objects and the protobuf wire messages.

One place for it, shared by the gRPC servicer, the Kafka handlers and the
outbox writes, so the domain never sees a protobuf class.
"""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from emporium.common.v1 import money_pb2
from emporium.events.v1 import fraud_events_pb2, order_events_pb2
from emporium.kit.errors import InvalidArgument
from emporium.orders import domain
from emporium.orders.v1 import orders_pb2

_STATUS_TO_WIRE = {
    domain.OrderStatus.PENDING: orders_pb2.ORDER_STATUS_PENDING,
    domain.OrderStatus.APPROVED: orders_pb2.ORDER_STATUS_APPROVED,
    domain.OrderStatus.REJECTED: orders_pb2.ORDER_STATUS_REJECTED,
}
_VERDICT_FROM_WIRE = {
    fraud_events_pb2.FRAUD_DECISION_APPROVE: domain.FraudVerdict.APPROVE,
    fraud_events_pb2.FRAUD_DECISION_REJECT: domain.FraudVerdict.REJECT,
}


class InvalidDecision(ValueError):
    """A fraud decision that decodes but breaks the contract."""


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def money_to_wire(money: domain.Money) -> money_pb2.Money:
    return money_pb2.Money(currency_code=money.currency_code, amount_minor=money.amount_minor)


def money_from_wire(money: money_pb2.Money) -> domain.Money:
    return domain.Money(money.currency_code, money.amount_minor)


def status_to_wire(status: domain.OrderStatus) -> orders_pb2.OrderStatus.ValueType:
    return _STATUS_TO_WIRE[status]


def place_order_from_wire(request: orders_pb2.PlaceOrderRequest) -> domain.PlaceOrder:
    # unit_price on input is ignored: prices always come from the catalog.
    return domain.PlaceOrder(
        idempotency_key=request.idempotency_key,
        customer_id=request.customer_id,
        items=tuple(domain.RequestedItem(i.product_id, i.quantity) for i in request.items),
    )


def order_items_to_wire(order: domain.Order) -> list[orders_pb2.OrderItem]:
    return [
        orders_pb2.OrderItem(
            product_id=line.product_id,
            quantity=line.quantity,
            unit_price=money_to_wire(line.unit_price),
        )
        for line in order.lines
    ]


def order_to_wire(order: domain.Order) -> orders_pb2.Order:
    return orders_pb2.Order(
        order_id=order.order_id,
        customer_id=order.customer_id,
        items=order_items_to_wire(order),
        total=money_to_wire(order.total),
        status=status_to_wire(order.status),
        status_reason=order.status_reason,
        created_at=timestamp(order.created_at),
        updated_at=timestamp(order.updated_at),
    )


def order_placed_to_wire(event: domain.OrderPlacedEvent) -> order_events_pb2.OrderPlaced:
    order = event.order
    return order_events_pb2.OrderPlaced(
        event_id=event.event_id,
        order_id=order.order_id,
        customer_id=order.customer_id,
        items=order_items_to_wire(order),
        total=money_to_wire(order.total),
        occurred_at=timestamp(order.created_at),
    )


def status_changed_to_wire(
    event: domain.OrderStatusChangedEvent,
) -> order_events_pb2.OrderStatusChanged:
    return order_events_pb2.OrderStatusChanged(
        event_id=event.event_id,
        order_id=event.order_id,
        previous_status=status_to_wire(event.previous_status),
        status=status_to_wire(event.status),
        reason=event.reason,
        occurred_at=timestamp(event.occurred_at),
    )


def fraud_decision_from_wire(message: fraud_events_pb2.FraudDecisionMade) -> domain.FraudDecision:
    """The decision, or InvalidDecision when the payload breaks the contract."""
    verdict = _VERDICT_FROM_WIRE.get(message.decision)
    if verdict is None:
        raise InvalidDecision(f"decision must be APPROVE or REJECT, got {message.decision}")
    try:
        order_id = domain.parse_order_id(message.order_id)
    except InvalidArgument:
        raise InvalidDecision(f"order_id {message.order_id!r} is not a UUID") from None
    return domain.FraudDecision(
        order_id=order_id,
        verdict=verdict,
        risk_score=message.risk_score,
        reason=message.reason,
    )
