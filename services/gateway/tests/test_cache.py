"""The read-path TTL cache: single flight, TTL, failures not cached, bounded size."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from emporium.gateway.cache import TTLCache

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """Counts loads; each load waits for ``gate`` when one is set."""

    def __init__(self, result: str = "value") -> None:
        self.result = result
        self.loads = 0
        self.gate: asyncio.Event | None = None
        self.fail_with: Exception | None = None

    async def __call__(self) -> str:
        self.loads += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return f"{self.result}-{self.loads}"


def requests(cache: str, result: str) -> float:
    value = REGISTRY.get_sample_value(
        "emporium_cache_requests_total", {"cache": cache, "result": result}
    )
    return value or 0.0


async def test_concurrent_misses_for_one_key_share_one_load() -> None:
    cache: TTLCache[str, str] = TTLCache("t-single-flight", ttl_seconds=5)
    loader = Loader()
    loader.gate = asyncio.Event()
    waiters = [asyncio.create_task(cache.get_or_load("p-1", loader)) for _ in range(50)]
    await asyncio.sleep(0.01)
    assert loader.loads == 1
    loader.gate.set()
    assert await asyncio.gather(*waiters) == ["value-1"] * 50
    assert await cache.get_or_load("p-1", loader) == "value-1"
    assert loader.loads == 1
    assert requests("t-single-flight", "miss") == 1
    assert requests("t-single-flight", "coalesced") == 49
    assert requests("t-single-flight", "hit") == 1


async def test_different_keys_load_independently() -> None:
    cache: TTLCache[str, str] = TTLCache("t-keys", ttl_seconds=5)
    loader = Loader()
    values = await asyncio.gather(*(cache.get_or_load(k, loader) for k in ("a", "b", "c")))
    assert sorted(values) == ["value-1", "value-2", "value-3"]
    assert loader.loads == 3


async def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache: TTLCache[str, str] = TTLCache("t-ttl", ttl_seconds=5, clock=clock)
    loader = Loader()
    assert await cache.get_or_load("k", loader) == "value-1"
    clock.now += 4.9
    assert await cache.get_or_load("k", loader) == "value-1"
    clock.now += 0.2
    assert cache.get("k") is None
    assert await cache.get_or_load("k", loader) == "value-2"
    assert loader.loads == 2


async def test_failures_are_not_cached_and_reach_every_waiter() -> None:
    cache: TTLCache[str, str] = TTLCache("t-failure", ttl_seconds=5)
    loader = Loader()
    loader.gate = asyncio.Event()
    loader.fail_with = RuntimeError("catalog down")
    waiters = [asyncio.create_task(cache.get_or_load("k", loader)) for _ in range(3)]
    await asyncio.sleep(0.01)
    loader.gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert loader.loads == 1
    loader.fail_with = None
    assert await cache.get_or_load("k", loader) == "value-2"


async def test_a_cancelled_waiter_does_not_cancel_the_load_for_others() -> None:
    cache: TTLCache[str, str] = TTLCache("t-cancel", ttl_seconds=5)
    loader = Loader()
    loader.gate = asyncio.Event()
    first = asyncio.create_task(cache.get_or_load("k", loader))
    second = asyncio.create_task(cache.get_or_load("k", loader))
    await asyncio.sleep(0.01)
    first.cancel()  # e.g. its request's deadline passed
    await asyncio.sleep(0)
    loader.gate.set()
    assert await second == "value-1"
    assert first.cancelled()
    assert cache.get("k") == "value-1"


async def test_size_is_bounded_expired_first_then_oldest() -> None:
    clock = Clock()
    cache: TTLCache[str, str] = TTLCache("t-bounded", ttl_seconds=10, max_entries=3, clock=clock)
    loader = Loader()
    await cache.get_or_load("old", loader)
    clock.now += 9
    await cache.get_or_load("a", loader)
    await cache.get_or_load("b", loader)
    await cache.get_or_load("c", loader)  # full: "old" (oldest) goes
    assert len(cache) == 3
    assert cache.get("old") is None
    clock.now += 2  # "a", "b", "c" still fresh
    await cache.get_or_load("d", loader)  # evicts "a", the oldest
    assert cache.get("a") is None
    assert [cache.get(k) is not None for k in ("b", "c", "d")] == [True, True, True]
    assert len(cache) == 3
