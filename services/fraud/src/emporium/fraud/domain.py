"""Fraud scoring: plain, deterministic rules and the decision use case.

The rules (documented in docs/decisions/orders-fraud.md):

* a customer id starting with ``fraud-`` is on the deny list: score 100,
  reject. This is the demo hook that lets journeys exercise a rejection;
* a total above 2000.00 EUR (or any currency without a configured limit):
  score 90, reject;
* otherwise the score adds up risk factors, capped at 100:

  - +30 for each line with more than 10 units of one product (bulk buying);
  - +20 when the total is above 1000.00 EUR;
  - +10 when the order has more than 20 lines;

  and the order is rejected when the score reaches 70.

The same order always gets the same score and decision.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

log = logging.getLogger(__name__)

DENY_LIST_PREFIX = "fraud-"
#: Highest total accepted without review, per currency, in minor units.
TOTAL_LIMITS_MINOR = {"EUR": 200_000}
#: Above this share of the limit the order is "large" (+20).
LARGE_ORDER_SHARE = 0.5
BULK_QUANTITY = 10
BULK_POINTS = 30
LARGE_ORDER_POINTS = 20
MANY_LINES = 20
MANY_LINES_POINTS = 10
REJECT_FROM_SCORE = 70


class Verdict(enum.Enum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"


@dataclass(frozen=True)
class Line:
    product_id: str
    quantity: int


@dataclass(frozen=True)
class PlacedOrder:
    """What fraud needs of an ``OrderPlaced`` event."""

    order_id: str
    customer_id: str
    lines: tuple[Line, ...]
    currency_code: str
    total_minor: int


@dataclass(frozen=True)
class Score:
    verdict: Verdict
    risk_score: int
    reason: str


@dataclass(frozen=True)
class Decision:
    """A stored decision; also what goes to ``fraud.decision-made.v1``."""

    event_id: str
    order_id: str
    verdict: Verdict
    risk_score: int
    reason: str
    decided_at: datetime


def _format_minor(amount_minor: int, currency: str) -> str:
    return f"{amount_minor // 100}.{amount_minor % 100:02d} {currency}"


def score(order: PlacedOrder) -> Score:
    """The deterministic rules above."""
    if order.customer_id.startswith(DENY_LIST_PREFIX):
        return Score(Verdict.REJECT, 100, "customer is on the deny list")
    limit = TOTAL_LIMITS_MINOR.get(order.currency_code)
    if limit is None:
        return Score(
            Verdict.REJECT, 90, f"no limit configured for currency {order.currency_code!r}"
        )
    if order.total_minor > limit:
        return Score(
            Verdict.REJECT,
            90,
            f"total {_format_minor(order.total_minor, order.currency_code)} is above the "
            f"{_format_minor(limit, order.currency_code)} limit",
        )
    points = 0
    factors: list[str] = []
    bulk = [line.product_id for line in order.lines if line.quantity > BULK_QUANTITY]
    if bulk:
        points += BULK_POINTS * len(bulk)
        factors.append(f"more than {BULK_QUANTITY} units of {', '.join(bulk)}")
    if order.total_minor > limit * LARGE_ORDER_SHARE:
        points += LARGE_ORDER_POINTS
        factors.append("large total")
    if len(order.lines) > MANY_LINES:
        points += MANY_LINES_POINTS
        factors.append(f"more than {MANY_LINES} lines")
    points = min(points, 100)
    if points >= REJECT_FROM_SCORE:
        return Score(Verdict.REJECT, points, "high risk: " + "; ".join(factors))
    return Score(Verdict.APPROVE, points, "; ".join(factors) or "no risk factors")


class DecisionStore(Protocol):
    """The writes of one consumer transaction."""

    async def add_decisions(self, decided: Sequence[tuple[PlacedOrder, Decision]]) -> set[str]:
        """Stores the decisions and enqueues their events, in order.

        An order that already has a decision (stored before, or earlier in
        ``decided``) gets no second one. Returns the event ids of the
        decisions stored now.
        """
        ...


Clock = Callable[[], datetime]
IdFactory = Callable[[], str]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def _no_context(order_id: str) -> AbstractContextManager[None]:
    return nullcontext()


async def decide_all(
    store: DecisionStore,
    orders: Sequence[PlacedOrder],
    clock: Clock = utc_now,
    new_id: IdFactory = new_id,
    context_of: Callable[[str], AbstractContextManager[None]] = _no_context,
) -> list[Decision]:
    """Scores each order once, in order; returns the decisions made now.

    A re-delivered order (or a second event for an order in the same call)
    gets no second decision. ``context_of(order_id)`` is what each order's log
    lines are written in: the consumer passes the trace of the event the order
    came from, so a batch's lines carry their own orders' trace ids.
    """
    decided = [
        (
            order,
            Decision(
                event_id=new_id(),
                order_id=order.order_id,
                verdict=result.verdict,
                risk_score=result.risk_score,
                reason=result.reason,
                decided_at=clock(),
            ),
        )
        for order in orders
        for result in (score(order),)
    ]
    stored = await store.add_decisions(decided)
    made: list[Decision] = []
    for order, decision in decided:
        with context_of(order.order_id):
            if decision.event_id not in stored:
                log.info("order already decided; event ignored", extra={"order_id": order.order_id})
                continue
            made.append(decision)
            log.info(
                "fraud decision made",
                extra={
                    "order_id": order.order_id,
                    "verdict": decision.verdict.value,
                    "risk_score": decision.risk_score,
                },
            )
    return made


async def decide(
    store: DecisionStore,
    order: PlacedOrder,
    clock: Clock = utc_now,
    new_id: IdFactory = new_id,
) -> Decision | None:
    """Scores an order once; a re-delivered order gets no second decision."""
    made = await decide_all(store, [order], clock, new_id)
    return made[0] if made else None
