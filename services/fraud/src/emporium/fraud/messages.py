"""Translation between fraud's domain objects and the protobuf event messages."""

from __future__ import annotations

import uuid

from google.protobuf.timestamp_pb2 import Timestamp

from emporium.events.v1 import fraud_events_pb2, order_events_pb2
from emporium.fraud import domain

_VERDICT_TO_WIRE = {
    domain.Verdict.APPROVE: fraud_events_pb2.FRAUD_DECISION_APPROVE,
    domain.Verdict.REJECT: fraud_events_pb2.FRAUD_DECISION_REJECT,
}


class InvalidOrderPlaced(ValueError):
    """An OrderPlaced event that decodes but breaks the contract."""


def placed_order_from_wire(event: order_events_pb2.OrderPlaced) -> domain.PlacedOrder:
    try:
        order_id = str(uuid.UUID(event.order_id))
    except ValueError:
        raise InvalidOrderPlaced(f"order_id {event.order_id!r} is not a UUID") from None
    if not event.HasField("total") or len(event.total.currency_code) != 3:
        raise InvalidOrderPlaced("total with a currency code is required")
    if not event.items:
        raise InvalidOrderPlaced("an order has at least one item")
    return domain.PlacedOrder(
        order_id=order_id,
        customer_id=event.customer_id,
        lines=tuple(domain.Line(item.product_id, item.quantity) for item in event.items),
        currency_code=event.total.currency_code,
        total_minor=event.total.amount_minor,
    )


def decision_to_wire(decision: domain.Decision) -> fraud_events_pb2.FraudDecisionMade:
    occurred_at = Timestamp()
    occurred_at.FromDatetime(decision.decided_at)
    return fraud_events_pb2.FraudDecisionMade(
        event_id=decision.event_id,
        order_id=decision.order_id,
        decision=_VERDICT_TO_WIRE[decision.verdict],
        risk_score=decision.risk_score,
        reason=decision.reason,
        occurred_at=occurred_at,
    )
