"""The freshness SLI: orders observes how long an order waited for its fraud decision."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from emporium.orders import domain
from emporium.orders.consumers import TimedStatusStore

PLACED = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


class FakeStore:
    def __init__(self, order: domain.Order) -> None:
        self.order = order
        self.saved: list[domain.OrderStatusChangedEvent] = []

    async def get_for_update(self, order_ids: Sequence[str]) -> dict[str, domain.Order]:
        return {self.order.order_id: self.order} if self.order.order_id in order_ids else {}

    async def save_statuses(
        self, changes: Sequence[tuple[domain.Order, domain.OrderStatusChangedEvent]]
    ) -> None:
        for order, event in changes:
            self.order = order
            self.saved.append(event)


def delay_count(decision: str, le: str) -> float:
    value = REGISTRY.get_sample_value(
        "emporium_order_decision_delay_seconds_bucket", {"decision": decision, "le": le}
    )
    return value or 0.0


@pytest.mark.unit
@pytest.mark.parametrize(
    ("verdict", "label"),
    [(domain.FraudVerdict.APPROVE, "approved"), (domain.FraudVerdict.REJECT, "rejected")],
)
async def test_applying_a_decision_observes_the_delay_since_the_order_was_placed(
    verdict: domain.FraudVerdict, label: str
) -> None:
    order = domain.Order(
        order_id="o-1",
        customer_id="c-1",
        lines=(),
        total=domain.Money("EUR", 100),
        status=domain.OrderStatus.PENDING,
        status_reason="",
        created_at=PLACED,
        updated_at=PLACED,
    )
    store = FakeStore(order)
    within_5s, within_10s = delay_count(label, "5.0"), delay_count(label, "10.0")
    decision = domain.FraudDecision("o-1", verdict, risk_score=10, reason="")
    await domain.apply_fraud_decision(
        TimedStatusStore(store), decision, clock=lambda: PLACED + timedelta(seconds=7)
    )
    assert store.saved, "the decision was applied"
    # 7 s: inside the 10 s bucket, not inside the 5 s one.
    assert delay_count(label, "10.0") == within_10s + 1
    assert delay_count(label, "5.0") == within_5s
