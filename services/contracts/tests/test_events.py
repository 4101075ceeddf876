"""The event checks: what makes an event impossible, field by field."""

from __future__ import annotations

import uuid

import pytest

from emporium.common.v1 import money_pb2
from emporium.contracts.events import (
    fraud_decision_made_violations,
    order_placed_violations,
    order_status_changed_violations,
)
from emporium.events.v1 import fraud_events_pb2, order_events_pb2
from emporium.orders.v1 import orders_pb2

pytestmark = pytest.mark.unit


def _eur(amount: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="EUR", amount_minor=amount)


def placed(**changes: object) -> order_events_pb2.OrderPlaced:
    event = order_events_pb2.OrderPlaced(
        event_id=str(uuid.uuid4()),
        order_id=str(uuid.uuid4()),
        customer_id="alice",
        items=[
            orders_pb2.OrderItem(product_id="dripper", quantity=2, unit_price=_eur(1_999)),
            orders_pb2.OrderItem(product_id="filters", quantity=1, unit_price=_eur(500)),
        ],
        total=_eur(4_498),
    )
    for name, value in changes.items():
        if value is None:
            event.ClearField(name)
        elif isinstance(value, money_pb2.Money):
            getattr(event, name).CopyFrom(value)
        else:
            setattr(event, name, value)
    return event


def fields(violations: list) -> list[str]:  # type: ignore[type-arg]
    return [v.field for v in violations]


def test_an_order_placed_by_orders_is_possible() -> None:
    assert order_placed_violations(placed()) == []


def test_the_order_of_the_issue_negative_quantity_and_totals_is_refused() -> None:
    event = placed()
    event.items[0].quantity = -3
    event.items[1].unit_price.amount_minor = -500
    event.total.amount_minor = -6_497
    violations = order_placed_violations(event)
    assert fields(violations) == [
        "items[0].quantity",
        "items[1].unit_price.amount_minor",
        "total.amount_minor",
    ]
    assert violations[0].description == "must be between 1 and 100"
    assert violations[2].description == "must not be negative, got -6497"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"event_id": ""}, "event_id"),
        ({"order_id": ""}, "order_id"),
        ({"order_id": "42"}, "order_id"),
        ({"customer_id": ""}, "customer_id"),
        ({"customer_id": "c" * 65}, "customer_id"),
        ({"total": None}, "total"),
    ],
)
def test_missing_or_malformed_ids_are_refused(changes: dict[str, object], field: str) -> None:
    assert fields(order_placed_violations(placed(**changes))) == [field]


def test_lines_must_be_possible_too() -> None:
    event = placed()
    del event.items[:]
    assert fields(order_placed_violations(event)) == ["items"]
    event = placed()
    event.items[1].product_id = "dripper"
    event.items[0].ClearField("unit_price")
    assert fields(order_placed_violations(event)) == [
        "items[0].unit_price",
        "items[1].product_id",
    ]


def test_the_total_is_the_sum_of_the_lines_in_their_currency() -> None:
    wrong_sum = placed(total=_eur(1))
    assert [(v.field, v.description) for v in order_placed_violations(wrong_sum)] == [
        ("total.amount_minor", "must be the sum of the lines (4498), got 1")
    ]
    other_currency = placed(total=money_pb2.Money(currency_code="USD", amount_minor=4_498))
    assert fields(order_placed_violations(other_currency)) == ["total.currency_code"]
    lower_case = placed(total=money_pb2.Money(currency_code="eur", amount_minor=4_498))
    assert fields(order_placed_violations(lower_case)) == ["total.currency_code"]


def status_changed(**changes: object) -> order_events_pb2.OrderStatusChanged:
    event = order_events_pb2.OrderStatusChanged(
        event_id=str(uuid.uuid4()),
        order_id=str(uuid.uuid4()),
        previous_status=orders_pb2.ORDER_STATUS_PENDING,
        status=orders_pb2.ORDER_STATUS_REJECTED,
        reason="customer is on the deny list",
    )
    for name, value in changes.items():
        setattr(event, name, value)
    return event


def test_status_changes() -> None:
    assert order_status_changed_violations(status_changed()) == []
    assert fields(order_status_changed_violations(status_changed(order_id=""))) == ["order_id"]
    assert fields(order_status_changed_violations(status_changed(event_id=""))) == ["event_id"]
    unspecified = status_changed(status=orders_pb2.ORDER_STATUS_UNSPECIFIED)
    assert fields(order_status_changed_violations(unspecified)) == ["status"]


def decision(**changes: object) -> fraud_events_pb2.FraudDecisionMade:
    event = fraud_events_pb2.FraudDecisionMade(
        event_id=str(uuid.uuid4()),
        order_id=str(uuid.uuid4()),
        decision=fraud_events_pb2.FRAUD_DECISION_APPROVE,
        risk_score=20,
    )
    for name, value in changes.items():
        setattr(event, name, value)
    return event


def test_fraud_decisions() -> None:
    assert fraud_decision_made_violations(decision()) == []
    assert fields(fraud_decision_made_violations(decision(risk_score=-1))) == ["risk_score"]
    assert fields(fraud_decision_made_violations(decision(risk_score=101))) == ["risk_score"]
    assert fields(fraud_decision_made_violations(decision(order_id="x"))) == ["order_id"]
    assert fields(fraud_decision_made_violations(decision(decision=0))) == ["decision"]
