"""The in-memory top lists (cache.py): what is read once, for how long, and what is never kept."""

from __future__ import annotations

import asyncio

import pytest

from emporium.recommendations.cache import CachedRecommendationRepository
from emporium.recommendations.domain import MAX_RESULTS, Recommendation

pytestmark = pytest.mark.unit


class Table:
    """The top lists a database would answer, counting the reads and able to hold or fail them."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Recommendation]] = {}
        self.asked: list[tuple[str, int]] = []
        self.gate: asyncio.Event | None = None
        self.failure: Exception | None = None

    async def top_co_purchased(self, product_id: str, limit: int) -> list[Recommendation]:
        self.asked.append((product_id, limit))
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return self.rows.get(product_id, [])[:limit]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def top(*pairs: tuple[str, int]) -> list[Recommendation]:
    return [Recommendation(product_id, score) for product_id, score in pairs]


@pytest.fixture
def table() -> Table:
    table = Table()
    table.rows["grinder"] = top(("beans", 5), ("filters", 3), ("kettle", 3), ("mug", 1))
    return table


async def test_one_read_of_the_whole_top_list_answers_every_length(table: Table) -> None:
    cache = CachedRecommendationRepository(table, clock=Clock())
    assert await cache.top_co_purchased("grinder", 2) == top(("beans", 5), ("filters", 3))
    assert await cache.top_co_purchased("grinder", 20) == table.rows["grinder"]
    assert await cache.top_co_purchased("grinder", 1) == top(("beans", 5))
    assert table.asked == [("grinder", MAX_RESULTS)]
    assert await cache.top_co_purchased("nobody-bought", 5) == []
    assert await cache.top_co_purchased("nobody-bought", 5) == []
    assert table.asked == [("grinder", MAX_RESULTS), ("nobody-bought", MAX_RESULTS)]


async def test_a_counted_order_shows_once_the_list_is_older_than_the_ttl(table: Table) -> None:
    clock = Clock()
    cache = CachedRecommendationRepository(table, ttl_seconds=1.0, clock=clock)
    await cache.top_co_purchased("grinder", 5)
    table.rows["grinder"] = top(("scale", 9))
    clock.now += 0.99
    assert (await cache.top_co_purchased("grinder", 5))[0].product_id == "beans"
    clock.now += 0.01
    assert await cache.top_co_purchased("grinder", 5) == top(("scale", 9))
    assert len(table.asked) == 2


async def test_concurrent_requests_for_one_product_share_one_read(table: Table) -> None:
    table.gate = asyncio.Event()
    cache = CachedRecommendationRepository(table, clock=Clock())
    waiting = [asyncio.create_task(cache.top_co_purchased("grinder", n)) for n in (1, 2, 3)]
    await asyncio.sleep(0.01)
    table.gate.set()
    assert [len(answer) for answer in await asyncio.gather(*waiting)] == [1, 2, 3]
    assert table.asked == [("grinder", MAX_RESULTS)]


async def test_a_caller_giving_up_does_not_cancel_the_read_of_the_others(table: Table) -> None:
    table.gate = asyncio.Event()
    cache = CachedRecommendationRepository(table, clock=Clock())
    impatient = asyncio.create_task(cache.top_co_purchased("grinder", 5))
    patient = asyncio.create_task(cache.top_co_purchased("grinder", 5))
    await asyncio.sleep(0.01)
    impatient.cancel()
    table.gate.set()
    assert await patient == table.rows["grinder"]
    assert impatient.cancelled()


async def test_a_failed_read_reaches_its_callers_and_is_not_kept(table: Table) -> None:
    table.failure = ConnectionError("database down")
    cache = CachedRecommendationRepository(table, clock=Clock())
    for _ in range(2):
        with pytest.raises(ConnectionError, match="database down"):
            await cache.top_co_purchased("grinder", 5)
    table.failure = None
    assert await cache.top_co_purchased("grinder", 5) == table.rows["grinder"]
    assert len(table.asked) == 3


async def test_the_least_recently_read_product_goes_first(table: Table) -> None:
    cache = CachedRecommendationRepository(table, max_products=2, clock=Clock())
    for product in ("grinder", "beans", "grinder", "mug"):
        await cache.top_co_purchased(product, 5)
    await cache.top_co_purchased("grinder", 5)
    assert [product for product, _ in table.asked] == ["grinder", "beans", "mug"]
    await cache.top_co_purchased("beans", 5)
    assert [product for product, _ in table.asked][-1] == "beans"


async def test_a_ttl_of_zero_reads_every_time(table: Table) -> None:
    cache = CachedRecommendationRepository(table, ttl_seconds=0, clock=Clock())
    await cache.top_co_purchased("grinder", 5)
    await cache.top_co_purchased("grinder", 5)
    assert len(table.asked) == 2


def test_nonsense_settings_are_refused(table: Table) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        CachedRecommendationRepository(table, ttl_seconds=-1)
    with pytest.raises(ValueError, match="max_products"):
        CachedRecommendationRepository(table, max_products=0)
