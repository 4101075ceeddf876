"""Recommendations: "bought together" counts learnt from placed orders.

Nothing here knows gRPC, Kafka or SQL. A product's recommendations are the
products that appeared in the most orders together with it (ties by id), and
nothing is invented: a product nobody bought yet has no recommendations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import permutations
from typing import Protocol

from emporium.contracts import limits
from emporium.kit.errors import FieldViolation, InvalidArgument

# Product ids are checked against the contracts' rule only: this service does
# not ask the catalog whether a product exists (it would make the catalog
# critical here).
DEFAULT_MAX_RESULTS = limits.DEFAULT_RECOMMENDATIONS
MAX_RESULTS = limits.RECOMMENDATIONS.maximum


@dataclass(frozen=True)
class Recommendation:
    product_id: str
    score: int


@dataclass(frozen=True)
class PlacedOrder:
    """A placed order as the recommendations see it: which products were bought together."""

    order_id: str
    product_ids: tuple[str, ...]


class RecommendationRepository(Protocol):
    async def top_co_purchased(self, product_id: str, limit: int) -> list[Recommendation]:
        """By count descending, then product id."""
        ...


class CoPurchaseLedger(Protocol):
    """Writes inside the transaction of the event being consumed."""

    async def mark_order_counted(self, order_id: str) -> bool:
        """Records the order; False when it had been counted before."""
        ...

    async def add_pairs(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Adds one to the count of every (product, other product) pair."""
        ...


def _product_id_violation(value: str, field: str) -> FieldViolation | None:
    problem = limits.PRODUCT_ID.problem(value)
    return FieldViolation(field, problem) if problem else None


def validate_request(product_id: str, max_results: int) -> int:
    """Returns the number of results to give."""
    violations = []
    if violation := _product_id_violation(product_id, "product_id"):
        violations.append(violation)
    if max_results and (problem := limits.RECOMMENDATIONS.problem(max_results)):
        violations.append(FieldViolation("max_results", f"{problem}, or 0 for the default"))
    if violations:
        raise InvalidArgument(violations)
    return max_results or DEFAULT_MAX_RESULTS


def co_purchase_pairs(product_ids: Sequence[str]) -> list[tuple[str, str]]:
    """Every ordered pair of distinct products, in a stable order (both directions)."""
    return list(permutations(sorted(set(product_ids)), 2))


async def record_order(ledger: CoPurchaseLedger, order_id: str, product_ids: Sequence[str]) -> int:
    """Counts one placed order; returns the number of pair counts incremented.

    Raises InvalidArgument for an event that cannot be right (no order id, a
    malformed product id): the consumer sends it to the dead-letter topic.
    """
    violations = [] if order_id else [FieldViolation("order_id", "required")]
    violations += [
        violation
        for index, product_id in enumerate(product_ids)
        if (violation := _product_id_violation(product_id, f"items[{index}].product_id"))
    ]
    if violations:
        raise InvalidArgument(violations)
    pairs = co_purchase_pairs(product_ids)
    if not pairs or not await ledger.mark_order_counted(order_id):
        return 0
    await ledger.add_pairs(pairs)
    return len(pairs)


class Recommendations:
    def __init__(self, repository: RecommendationRepository) -> None:
        self._repository = repository

    async def list_recommendations(self, product_id: str, max_results: int) -> list[Recommendation]:
        limit = validate_request(product_id, max_results)
        return await self._repository.top_co_purchased(product_id, limit)
