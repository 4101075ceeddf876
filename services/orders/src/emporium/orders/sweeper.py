"""The reservation sweeper: releases the stock of checkouts that never committed.

A kit component (``service.add_component``): every ``interval_seconds`` it runs
:func:`emporium.orders.domain.release_stale_reservations` for reservations
older than ``hold_seconds``. The hold is longer than any live checkout takes
from reservation to commit (the checkout budget plus the database's statement
timeout); a shorter one would still be safe (the commit refuses a claimed
reservation) but would turn slow checkouts into retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from emporium.kit.errors import ServiceError
from emporium.orders import domain

log = logging.getLogger(__name__)

#: Reservations released per round at most; the next round takes the rest.
BATCH_SIZE = 100


class ReservationSweeper:
    def __init__(
        self,
        repository: domain.OrderRepository,
        catalog: domain.Catalog,
        *,
        hold_seconds: float,
        interval_seconds: float,
    ) -> None:
        self._repository = repository
        self._catalog = catalog
        self._hold = hold_seconds
        self._interval = interval_seconds
        self._stopping = asyncio.Event()

    async def sweep(self) -> int:
        """One round; returns how many reservations were released."""
        released = 0
        while True:
            batch = await domain.release_stale_reservations(
                self._repository, self._catalog, self._hold, BATCH_SIZE
            )
            released += batch
            if batch < BATCH_SIZE:
                return released

    async def run(self) -> None:
        self._stopping.clear()
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except ServiceError as error:  # the database or the catalog is away: next round
                log.warning("reservation sweep failed", extra={"error": str(error)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    async def stop(self) -> None:
        self._stopping.set()
