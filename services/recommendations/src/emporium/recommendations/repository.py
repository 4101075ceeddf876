"""The recommendations' SQL (through the kit's data layer), behind the protocols of the domain."""

from __future__ import annotations

from collections.abc import Sequence

from emporium.kit.db import Database, UnitOfWork
from emporium.recommendations.domain import Recommendation


class PostgresRecommendationRepository:
    """:class:`domain.RecommendationRepository` on the service's pool."""

    def __init__(self, database: Database) -> None:
        self._pool = database

    async def top_co_purchased(self, product_id: str, limit: int) -> list[Recommendation]:
        rows = await self._pool.fetch(
            "SELECT other_product_id, orders_count FROM co_purchases"
            " WHERE product_id = $1 ORDER BY orders_count DESC, other_product_id LIMIT $2",
            product_id,
            limit,
        )
        return [Recommendation(row["other_product_id"], row["orders_count"]) for row in rows]


class PostgresCoPurchaseLedger:
    """:class:`domain.CoPurchaseLedger` on the unit of work of one consumer transaction."""

    def __init__(self, conn: UnitOfWork) -> None:
        self._conn = conn

    async def mark_order_counted(self, order_id: str) -> bool:
        inserted = await self._conn.fetchval(
            "INSERT INTO counted_orders (order_id) VALUES ($1)"
            " ON CONFLICT DO NOTHING RETURNING true",
            order_id,
        )
        return bool(inserted)

    async def add_pairs(self, pairs: Sequence[tuple[str, str]]) -> None:
        # Rows are upserted in the pairs' (sorted) order, so two transactions
        # touching the same pairs lock them in the same order.
        await self._conn.execute(
            """
            INSERT INTO co_purchases (product_id, other_product_id, orders_count)
            SELECT p.product_id, p.other_product_id, 1
              FROM unnest($1::text[], $2::text[]) WITH ORDINALITY
                   AS p (product_id, other_product_id, position)
             ORDER BY p.position
            ON CONFLICT (product_id, other_product_id)
            DO UPDATE SET orders_count = co_purchases.orders_count + 1, updated_at = now()
            """,
            [a for a, _ in pairs],
            [b for _, b in pairs],
        )
