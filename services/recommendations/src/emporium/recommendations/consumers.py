"""Kafka handlers of the recommendations: decode the event, hand it to the domain.

``orders.order-placed.v1``: every pair of distinct products in the order is
counted once more, on the unit of work of the consumer's transaction (the one
that also records the event id), so a redelivered event counts once. An event
that breaks the contracts' rules (a negative quantity, a missing id...) counts
nothing: it goes to the dead-letter topic with the reason.
"""

from __future__ import annotations

import logging

from emporium.contracts.events import order_placed_violations
from emporium.events.v1 import order_events_pb2
from emporium.kit.db import UnitOfWork
from emporium.kit.errors import InvalidArgument, describe_violations
from emporium.kit.kafka import ConsumedEvent, Handler, PoisonMessage, parse_event
from emporium.recommendations import domain, messages
from emporium.recommendations.repository import PostgresCoPurchaseLedger
from emporium.recommendations.topics import Topics

log = logging.getLogger(__name__)


def decode_order_placed(payload: bytes) -> domain.PlacedOrder:
    """The order in an ``orders.order-placed.v1`` payload, or PoisonMessage."""
    message = parse_event(order_events_pb2.OrderPlaced, payload)
    if violations := order_placed_violations(message):
        raise PoisonMessage(f"invalid OrderPlaced: {describe_violations(violations)}")
    return messages.placed_order_from_wire(message)


async def count_placed_order(ledger: domain.CoPurchaseLedger, payload: bytes) -> int:
    """Decodes the event and counts its pairs; PoisonMessage for an impossible order."""
    placed = decode_order_placed(payload)
    try:
        pairs = await domain.record_order(ledger, placed.order_id, placed.product_ids)
    except InvalidArgument as error:
        raise PoisonMessage(f"impossible OrderPlaced: {error}") from error
    log.debug("order counted", extra={"order_id": placed.order_id, "pairs_incremented": pairs})
    return pairs


def handlers(topics: Topics) -> dict[str, Handler]:
    """The consumer's handlers, by topic."""

    async def order_placed(event: ConsumedEvent, conn: UnitOfWork) -> None:
        await count_placed_order(PostgresCoPurchaseLedger(conn), event.value)

    return {topics.order_placed: order_placed}
