"""Reserved vs ordered units after an overload of checkouts (no stock may leak).

    python3 scripts/platformctl.py up
    uv run python bench/reservations.py --rate 100 --seconds 20

Sends checkouts through the gateway at a fixed rate, whether or not earlier
ones have answered (an open-loop load, so an overloaded system sees the
whole rate), one unit of an in-stock product each. Then it compares, for
the reservations made during the run, the units the catalog still holds
with the units of the orders that were stored and not rejected. Checkouts
that failed after their stock was reserved must end up holding nothing:
orders releases their stock at once, or its reservation sweeper does after
the hold (RESERVATION_HOLD_SECONDS, 30 s). Prints the figures right after the
run and once they settle; nothing passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from emporium.kit.db import Database

ROOT = Path(__file__).resolve().parents[1]


def database_url(service: str) -> str:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "platformctl.py"),
            "env",
            service,
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    url: str = json.loads(out)["DATABASE_URL"]
    return url


async def overload(
    base_url: str, rate: float, seconds: float, customer: str
) -> collections.Counter[str]:
    outcomes: collections.Counter[str] = collections.Counter()
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=base_url, timeout=10, limits=limits) as client:
        products = (await client.get("/api/products", params={"page_size": 50})).json()["products"]
        in_stock = [p["product_id"] for p in products if p["stock_available"] > 100]

        async def checkout(i: int) -> None:
            try:
                response = await client.post(
                    "/api/checkout",
                    json={
                        "customer_id": customer,
                        "items": [{"product_id": in_stock[i % len(in_stock)], "quantity": 1}],
                    },
                    headers={"Idempotency-Key": f"bench-{uuid.uuid4()}"},
                )
                outcomes[str(response.status_code)] += 1
            except httpx.HTTPError as error:
                outcomes[type(error).__name__] += 1

        tasks = []
        started = time.monotonic()
        for i in range(int(rate * seconds)):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(checkout(i)))
        await asyncio.gather(*tasks)
    return outcomes


async def _open(url: str) -> Database:
    database = Database(url, application_name="bench", min_size=1, max_size=1)
    await database.open(wait=True)
    return database


async def figures(orders_db: str, catalog_db: str, since: Any, customer: str) -> dict[str, int]:
    orders = await _open(orders_db)
    catalog = await _open(catalog_db)
    try:
        stored = await orders.fetch(
            "SELECT o.order_id::text AS order_id, o.status, sum(l.quantity) AS units"
            " FROM orders o JOIN order_lines l USING (order_id)"
            " WHERE o.customer_id = $1 GROUP BY o.order_id",
            customer,
        )
        pending = await orders.fetchval("SELECT count(*) FROM pending_reservations")
        held = await catalog.fetch(
            "SELECT order_id, sum(quantity) AS units FROM stock_reservations"
            " WHERE state = 'reserved' AND created_at >= $1 GROUP BY order_id",
            since,
        )
    finally:
        await orders.close()
        await catalog.close()
    stored_ids = {row["order_id"] for row in stored}
    live = {row["order_id"]: row["units"] for row in stored if row["status"] != "REJECTED"}
    held_by = {row["order_id"]: row["units"] for row in held}
    return {
        "orders stored": len(stored),
        "units ordered (not rejected)": sum(live.values()),
        "units held for them": sum(held_by.get(order_id, 0) for order_id in live),
        "units held for rejected orders": sum(
            units for order_id, units in held_by.items() if order_id in stored_ids - set(live)
        ),
        "units held for orders never stored": sum(
            units for order_id, units in held_by.items() if order_id not in stored_ids
        ),
        "pending reservations in orders": int(pending),
    }


def show(title: str, values: dict[str, int]) -> None:
    print(title)
    for name, value in values.items():
        print(f"  {name:<34} {value}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://127.0.0.1:8080")
    parser.add_argument("--rate", type=float, default=100, help="checkouts per second")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--settle-seconds", type=float, default=90)
    args = parser.parse_args()
    orders_db, catalog_db = database_url("orders"), database_url("catalog")
    customer = f"bench-reservations-{uuid.uuid4().hex[:8]}"
    catalog = await _open(catalog_db)
    since = await catalog.fetchval("SELECT now()")
    await catalog.close()

    started = time.monotonic()
    outcomes = await overload(args.base_url, args.rate, args.seconds, customer)
    took = time.monotonic() - started
    sent = sum(outcomes.values())
    print(
        f"{sent} checkouts at {args.rate:g}/s for {args.seconds:g} s"
        f" (all answered after {took:.1f} s)"
    )
    print("  answers: " + ", ".join(f"{code} x{n}" for code, n in sorted(outcomes.items())))
    show("right after the run:", await figures(orders_db, catalog_db, since, customer))

    settling = time.monotonic()
    deadline = settling + args.settle_seconds
    while True:
        now = await figures(orders_db, catalog_db, since, customer)
        settled = (
            now["units held for orders never stored"] == 0
            and now["units held for rejected orders"] == 0
            and now["pending reservations in orders"] == 0
        )
        if settled or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    waited = time.monotonic() - settling
    show(f"{'settled' if settled else 'NOT settled'} after {waited:.0f} s more:", now)


if __name__ == "__main__":
    asyncio.run(main())
