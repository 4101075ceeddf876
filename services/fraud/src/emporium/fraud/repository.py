"""The fraud database: decisions and their outbox events, through the kit's data layer."""

from __future__ import annotations

from emporium.fraud import domain, messages
from emporium.fraud.topics import Topics
from emporium.kit.db import UnitOfWork
from emporium.kit.outbox import enqueue


class PostgresDecisionStore:
    """:class:`domain.DecisionStore` on the connection of one consumer transaction."""

    def __init__(self, connection: UnitOfWork, topics: Topics) -> None:
        self._connection = connection
        self._topics = topics

    async def add_decision(self, order: domain.PlacedOrder, decision: domain.Decision) -> bool:
        stored = await self._connection.fetchval(
            """
            INSERT INTO decisions (order_id, event_id, customer_id, currency_code,
                                         total_minor, verdict, risk_score, reason, decided_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (order_id) DO NOTHING
            RETURNING true
            """,
            order.order_id,
            decision.event_id,
            order.customer_id,
            order.currency_code,
            order.total_minor,
            decision.verdict.value,
            decision.risk_score,
            decision.reason,
            decision.decided_at,
        )
        if not stored:
            return False
        await enqueue(
            self._connection,
            topic=self._topics.fraud_decision_made,
            key=order.order_id,
            message=messages.decision_to_wire(decision),
            event_id=decision.event_id,
        )
        return True
