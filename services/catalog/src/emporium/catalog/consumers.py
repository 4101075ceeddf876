"""Kafka handlers of the catalog: decode the event, apply its effect in the consumer's transaction.

``orders.order-status-changed.v1``: when an order is rejected, the stock it
reserved goes back on sale. The release runs on the connection of the
consumer's transaction, the one that also records the event id, so a
redelivered event releases nothing twice. An event that breaks the contracts'
rules (no order id, an unknown status...) releases nothing: it goes to the
dead-letter topic with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from emporium.catalog.domain import StockLedger
from emporium.contracts import manifest
from emporium.contracts.events import order_status_changed_violations
from emporium.events.v1 import order_events_pb2
from emporium.kit.errors import describe_violations
from emporium.kit.kafka import ConsumedEvent, PoisonMessage, parse_event
from emporium.orders.v1 import orders_pb2

log = logging.getLogger(__name__)

# The topic name comes from the system manifest (docs/manifest.md).
ORDER_STATUS_CHANGED_TOPIC = manifest.system().topic("order-status-changed").name

#: Opens a stock ledger for one order on a connection already in a transaction.
LedgerOn = Callable[[Any, str], AbstractAsyncContextManager[StockLedger]]


class OrderStatusChangedHandler:
    def __init__(self, ledger_on: LedgerOn) -> None:
        self._ledger_on = ledger_on

    async def __call__(self, event: ConsumedEvent, conn: Any) -> None:
        changed = parse_event(order_events_pb2.OrderStatusChanged, event.value)
        if violations := order_status_changed_violations(changed):
            raise PoisonMessage(f"invalid OrderStatusChanged: {describe_violations(violations)}")
        if changed.status != orders_pb2.ORDER_STATUS_REJECTED:
            return
        order_id = changed.order_id
        async with self._ledger_on(conn, order_id) as ledger:
            released = await ledger.release()
        log.info(
            "stock of a rejected order released",
            extra={"order_id": order_id, "units_released": released},
        )
