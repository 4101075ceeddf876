"""Kafka handlers of the recommendations: decode the event, count it in the consumer's transaction.

``orders.order-placed.v1``: every pair of distinct products in the order is
counted once more, on the connection of the consumer's transaction (the one
that also records the event id), so a redelivered event counts once. An event
that breaks the contracts' rules (a negative quantity, a missing id...) counts
nothing: it goes to the dead-letter topic with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from emporium.contracts import manifest
from emporium.contracts.events import order_placed_violations
from emporium.events.v1 import order_events_pb2
from emporium.kit.errors import InvalidArgument, describe_violations
from emporium.kit.kafka import ConsumedEvent, PoisonMessage, parse_event
from emporium.recommendations.domain import CoPurchaseLedger, record_order

log = logging.getLogger(__name__)

# The topic name comes from the system manifest (docs/manifest.md).
ORDER_PLACED_TOPIC = manifest.system().topic("order-placed").name


class OrderPlacedHandler:
    def __init__(self, ledger_on: Callable[[Any], CoPurchaseLedger]) -> None:
        self._ledger_on = ledger_on

    async def __call__(self, event: ConsumedEvent, conn: Any) -> None:
        placed = parse_event(order_events_pb2.OrderPlaced, event.value)
        if violations := order_placed_violations(placed):
            raise PoisonMessage(f"invalid OrderPlaced: {describe_violations(violations)}")
        product_ids = [item.product_id for item in placed.items]
        try:
            pairs = await record_order(self._ledger_on(conn), placed.order_id, product_ids)
        except InvalidArgument as error:
            raise PoisonMessage(f"impossible OrderPlaced: {error}") from error
        log.debug("order counted", extra={"order_id": placed.order_id, "pairs_incremented": pairs})
