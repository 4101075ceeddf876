"""What makes an event possible: the checks every consumer applies before acting on one.

Events are validated like requests, with the same limits: an
``OrderPlaced`` with a negative quantity, a negative or inconsistent total or
a missing id cannot come from orders, so no consumer scores, counts or applies
it. A consumer turns the violations into its kit's poison-message error, and
the event goes to the dead-letter topic with them as the reason.
"""

from __future__ import annotations

from emporium.common.v1 import money_pb2
from emporium.contracts import limits
from emporium.contracts.limits import Violation
from emporium.events.v1 import fraud_events_pb2, order_events_pb2
from emporium.orders.v1 import orders_pb2

_KNOWN_STATUSES = frozenset(
    {
        orders_pb2.ORDER_STATUS_PENDING,
        orders_pb2.ORDER_STATUS_APPROVED,
        orders_pb2.ORDER_STATUS_REJECTED,
    }
)
_KNOWN_DECISIONS = frozenset(
    {fraud_events_pb2.FRAUD_DECISION_APPROVE, fraud_events_pb2.FRAUD_DECISION_REJECT}
)


def order_placed_violations(event: order_events_pb2.OrderPlaced) -> list[Violation]:
    """Everything wrong with an ``orders.order-placed.v1`` event (empty when it is possible)."""
    found: list[Violation] = []
    _check(found, "event_id", None if event.event_id else "is required")
    _check(found, "order_id", limits.ORDER_ID.problem(event.order_id))
    _check(found, "customer_id", limits.CUSTOMER_ID.problem(event.customer_id))
    _check(found, "items", _count_problem(limits.ORDER_ITEMS, len(event.items), "items"))
    seen: set[str] = set()
    line_currencies: set[str] = set()
    line_sum = 0
    for index, item in enumerate(event.items[: limits.ORDER_ITEMS.maximum]):
        path = f"items[{index}]"
        product_problem = limits.PRODUCT_ID.problem(item.product_id)
        if product_problem is None and item.product_id in seen:
            product_problem = "appears more than once"
        seen.add(item.product_id)
        _check(found, f"{path}.product_id", product_problem)
        _check(found, f"{path}.quantity", limits.QUANTITY.problem(item.quantity))
        if not item.HasField("unit_price"):
            _check(found, f"{path}.unit_price", "is required")
            continue
        _money(found, f"{path}.unit_price", item.unit_price)
        line_currencies.add(item.unit_price.currency_code)
        line_sum += item.unit_price.amount_minor * item.quantity
    if not event.HasField("total"):
        _check(found, "total", "is required")
    else:
        _money(found, "total", event.total)
        if not found:
            if line_currencies != {event.total.currency_code}:
                _check(found, "total.currency_code", "must be the currency of every line")
            elif event.total.amount_minor != line_sum:
                _check(
                    found,
                    "total.amount_minor",
                    f"must be the sum of the lines ({line_sum}), got {event.total.amount_minor}",
                )
    return found


def order_status_changed_violations(
    event: order_events_pb2.OrderStatusChanged,
) -> list[Violation]:
    """Everything wrong with an ``orders.order-status-changed.v1`` event."""
    found: list[Violation] = []
    _check(found, "event_id", None if event.event_id else "is required")
    _check(found, "order_id", limits.ORDER_ID.problem(event.order_id))
    for name, status in (("previous_status", event.previous_status), ("status", event.status)):
        if status not in _KNOWN_STATUSES:
            _check(found, name, f"must be PENDING, APPROVED or REJECTED, got {status}")
    return found


def fraud_decision_made_violations(
    event: fraud_events_pb2.FraudDecisionMade,
) -> list[Violation]:
    """Everything wrong with a ``fraud.decision-made.v1`` event."""
    found: list[Violation] = []
    _check(found, "event_id", None if event.event_id else "is required")
    _check(found, "order_id", limits.ORDER_ID.problem(event.order_id))
    if event.decision not in _KNOWN_DECISIONS:
        _check(found, "decision", f"must be APPROVE or REJECT, got {event.decision}")
    _check(found, "risk_score", limits.RISK_SCORE.problem(event.risk_score))
    return found


def _money(found: list[Violation], path: str, money: money_pb2.Money) -> None:
    _check(found, f"{path}.currency_code", limits.CURRENCY_CODE.problem(money.currency_code))
    amount = money.amount_minor
    _check(
        found,
        f"{path}.amount_minor",
        f"must not be negative, got {amount}" if amount < 0 else None,
    )


def _count_problem(rule: limits.Count, count: int, what: str) -> str | None:
    if rule.problem(count) is None:
        return None
    return f"must have {rule.rule()} {what}, got {count}"


def _check(found: list[Violation], field: str, problem: str | None) -> None:
    if problem is not None:
        found.append(Violation(field, problem))
