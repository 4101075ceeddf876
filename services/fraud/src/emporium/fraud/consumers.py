"""Kafka handlers of fraud: decode the event, hand it to the domain.

The handler runs inside the kit consumer's transaction (the unit of work
``conn`` it is given), so the decision, its outbox event and the processed event id commit
or roll back together.
"""

from __future__ import annotations

from emporium.contracts.events import order_placed_violations
from emporium.events.v1 import order_events_pb2
from emporium.fraud import domain, messages
from emporium.fraud.repository import PostgresDecisionStore
from emporium.fraud.topics import Topics
from emporium.kit.db import UnitOfWork
from emporium.kit.errors import describe_violations
from emporium.kit.kafka import ConsumedEvent, Handler, PoisonMessage, parse_event


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

    async def order_placed(event: ConsumedEvent, conn: UnitOfWork) -> None:
        await domain.decide(PostgresDecisionStore(conn, topics), decode_order_placed(event.value))

    return {topics.order_placed: order_placed}
