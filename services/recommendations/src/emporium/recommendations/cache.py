"""Each product's top list, kept in memory for a second: the product page's read path.

Every product page asks for the recommendations of one product, and the
answer changes only when an order with that product is counted. So the
service reads a product's whole top list (``MAX_RESULTS`` entries) once, serves
every request for that product from memory for ``ttl_seconds`` (1 s), and
answers a shorter request with a prefix of it: the order (count descending,
then product id) is total, so the first n of the top 20 are the top n.

Staleness is bounded and the same on every replica: an order counted by any
replica's consumer shows in every replica's answers at most ``ttl_seconds``
after its transaction committed (plus the time of one read). Requests for
a product whose entry expired while a read of it is under way wait for that
read instead of starting their own, so a popular product costs one query a
second whatever the traffic. A failed read is not kept: the next request
reads again, and the database's errors (UNAVAILABLE when it is down) reach
the callers of that read as before. At most ``max_products`` lists are kept;
the least recently read goes first.

docs/decisions/catalog-recommendations.md says why this and not a cache in the
gateway, and what it measured.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from emporium.recommendations.domain import MAX_RESULTS, Recommendation, RecommendationRepository

TTL_SECONDS = 1.0
MAX_PRODUCTS = 10_000


@dataclass(frozen=True)
class _Entry:
    top: tuple[Recommendation, ...]
    expires: float


class CachedRecommendationRepository:
    """:class:`domain.RecommendationRepository` answering from memory, reading ``source`` at
    most once per product and ``ttl_seconds``."""

    def __init__(
        self,
        source: RecommendationRepository,
        ttl_seconds: float = TTL_SECONDS,
        max_products: int = MAX_PRODUCTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_seconds < 0 or max_products < 1:
            raise ValueError("ttl_seconds must be >= 0 and max_products >= 1")
        self._source = source
        self._ttl = ttl_seconds
        self._max_products = max_products
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._reads: dict[str, asyncio.Task[tuple[Recommendation, ...]]] = {}
        self.reads = 0  # reads of the source, for tests and figures

    async def top_co_purchased(self, product_id: str, limit: int) -> list[Recommendation]:
        entry = self._entries.get(product_id)
        if entry is not None and entry.expires > self._clock():
            self._entries.move_to_end(product_id)
            return list(entry.top[:limit])
        read = self._reads.get(product_id)
        if read is None:
            read = asyncio.create_task(self._read(product_id))
            self._reads[product_id] = read
            read.add_done_callback(self._forget(product_id))
        # A caller that gives up (its deadline) does not cancel the read the
        # others wait for.
        top = await asyncio.shield(read)
        return list(top[:limit])

    def _forget(self, product_id: str) -> Callable[[asyncio.Task[object]], None]:
        def done(read: asyncio.Task[object]) -> None:
            self._reads.pop(product_id, None)
            if not read.cancelled():
                read.exception()  # retrieved here too: every waiter may have given up

        return done

    async def _read(self, product_id: str) -> tuple[Recommendation, ...]:
        started = self._clock()
        self.reads += 1
        top = tuple(await self._source.top_co_purchased(product_id, MAX_RESULTS))
        if self._ttl > 0:
            self._entries[product_id] = _Entry(top, started + self._ttl)
            self._entries.move_to_end(product_id)
            while len(self._entries) > self._max_products:
                self._entries.popitem(last=False)
        return top
