"""Kafka handlers of orders: decode the event, hand it to the domain.

Each handler runs inside the kit consumer's transaction (the unit of work
``conn`` it is given), together with the insert of the event id into ``processed_events``:
the status change, its outbox event and "this event was handled" commit or
roll back as one.
"""

from __future__ import annotations

from emporium.contracts.events import fraud_decision_made_violations
from emporium.events.v1 import fraud_events_pb2
from emporium.kit.db import UnitOfWork
from emporium.kit.errors import describe_violations
from emporium.kit.kafka import ConsumedEvent, Handler, PoisonMessage, parse_event
from emporium.orders import domain, messages, metrics
from emporium.orders.repository import PostgresOrderStatusStore
from emporium.orders.topics import Topics


def decode_fraud_decision(payload: bytes) -> domain.FraudDecision:
    """The decision in a ``fraud.decision-made.v1`` payload, or PoisonMessage.

    A decision that breaks the contracts' rules (no order id, a risk score out
    of range...) is never applied: it goes to the dead-letter topic with the reason.
    """
    message = parse_event(fraud_events_pb2.FraudDecisionMade, payload)
    if violations := fraud_decision_made_violations(message):
        raise PoisonMessage(f"invalid FraudDecisionMade: {describe_violations(violations)}")
    try:
        return messages.fraud_decision_from_wire(message)
    except messages.InvalidDecision as error:
        raise PoisonMessage(f"invalid FraudDecisionMade: {error}") from error


class TimedStatusStore:
    """The status store, observing each order's decision delay as it saves the decision.

    The delay from the order being placed to its decision being applied is the
    fraud-decision freshness SLI (``emporium_order_decision_delay_seconds``).
    It is observed inside the consumer's transaction: a decision whose commit
    then fails is observed again when it is retried (rare, and only late).
    """

    def __init__(self, store: domain.OrderStatusStore) -> None:
        self._store = store

    async def get_for_update(self, order_id: str) -> domain.Order | None:
        return await self._store.get_for_update(order_id)

    async def save_status(self, order: domain.Order, event: domain.OrderStatusChangedEvent) -> None:
        await self._store.save_status(order, event)
        delay = (event.occurred_at - order.created_at).total_seconds()
        metrics.ORDER_DECISION_DELAY.labels(event.status.value.lower()).observe(max(0.0, delay))


def handlers(topics: Topics) -> dict[str, Handler]:
    """The consumer's handlers, by topic."""

    async def fraud_decision_made(event: ConsumedEvent, conn: UnitOfWork) -> None:
        decision = decode_fraud_decision(event.value)
        store = TimedStatusStore(PostgresOrderStatusStore(conn, topics))
        await domain.apply_fraud_decision(store, decision)

    return {topics.fraud_decision_made: fraud_decision_made}
