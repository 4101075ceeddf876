"""A read-path cache with a short TTL and stampede protection.

``await cache.get_or_load(key, loader)`` returns a fresh cached value, or
runs ``loader()`` once per key however many requests miss at the same time:
the first miss starts the load as a task and later ones for the same key
await that task ("coalesced"). A failed load is not cached; every waiter gets
its exception and the next request tries again. A waiter that is cancelled
(its request's deadline passed) does not cancel the load for the others.

The load runs in the context of the request that started it, so it is
bounded by that request's deadline (:mod:`emporium.kit.grpc.deadlines`).
The cache holds at most ``max_entries`` entries; expired entries go first,
then the oldest.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from emporium.gateway import metrics

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    def __init__(
        self,
        name: str,
        ttl_seconds: float,
        max_entries: int = 1024,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.name = name
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        # key -> (expires_at, value); insertion order is expiry order (one TTL for all).
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._loads: dict[K, asyncio.Task[V]] = {}
        self._hits = metrics.CACHE_REQUESTS.labels(name, "hit")
        self._misses = metrics.CACHE_REQUESTS.labels(name, "miss")
        self._coalesced = metrics.CACHE_REQUESTS.labels(name, "coalesced")

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The fresh cached value, or None (no load, no metrics)."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    async def get_or_load(self, key: K, loader: Callable[[], Awaitable[V]]) -> V:
        entry = self._entries.get(key)
        if entry is not None:
            if entry[0] > self._clock():
                self._hits.inc()
                return entry[1]
            del self._entries[key]
        load = self._loads.get(key)
        if load is not None:
            self._coalesced.inc()
        else:
            self._misses.inc()
            load = asyncio.ensure_future(loader())
            self._loads[key] = load
            load.add_done_callback(lambda done: self._finish(key, done))
        # shield: a waiter that gives up does not cancel the load for the others.
        return await asyncio.shield(load)

    def _finish(self, key: K, load: asyncio.Task[V]) -> None:
        if self._loads.get(key) is load:
            del self._loads[key]
        if load.cancelled():
            return
        if load.exception() is not None:  # retrieved, so asyncio does not warn
            return
        self._store(key, load.result())

    def _store(self, key: K, value: V) -> None:
        now = self._clock()
        self._entries.pop(key, None)
        while self._entries:
            oldest_key, (expires_at, _) = next(iter(self._entries.items()))
            if expires_at > now and len(self._entries) < self.max_entries:
                break
            del self._entries[oldest_key]
        self._entries[key] = (now + self.ttl_seconds, value)
