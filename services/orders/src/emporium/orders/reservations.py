"""SQL of the pending-reservation log (migration 0002), kept apart from the order writes.

See :class:`emporium.orders.domain.OrderRepository` for what each function
promises and docs/decisions/orders-fraud.md for why the log lives here.
"""

from __future__ import annotations

from emporium.kit.db import Executor

#: The hold of order ``$2``: a statement of its own, committed, recording that
#: stock is about to be reserved; unless ``placed`` (a CTE of the statement
#: it goes into) found the order of the checkout's idempotency key.
HOLD_UNLESS = (
    "INSERT INTO pending_reservations (order_id)"
    " SELECT $2::uuid WHERE NOT EXISTS (SELECT 1 FROM placed)"
)


async def drop(connection: Executor, order_id: str) -> None:
    """Forgets a reservation that was released (or never made)."""
    await connection.execute("DELETE FROM pending_reservations WHERE order_id = $1", order_id)


#: Inside the order's transaction (a CTE of the statement that writes it):
#: settles ``$1``'s reservation if it is still pending, returning its id.
#: Deleting the row locks it until the transaction ends, so the sweeper
#: (``FOR UPDATE SKIP LOCKED``) cannot claim it meanwhile; no row means the
#: sweeper claimed it first and the order must not commit.
SETTLE = (
    "DELETE FROM pending_reservations WHERE order_id = $1::uuid AND state = 'pending'"
    " RETURNING order_id"
)


async def claim(connection: Executor, order_id: str) -> bool:
    """Claims one checkout's pending reservation after its commit failed.

    True when it was still pending: the order did not commit (its commit
    would have deleted the row), so its stock may be released. False when the
    order committed after all (the failure was only the acknowledgement) or
    the sweeper has it.
    """
    claimed = await connection.fetchval(
        "UPDATE pending_reservations SET state = 'releasing', claimed_at = now()"
        " WHERE order_id = $1 AND state = 'pending' RETURNING true",
        order_id,
    )
    return bool(claimed)


async def claim_stale(connection: Executor, older_than_seconds: float, limit: int) -> list[str]:
    """Marks pending reservations older than the hold 'releasing' and returns them.

    Reservations already 'releasing' (a release that failed before) come back
    at once. Rows locked by a committing checkout are skipped.
    """
    rows = await connection.fetch(
        """
        UPDATE pending_reservations AS p
           SET state = 'releasing', claimed_at = now()
         WHERE p.order_id IN (
                SELECT order_id FROM pending_reservations
                 WHERE state = 'releasing'
                    OR created_at < now() - make_interval(secs => $1::float8)
                 ORDER BY created_at
                 LIMIT $2
                   FOR UPDATE SKIP LOCKED)
        RETURNING p.order_id::text AS order_id
        """,
        older_than_seconds,
        limit,
    )
    return [row["order_id"] for row in rows]


async def count(connection: Executor) -> int:
    """Reservations not settled yet (for /healthz and the benchmark)."""
    return int(await connection.fetchval("SELECT count(*) FROM pending_reservations"))
