"""Checkout -> fraud decision latency at fixed open-loop rates, on the running system.

    python3 scripts/platformctl.py up        # the whole system on the local platform
    uv run python bench/decision_latency.py --rates 20,50,100 --seconds 20

For each rate, checkouts start on a fixed schedule (``rate`` per second)
whether or not earlier ones have finished. Each successful checkout's order
is then looked up in fraud's ``decisions`` table: the latency is the
decision's ``decided_at`` minus the checkout's scheduled start (the same
machine's clock), so it spans the gateway, orders' transaction and outbox,
the relay, Kafka, and fraud's consumer. Prints the checkouts' statuses, how
many were decided within ``--settle`` seconds after the last checkout, and
p50/p99/max of the decision latency, with the load average. Figures only:
nothing passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import emporium_platform  # noqa: E402


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def fraud_url() -> str:
    return emporium_platform.admin_url().rsplit("/", 1)[0] + "/fraud"


async def checkout(
    client: httpx.AsyncClient,
    product_id: str,
    started: dict[str, float],
    statuses: Counter[str],
) -> None:
    scheduled = time.time()
    try:
        response = await client.post(
            "/api/checkout",
            json={
                "customer_id": f"bench-{uuid.uuid4().hex[:8]}",
                "items": [{"product_id": product_id, "quantity": 1}],
            },
            headers={"Idempotency-Key": f"bench-{uuid.uuid4()}"},
        )
    except httpx.HTTPError as error:
        statuses[type(error).__name__] += 1
        return
    statuses[str(response.status_code)] += 1
    if response.status_code in (200, 201):
        started[response.json()["order"]["order_id"]] = scheduled


async def run_rate(base_url: str, rate: float, seconds: float, settle: float) -> None:
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(base_url=base_url, timeout=10, limits=limits) as client:
        products = (await client.get("/api/products", params={"page_size": 50})).json()["products"]
        in_stock = [p["product_id"] for p in products if p["stock_available"] > 100]
        if not in_stock:
            raise SystemExit("no product with more than 100 units in stock: reseed the catalog")
        started: dict[str, float] = {}
        statuses: Counter[str] = Counter()
        tasks = []
        total = int(rate * seconds)
        t0 = time.monotonic()
        for i in range(total):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            product = in_stock[i % len(in_stock)]
            tasks.append(asyncio.create_task(checkout(client, product, started, statuses)))
        await asyncio.gather(*tasks)
    deadline = time.monotonic() + settle
    decided: dict[str, float] = {}
    async with await psycopg.AsyncConnection.connect(fraud_url(), autocommit=True) as conn:
        while True:
            rows = await (
                await conn.execute(
                    "SELECT order_id::text, extract(epoch FROM decided_at)::float8"
                    " FROM decisions WHERE order_id::text = ANY(%s)",
                    (list(started),),
                )
            ).fetchall()
            decided = {order_id: at for order_id, at in rows}
            if len(decided) == len(started) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    latencies = [decided[o] - started[o] for o in decided]
    load = os.getloadavg()
    print(
        f"{rate:g} orders/s for {seconds:g} s: checkouts {dict(sorted(statuses.items()))};"
        f" decided {len(decided)}/{len(started)} within {settle:g} s after the last"
    )
    print(
        f"  checkout -> decision p50 {percentile(latencies, 0.5) * 1000:.0f} ms,"
        f" p99 {percentile(latencies, 0.99) * 1000:.0f} ms,"
        f" max {max(latencies, default=float('nan')) * 1000:.0f} ms;"
        f" load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://127.0.0.1:8080")
    parser.add_argument("--rates", default="20,50,100", help="checkouts per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=60.0)
    args = parser.parse_args()
    print("$ uv run python bench/decision_latency.py " + shlex.join(sys.argv[1:]))
    for rate in (float(r) for r in args.rates.split(",") if r):
        asyncio.run(run_rate(args.base_url, rate, args.seconds, args.settle))


if __name__ == "__main__":
    main()
