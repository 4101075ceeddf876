"""Kafka handlers of the recommendations: decode the event, count it in the consumer's transaction.

``orders.order-placed.v1``: every pair of distinct products in the order is
counted once more, on the connection of the consumer's transaction (the one
that also records the event id), so a redelivered event counts once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from emporium.events.v1 import order_events_pb2
from emporium.kit.errors import InvalidArgument
from emporium.kit.kafka import ConsumedEvent, PoisonMessage, parse_event
from emporium.recommendations.domain import CoPurchaseLedger, record_order

log = logging.getLogger(__name__)

ORDER_PLACED_TOPIC = "orders.order-placed.v1"


class OrderPlacedHandler:
    def __init__(self, ledger_on: Callable[[Any], CoPurchaseLedger]) -> None:
        self._ledger_on = ledger_on

    async def __call__(self, event: ConsumedEvent, conn: Any) -> None:
        placed = parse_event(order_events_pb2.OrderPlaced, event.value)
        product_ids = [item.product_id for item in placed.items]
        try:
            pairs = await record_order(self._ledger_on(conn), placed.order_id, product_ids)
        except InvalidArgument as error:
            raise PoisonMessage(f"impossible OrderPlaced: {error}") from error
        log.debug("order counted", extra={"order_id": placed.order_id, "pairs_incremented": pairs})
