"""Unit tests of the recommendations' rules, over small in-memory fakes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest

from emporium.kit.errors import InvalidArgument
from emporium.recommendations.domain import (
    Recommendation,
    Recommendations,
    co_purchase_pairs,
    record_order,
    validate_request,
)

pytestmark = pytest.mark.unit


class FakeStore:
    """Both the ledger (writes) and the repository (reads), over a Counter."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.counted: set[str] = set()

    async def mark_order_counted(self, order_id: str) -> bool:
        if order_id in self.counted:
            return False
        self.counted.add(order_id)
        return True

    async def add_pairs(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.counts.update(pairs)

    async def top_co_purchased(self, product_id: str, limit: int) -> list[Recommendation]:
        found = [(other, n) for (p, other), n in self.counts.items() if p == product_id]
        found.sort(key=lambda item: (-item[1], item[0]))
        return [Recommendation(other, n) for other, n in found[:limit]]


def _fields(error: InvalidArgument) -> list[str]:
    return [v.field for v in error.violations]


def test_pairs_are_distinct_and_in_both_directions() -> None:
    assert co_purchase_pairs(["b", "a", "b", "c"]) == [
        ("a", "b"),
        ("a", "c"),
        ("b", "a"),
        ("b", "c"),
        ("c", "a"),
        ("c", "b"),
    ]
    assert co_purchase_pairs(["a", "a"]) == []
    assert len(co_purchase_pairs([f"p{i}" for i in range(50)])) == 50 * 49


@pytest.mark.parametrize(("given", "expected"), [(0, 4), (1, 1), (20, 20)])
def test_max_results_default_and_bounds(given: int, expected: int) -> None:
    assert validate_request("mug", given) == expected


def test_bad_requests_name_their_fields() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_request("", 21)
    assert _fields(caught.value) == ["product_id", "max_results"]
    with pytest.raises(InvalidArgument) as negative:
        validate_request("not an id", -1)
    assert _fields(negative.value) == ["product_id", "max_results"]


async def test_nothing_known_gives_an_empty_list() -> None:
    recommendations = Recommendations(FakeStore())
    assert await recommendations.list_recommendations("mug", 0) == []


async def test_top_products_by_count_then_id() -> None:
    store = FakeStore()
    await record_order(store, "o-1", ["grinder", "beans", "scale"])
    await record_order(store, "o-2", ["grinder", "beans"])
    await record_order(store, "o-3", ["grinder", "filters"])
    await record_order(store, "o-4", ["grinder", "kettle"])
    recommendations = Recommendations(store)
    found = await recommendations.list_recommendations("grinder", 0)
    assert found == [
        Recommendation("beans", 2),
        Recommendation("filters", 1),
        Recommendation("kettle", 1),
        Recommendation("scale", 1),
    ]
    assert await recommendations.list_recommendations("grinder", 1) == [Recommendation("beans", 2)]
    assert await recommendations.list_recommendations("beans", 0) == [
        Recommendation("grinder", 2),
        Recommendation("scale", 1),
    ]


async def test_an_order_counts_once_and_single_product_orders_count_nothing() -> None:
    store = FakeStore()
    assert await record_order(store, "o-1", ["a", "b", "c"]) == 6
    assert await record_order(store, "o-1", ["a", "b", "c"]) == 0
    assert await record_order(store, "o-2", ["a", "a"]) == 0
    assert store.counts == Counter({pair: 1 for pair in co_purchase_pairs(["a", "b", "c"])})


async def test_an_impossible_event_is_refused_without_effect() -> None:
    store = FakeStore()
    with pytest.raises(InvalidArgument) as caught:
        await record_order(store, "", ["a", "bad id"])
    assert _fields(caught.value) == ["order_id", "items[1].product_id"]
    assert not store.counts
    assert not store.counted
