"""The orders database: SQL through the kit's data layer, behind the domain's protocols."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from emporium.kit.db import Database, UnitOfWork
from emporium.kit.kafka import Causes
from emporium.kit.outbox import enqueue
from emporium.orders import domain, messages, reservations
from emporium.orders.topics import Topics

log = logging.getLogger(__name__)

_SELECT_ORDER = """
SELECT o.order_id::text AS order_id, o.customer_id, o.status, o.status_reason,
       o.currency_code, o.total_minor, o.created_at, o.updated_at,
       array_agg(l.product_id ORDER BY l.line_no) AS product_ids,
       array_agg(l.quantity ORDER BY l.line_no) AS quantities,
       array_agg(l.unit_price_minor ORDER BY l.line_no) AS unit_prices
FROM orders o
JOIN order_lines l ON l.order_id = o.order_id
"""

# The same columns, orders $1 (an array), their rows locked in id order (FOR
# UPDATE cannot lock an aggregate, so the lines are aggregated in a lateral
# subquery).
_SELECT_ORDERS_FOR_UPDATE = """
SELECT o.order_id::text AS order_id, o.customer_id, o.status, o.status_reason,
       o.currency_code, o.total_minor, o.created_at, o.updated_at,
       l.product_ids, l.quantities, l.unit_prices
FROM orders o
CROSS JOIN LATERAL (
    SELECT array_agg(product_id ORDER BY line_no) AS product_ids,
           array_agg(quantity ORDER BY line_no) AS quantities,
           array_agg(unit_price_minor ORDER BY line_no) AS unit_prices
    FROM order_lines WHERE order_id = o.order_id
) AS l
WHERE o.order_id = ANY($1::uuid[])
ORDER BY o.order_id
FOR UPDATE OF o
"""

# The order placed with an idempotency key ($1), and the request's fingerprint.
_SELECT_BY_KEY = (
    _SELECT_ORDER.replace("SELECT ", "SELECT k.request_fingerprint, ", 1)
    + "JOIN idempotency_keys k ON k.order_id = o.order_id "
    "WHERE k.idempotency_key = $1 GROUP BY o.order_id, k.request_fingerprint"
)


# The order's rows in one statement, each step only if the one before it
# happened:
# - settle its pending reservation (reservations.SETTLE): deleting the row
#   locks it until the transaction ends, so the sweeper (FOR UPDATE SKIP
#   LOCKED) cannot claim it meanwhile; none deleted means the sweeper claimed
#   it first, and the order must not be written;
# - claim the idempotency key: a concurrent transaction holding the same key
#   makes this wait for it; if it commits, nothing is inserted here;
# - the order and its lines (foreign keys are checked at the statement's end).
_PLACE_ORDER = f"""
WITH settled AS ({reservations.SETTLE}),
claimed AS (
    INSERT INTO idempotency_keys (idempotency_key, order_id, request_fingerprint, created_at)
    SELECT $9::text, order_id, $10::text, $7::timestamptz FROM settled
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING order_id
),
placed AS (
    INSERT INTO orders (order_id, customer_id, status, status_reason,
                        currency_code, total_minor, created_at, updated_at)
    SELECT order_id, $2::text, $3::text, $4::text, $5::text, $6::bigint,
           $7::timestamptz, $8::timestamptz
      FROM claimed
),
lines AS (
    INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_minor)
    SELECT claimed.order_id, line.*
      FROM claimed,
           unnest($11::smallint[], $12::text[], $13::integer[], $14::bigint[]) AS line
)
SELECT EXISTS (SELECT 1 FROM settled) AS settled, EXISTS (SELECT 1 FROM claimed) AS claimed
"""


def _order_from_row(row: Any) -> domain.Order:
    currency = row["currency_code"]
    lines = tuple(
        domain.OrderLine(product_id, quantity, domain.Money(currency, unit_price))
        for product_id, quantity, unit_price in zip(
            row["product_ids"], row["quantities"], row["unit_prices"], strict=True
        )
    )
    return domain.Order(
        order_id=row["order_id"],
        customer_id=row["customer_id"],
        lines=lines,
        total=domain.Money(currency, row["total_minor"]),
        status=domain.OrderStatus(row["status"]),
        status_reason=row["status_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class PostgresOrderRepository:
    """:class:`domain.OrderRepository` on the service's pool."""

    def __init__(self, database: Database, topics: Topics) -> None:
        self._db = database
        self._topics = topics

    async def get(self, order_id: str) -> domain.Order | None:
        row = await self._db.fetchrow(
            _SELECT_ORDER + "WHERE o.order_id = $1 GROUP BY o.order_id", order_id
        )
        return None if row is None else _order_from_row(row)

    async def find_by_idempotency_key(self, key: str) -> tuple[domain.Order, str] | None:
        row = await self._db.fetchrow(_SELECT_BY_KEY, key)
        return None if row is None else (_order_from_row(row), row["request_fingerprint"])

    async def add_placed_order(
        self,
        order: domain.Order,
        idempotency_key: str,
        fingerprint: str,
        event: domain.OrderPlacedEvent,
    ) -> None:
        async with self._db.unit_of_work() as connection:
            row = await connection.fetchrow(
                _PLACE_ORDER,
                order.order_id,
                order.customer_id,
                order.status.value,
                order.status_reason,
                order.total.currency_code,
                order.total.amount_minor,
                order.created_at,
                order.updated_at,
                idempotency_key,
                fingerprint,
                list(range(len(order.lines))),
                [line.product_id for line in order.lines],
                [line.quantity for line in order.lines],
                [line.unit_price.amount_minor for line in order.lines],
            )
            assert row is not None
            if not row["settled"]:
                raise domain.ReservationReleased(order.order_id)
            if not row["claimed"]:
                raise domain.IdempotencyKeyTaken(idempotency_key)
            await enqueue(
                connection,
                topic=self._topics.order_placed,
                key=order.order_id,
                message=messages.order_placed_to_wire(event),
                event_id=event.event_id,
            )

    async def hold_reservation(
        self, order_id: str, idempotency_key: str
    ) -> tuple[domain.Order, str] | None:
        # One statement for the two things every checkout asks first.
        row = await self._db.fetchrow(
            f"""
            WITH placed AS ({_SELECT_BY_KEY}), held AS ({reservations.HOLD_UNLESS})
            SELECT * FROM placed
            """,
            idempotency_key,
            order_id,
        )
        return None if row is None else (_order_from_row(row), row["request_fingerprint"])

    async def drop_reservation(self, order_id: str) -> None:
        async with self._db.connection() as connection:
            await reservations.drop(connection, order_id)

    async def claim_reservation(self, order_id: str) -> bool:
        async with self._db.connection() as connection:
            return await reservations.claim(connection, order_id)

    async def claim_stale_reservations(self, older_than_seconds: float, limit: int) -> list[str]:
        async with self._db.connection() as connection:
            return await reservations.claim_stale(connection, older_than_seconds, limit)


class PostgresOrderStatusStore:
    """:class:`domain.OrderStatusStore` on the connection of one consumer transaction.

    ``causes``: the consumed event each decision came from, by order id; the
    status change's outbox event joins that event's trace (see the kit's
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

    async def get_for_update(self, order_ids: Sequence[str]) -> dict[str, domain.Order]:
        rows = await self._connection.fetch(_SELECT_ORDERS_FOR_UPDATE, list(order_ids))
        return {row["order_id"]: _order_from_row(row) for row in rows}

    async def save_statuses(
        self, changes: Sequence[tuple[domain.Order, domain.OrderStatusChangedEvent]]
    ) -> None:
        if not changes:
            return
        await self._connection.execute(
            """
            UPDATE orders AS o
               SET status = c.status, status_reason = c.reason, updated_at = c.updated_at
              FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[])
                   AS c (order_id, status, reason, updated_at)
             WHERE o.order_id = c.order_id
            """,
            [order.order_id for order, _ in changes],
            [order.status.value for order, _ in changes],
            [order.status_reason for order, _ in changes],
            [order.updated_at for order, _ in changes],
        )
        for order, event in changes:
            with self._causes.traced(order.order_id):
                await enqueue(
                    self._connection,
                    topic=self._topics.order_status_changed,
                    key=order.order_id,
                    message=messages.status_changed_to_wire(event),
                    event_id=event.event_id,
                )
