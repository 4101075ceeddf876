"""Kafka handlers of the catalog: decode the event, hand it to the domain.

``orders.order-status-changed.v1``: when an order is rejected, the stock it
reserved goes back on sale. The release runs on the unit of work of the
consumer's transaction, the one that also records the event id, so a
redelivered event releases nothing twice. An event that breaks the contracts'
rules (no order id, an unknown status...) releases nothing: it goes to the
dead-letter topic with the reason.
"""

from __future__ import annotations

import logging

from emporium.catalog import domain, messages
from emporium.catalog.repository import ledger_on
from emporium.catalog.topics import Topics
from emporium.contracts.events import order_status_changed_violations
from emporium.events.v1 import order_events_pb2
from emporium.kit.db import UnitOfWork
from emporium.kit.errors import describe_violations
from emporium.kit.kafka import ConsumedEvent, Handler, PoisonMessage, parse_event

log = logging.getLogger(__name__)


def decode_order_status_changed(payload: bytes) -> domain.OrderStatusChange:
    """The change in an ``orders.order-status-changed.v1`` payload, or PoisonMessage."""
    message = parse_event(order_events_pb2.OrderStatusChanged, payload)
    if violations := order_status_changed_violations(message):
        raise PoisonMessage(f"invalid OrderStatusChanged: {describe_violations(violations)}")
    return messages.status_change_from_wire(message)


def handlers(topics: Topics) -> dict[str, Handler]:
    """The consumer's handlers, by topic."""

    async def order_status_changed(event: ConsumedEvent, conn: UnitOfWork) -> None:
        change = decode_order_status_changed(event.value)
        released = await domain.apply_status_change(
            lambda order_id: ledger_on(conn, order_id), change
        )
        if released is not None:
            log.info(
                "stock of a rejected order released",
                extra={"order_id": change.order_id, "units_released": released},
            )

    return {topics.order_status_changed: order_status_changed}
