"""The fraud database: decisions and their outbox events, through the kit's data layer."""

from __future__ import annotations

from collections.abc import Sequence

from emporium.fraud import domain, messages
from emporium.fraud.topics import Topics
from emporium.kit.db import UnitOfWork
from emporium.kit.kafka import Causes
from emporium.kit.outbox import enqueue

# One statement for all the decisions of a batch, in order: an order that has
# a decision already, or a second one for an order earlier in the batch,
# inserts nothing and does not come back.
_INSERT_DECISIONS = """
    INSERT INTO decisions (order_id, event_id, customer_id, currency_code,
                           total_minor, verdict, risk_score, reason, decided_at)
    SELECT d.order_id, d.event_id, d.customer_id, d.currency_code,
           d.total_minor, d.verdict, d.risk_score, d.reason, d.decided_at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                $6::text[], $7::int[], $8::text[], $9::timestamptz[])
         WITH ORDINALITY AS d(order_id, event_id, customer_id, currency_code,
                              total_minor, verdict, risk_score, reason, decided_at, n)
    ORDER BY d.n
    ON CONFLICT DO NOTHING
    RETURNING event_id
"""


class PostgresDecisionStore:
    """:class:`domain.DecisionStore` on the connection of one consumer transaction.

    ``causes``: the consumed event each order came from, by order id; the
    decision's outbox event joins that event's trace (see the kit's
    ``traced``).
    """

    def __init__(
        self,
        connection: UnitOfWork,
        topics: Topics,
        causes: Causes | None = None,
    ) -> None:
        self._connection = connection
        self._topics = topics
        self._causes = causes or Causes()

    async def add_decisions(
        self, decided: Sequence[tuple[domain.PlacedOrder, domain.Decision]]
    ) -> set[str]:
        if not decided:
            return set()
        rows = await self._connection.fetch(
            _INSERT_DECISIONS,
            [order.order_id for order, _ in decided],
            [decision.event_id for _, decision in decided],
            [order.customer_id for order, _ in decided],
            [order.currency_code for order, _ in decided],
            [order.total_minor for order, _ in decided],
            [decision.verdict.value for _, decision in decided],
            [decision.risk_score for _, decision in decided],
            [decision.reason for _, decision in decided],
            [decision.decided_at for _, decision in decided],
        )
        stored = {row["event_id"] for row in rows}
        for order, decision in decided:
            if decision.event_id not in stored:
                continue
            with self._causes.traced(order.order_id):
                await enqueue(
                    self._connection,
                    topic=self._topics.fraud_decision_made,
                    key=order.order_id,
                    message=messages.decision_to_wire(decision),
                    event_id=decision.event_id,
                )
        return stored
