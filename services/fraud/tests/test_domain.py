"""The fraud rules and the decision use case, with a fake store."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from emporium.fraud import domain
from emporium.fraud.domain import Line, PlacedOrder, Verdict

pytestmark = pytest.mark.unit


def order(
    total_minor: int = 5_000,
    customer: str = "alice",
    currency: str = "EUR",
    lines: tuple[Line, ...] = (Line("sku-1", 1),),
) -> PlacedOrder:
    return PlacedOrder(str(uuid.uuid4()), customer, lines, currency, total_minor)


def test_an_ordinary_order_is_approved_with_no_risk() -> None:
    assert domain.score(order()) == domain.Score(Verdict.APPROVE, 0, "no risk factors")


def test_deny_listed_customers_are_rejected() -> None:
    result = domain.score(order(customer="fraud-bob"))
    assert result == domain.Score(Verdict.REJECT, 100, "customer is on the deny list")
    # Only a prefix counts.
    assert domain.score(order(customer="bob-fraud-")).verdict is Verdict.APPROVE


@pytest.mark.parametrize(
    ("total_minor", "verdict"),
    [(200_000, Verdict.APPROVE), (200_001, Verdict.REJECT), (10_000_000, Verdict.REJECT)],
)
def test_the_total_limit_is_2000_eur(total_minor: int, verdict: Verdict) -> None:
    assert domain.score(order(total_minor=total_minor)).verdict is verdict


def test_a_rejection_for_the_total_says_why() -> None:
    result = domain.score(order(total_minor=250_050))
    assert result.risk_score == 90
    assert result.reason == "total 2500.50 EUR is above the 2000.00 EUR limit"


def test_currencies_without_a_limit_are_rejected() -> None:
    result = domain.score(order(currency="USD"))
    assert result.verdict is Verdict.REJECT
    assert "USD" in result.reason


def test_bulk_lines_raise_the_risk() -> None:
    one = domain.score(order(lines=(Line("a", 11), Line("b", 10))))
    assert one == domain.Score(Verdict.APPROVE, 30, "more than 10 units of a")
    three = domain.score(order(lines=(Line("a", 11), Line("b", 50), Line("c", 100))))
    assert three.verdict is Verdict.REJECT
    assert three.risk_score == 90
    assert three.reason == "high risk: more than 10 units of a, b, c"


def test_factors_add_up_and_cap_at_100() -> None:
    lines = tuple(Line(f"p{i}", 11) for i in range(25))
    result = domain.score(order(total_minor=150_000, lines=lines))
    assert result.risk_score == 100
    assert result.verdict is Verdict.REJECT
    assert "large total" in result.reason
    assert "more than 20 lines" in result.reason


def test_a_large_total_alone_is_approved() -> None:
    result = domain.score(order(total_minor=150_000))
    assert result == domain.Score(Verdict.APPROVE, 20, "large total")


def test_two_bulk_lines_and_a_large_total_reach_the_threshold() -> None:
    result = domain.score(order(total_minor=100_001, lines=(Line("a", 20), Line("b", 20))))
    assert (result.verdict, result.risk_score) == (Verdict.REJECT, 80)


def test_scoring_is_deterministic() -> None:
    placed = order(total_minor=123_456, lines=(Line("a", 12), Line("b", 3)))
    assert len({domain.score(placed) for _ in range(20)}) == 1


async def test_decide_stores_one_decision_and_one_event(decision_store: Any) -> None:
    placed = order(customer="fraud-x")
    decision = await domain.decide(decision_store, placed)
    assert decision is not None
    assert (decision.order_id, decision.verdict, decision.risk_score) == (
        placed.order_id,
        Verdict.REJECT,
        100,
    )
    assert decision_store.outbox == [decision]


async def test_a_redelivered_order_gets_no_second_decision(decision_store: Any) -> None:
    placed = order()
    first = await domain.decide(decision_store, placed)
    assert await domain.decide(decision_store, placed) is None
    assert decision_store.outbox == [first]


async def test_decide_all_decides_each_order_once_in_order(decision_store: Any) -> None:
    first, second, denied = order(), order(total_minor=150_000), order(customer="fraud-y")
    earlier = await domain.decide(decision_store, first)
    # A redelivered order and a second event for one order in the same call
    # get no second decision; the others are decided in their order.
    made = await domain.decide_all(decision_store, [first, second, denied, second])
    assert [decision.order_id for decision in made] == [second.order_id, denied.order_id]
    assert [(d.verdict, d.risk_score) for d in made] == [
        (Verdict.APPROVE, 20),
        (Verdict.REJECT, 100),
    ]
    assert decision_store.outbox == [earlier, *made]


async def test_decide_all_of_nothing_decides_nothing(decision_store: Any) -> None:
    assert await domain.decide_all(decision_store, []) == []
    assert decision_store.outbox == []
