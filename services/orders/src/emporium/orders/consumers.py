"""Kafka handlers of orders: decode the events, hand them to the domain.

``fraud.decision-made.v1`` gets a batch handler, as fraud's hot topic does: it
gets a poll's new decisions at once, inside the kit consumer's transaction
(the unit of work ``uow`` it is given); the domain reads their orders with
one statement (rows locked) and the store writes the changed statuses with
one (their outbox rows go with the kit's one statement per poll). The
statuses, their outbox events and the processed event ids commit or roll
back together. If one event is poison the call fails, and the kit applies
the poll's events one by one (this handler called with one event), so only
that one goes to the dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Sequence

from emporium.contracts.events import fraud_decision_made_violations
from emporium.events.v1 import fraud_events_pb2
from emporium.kit.db import UnitOfWork
from emporium.kit.errors import describe_violations
from emporium.kit.kafka import (
    Causes,
    ConsumedEvent,
    Handler,
    PoisonMessage,
    batch_handler,
    parse_event,
)
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
    """The status store, observing each order's decision delay as it saves the decisions.

    The delay from the order being placed to its decision being applied is the
    fraud-decision freshness SLI (``emporium_order_decision_delay_seconds``).
    It is observed inside the consumer's transaction: a decision whose commit
    then fails is observed again when it is retried (rare, and only late).
    """

    def __init__(self, store: domain.OrderStatusStore) -> None:
        self._store = store

    async def get_for_update(self, order_ids: Sequence[str]) -> dict[str, domain.Order]:
        return await self._store.get_for_update(order_ids)

    async def save_statuses(
        self, changes: Sequence[tuple[domain.Order, domain.OrderStatusChangedEvent]]
    ) -> None:
        await self._store.save_statuses(changes)
        for order, event in changes:
            delay = (event.occurred_at - order.created_at).total_seconds()
            metrics.ORDER_DECISION_DELAY.labels(event.status.value.lower()).observe(max(0.0, delay))


def handlers(topics: Topics) -> dict[str, Handler]:
    """The consumer's handlers, by topic."""

    @batch_handler
    async def fraud_decision_made(events: Sequence[ConsumedEvent], uow: UnitOfWork) -> None:
        decisions = [decode_fraud_decision(event.value) for event in events]
        # The first decision of an order is the one it is changed by.
        causes = Causes(events, [decision.order_id for decision in decisions])
        await domain.apply_fraud_decisions(
            TimedStatusStore(PostgresOrderStatusStore(uow, topics, causes)),
            decisions,
            context_of=causes.traced,
        )

    return {topics.fraud_decision_made: fraud_decision_made}
