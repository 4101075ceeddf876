"""Kafka handlers of fraud: decode the events, hand them to the domain.

``orders.order-placed.v1`` is fraud's hot topic, so its handler is a batch
handler: it gets a poll's new events at once, inside the kit consumer's
transaction (the unit of work ``uow`` it is given), decodes them all, lets
the domain decide them all, and the store writes the decisions with one
statement (their outbox rows go with the kit's one statement per poll). The
decisions, their outbox events and the processed event ids commit or roll
back together. If one event is poison the call fails, and the kit applies the
poll's events one by one (this handler called with one event), so only that
one goes to the dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Sequence

from emporium.contracts.events import order_placed_violations
from emporium.events.v1 import order_events_pb2
from emporium.fraud import domain, messages
from emporium.fraud.repository import PostgresDecisionStore
from emporium.fraud.topics import Topics
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


def decode_order_placed(payload: bytes) -> domain.PlacedOrder:
    """The order in an ``orders.order-placed.v1`` payload, or PoisonMessage.

    An event that breaks the contracts' rules (a negative quantity or total, a
    missing id...) is never scored: it goes to the dead-letter topic with the reason.
    """
    message = parse_event(order_events_pb2.OrderPlaced, payload)
    if violations := order_placed_violations(message):
        raise PoisonMessage(f"invalid OrderPlaced: {describe_violations(violations)}")
    try:
        return messages.placed_order_from_wire(message)
    except messages.InvalidOrderPlaced as error:
        raise PoisonMessage(f"invalid OrderPlaced: {error}") from error


def handlers(topics: Topics) -> dict[str, Handler]:
    """The consumer's handlers, by topic."""

    @batch_handler
    async def order_placed(events: Sequence[ConsumedEvent], uow: UnitOfWork) -> None:
        orders = [decode_order_placed(event.value) for event in events]
        # The first event of an order is the one it is decided by.
        causes = Causes(events, [order.order_id for order in orders])
        await domain.decide_all(
            PostgresDecisionStore(uow, topics, causes), orders, context_of=causes.traced
        )

    return {topics.order_placed: order_placed}
