"""The catalog's SQL (the kit's data layer), behind the domain's protocols.

Concurrency: every stock change runs in one transaction that first takes a
transaction-scoped advisory lock on the order id (so two calls for one order
are serialized) and then locks the product rows it touches with
``SELECT ... FOR UPDATE`` in id order (so two orders sharing products never
deadlock). The ``stock_reserved <= stock_on_hand`` check constraint is the
last line of defence against overselling.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from emporium.catalog.domain import (
    Money,
    OrderReservation,
    Product,
    ProductStock,
    ReservationState,
    StockLine,
)
from emporium.kit.db import Database, UnitOfWork

_PRODUCT_COLUMNS = """
    id, name, description, category, price_minor, currency_code,
    stock_on_hand - stock_reserved AS stock_available
"""


def _product(row: Any) -> Product:
    return Product(
        product_id=row["id"],
        name=row["name"],
        description=row["description"],
        category=row["category"],
        price=Money(row["currency_code"], row["price_minor"]),
        stock_available=row["stock_available"],
    )


class PostgresStockLedger:
    """:class:`domain.StockLedger`: one order's reservations in a unit of work."""

    def __init__(self, conn: UnitOfWork, order_id: str) -> None:
        self._conn = conn
        self._order_id = order_id

    async def lock_order(self) -> None:
        await self._conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('catalog.stock:' || $1, 0))",
            self._order_id,
        )

    async def reservation(self) -> OrderReservation:
        # One round trip: whether the order was released, and its reserved lines
        # with their products' current prices (one row with NULL lines when it
        # has none).
        rows = await self._conn.fetch(
            """
            SELECT EXISTS (SELECT 1 FROM stock_releases WHERE order_id = $1) AS released,
                   r.product_id, r.quantity, p.price_minor, p.currency_code
              FROM (VALUES (1)) AS one (n)
              LEFT JOIN stock_reservations AS r ON r.order_id = $1 AND r.state = 'reserved'
              LEFT JOIN products AS p ON p.id = r.product_id
             ORDER BY r.product_id
            """,
            self._order_id,
        )
        if rows[0]["released"]:
            return OrderReservation(ReservationState.RELEASED)
        reserved = [row for row in rows if row["product_id"] is not None]
        if not reserved:
            return OrderReservation(ReservationState.NONE)
        return OrderReservation(
            ReservationState.RESERVED,
            tuple(StockLine(row["product_id"], row["quantity"]) for row in reserved),
            {
                row["product_id"]: Money(row["currency_code"], row["price_minor"])
                for row in reserved
            },
        )

    async def lock_stock(self, product_ids: Sequence[str]) -> dict[str, ProductStock]:
        rows = await self._conn.fetch(
            "SELECT id, stock_on_hand, stock_reserved, price_minor, currency_code FROM products"
            " WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
            list(product_ids),
        )
        return {
            row["id"]: ProductStock(
                row["stock_on_hand"],
                row["stock_reserved"],
                Money(row["currency_code"], row["price_minor"]),
            )
            for row in rows
        }

    async def reserve(self, lines: Sequence[StockLine]) -> None:
        # The stock and the order's reservation lines in one statement.
        await self._conn.execute(
            """
            WITH line AS (
                SELECT * FROM unnest($2::text[], $3::int[]) AS l (product_id, quantity)
            ), held AS (
                UPDATE products AS p
                   SET stock_reserved = p.stock_reserved + line.quantity, updated_at = now()
                  FROM line
                 WHERE p.id = line.product_id
            )
            INSERT INTO stock_reservations (order_id, product_id, quantity)
            SELECT $1, line.product_id, line.quantity FROM line
            """,
            self._order_id,
            [line.product_id for line in lines],
            [line.quantity for line in lines],
        )

    async def release(self) -> int:
        rows = await self._conn.fetch(
            "SELECT product_id, quantity FROM stock_reservations"
            " WHERE order_id = $1 AND state = 'reserved' ORDER BY product_id",
            self._order_id,
        )
        released = 0
        if rows:
            product_ids = [row["product_id"] for row in rows]
            quantities = [row["quantity"] for row in rows]
            # Same lock order as reservations: product rows by id.
            await self._conn.execute(
                "SELECT 1 FROM products WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
                product_ids,
            )
            await self._conn.execute(
                """
                UPDATE products AS p
                   SET stock_reserved = p.stock_reserved - l.quantity, updated_at = now()
                  FROM unnest($1::text[], $2::int[]) AS l (product_id, quantity)
                 WHERE p.id = l.product_id
                """,
                product_ids,
                quantities,
            )
            await self._conn.execute(
                "UPDATE stock_reservations SET state = 'released', released_at = now()"
                " WHERE order_id = $1 AND state = 'reserved'",
                self._order_id,
            )
            released = sum(quantities)
        await self._conn.execute(
            "INSERT INTO stock_releases (order_id) VALUES ($1) ON CONFLICT DO NOTHING",
            self._order_id,
        )
        return released


@asynccontextmanager
async def ledger_on(conn: UnitOfWork, order_id: str) -> AsyncIterator[PostgresStockLedger]:
    """A ledger inside a transaction the caller owns (a Kafka consumer's, for one)."""
    ledger = PostgresStockLedger(conn, order_id)
    await ledger.lock_order()
    yield ledger


@dataclass(frozen=True)
class SeedProduct:
    product_id: str
    name: str
    description: str
    category: str
    price_minor: int
    currency_code: str
    stock_on_hand: int


class PostgresCatalogRepository:
    """:class:`domain.CatalogRepository` on the service's pool."""

    def __init__(self, database: Database) -> None:
        self._pool = database

    async def get_product(self, product_id: str) -> Product | None:
        row = await self._pool.fetchrow(
            f"SELECT {_PRODUCT_COLUMNS} FROM products WHERE id = $1", product_id
        )
        return _product(row) if row else None

    async def list_products(self, after_id: str | None, limit: int) -> list[Product]:
        rows = await self._pool.fetch(
            f"SELECT {_PRODUCT_COLUMNS} FROM products"
            " WHERE $1::text IS NULL OR id > $1::text ORDER BY id LIMIT $2",
            after_id,
            limit,
        )
        return [_product(row) for row in rows]

    async def get_prices(self, product_ids: Sequence[str]) -> dict[str, Money]:
        rows = await self._pool.fetch(
            "SELECT id, price_minor, currency_code FROM products WHERE id = ANY($1::text[])",
            list(product_ids),
        )
        return {row["id"]: Money(row["currency_code"], row["price_minor"]) for row in rows}

    @asynccontextmanager
    async def stock_ledger(self, order_id: str) -> AsyncIterator[PostgresStockLedger]:
        async with self._pool.unit_of_work() as uow, ledger_on(uow, order_id) as ledger:
            yield ledger

    async def upsert_products(self, products: Sequence[SeedProduct]) -> None:
        """Creates or updates the descriptions and prices; existing stock is left alone."""
        async with self._pool.unit_of_work() as uow:
            await uow.executemany(
                """
                INSERT INTO products
                    (id, name, description, category, price_minor, currency_code, stock_on_hand)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (id) DO UPDATE
                   SET name = excluded.name,
                       description = excluded.description,
                       category = excluded.category,
                       price_minor = excluded.price_minor,
                       currency_code = excluded.currency_code,
                       updated_at = now()
                 WHERE (products.name, products.description, products.category,
                        products.price_minor, products.currency_code)
                       IS DISTINCT FROM
                       (excluded.name, excluded.description, excluded.category,
                        excluded.price_minor, excluded.currency_code)
                """,
                [
                    (
                        p.product_id,
                        p.name,
                        p.description,
                        p.category,
                        p.price_minor,
                        p.currency_code,
                        p.stock_on_hand,
                    )
                    for p in products
                ],
            )
