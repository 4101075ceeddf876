"""Checkout -> fraud decision latency at fixed open-loop rates, on the running system.

    python3 scripts/platformctl.py up        # the whole system on the local platform
    uv run python bench/decision_latency.py --rates 20,50,100 --seconds 20

For each rate, after unmeasured warm-up checkouts (until 10 in a row
succeed: pools open, breakers closed), checkouts start on a fixed schedule
(``rate`` per second) whether or not earlier ones have finished. Each successful checkout's order
is then looked up in fraud's ``decisions`` table: the latency is the
decision's ``decided_at`` minus the checkout's scheduled start (the same
machine's clock), so it spans the gateway, orders' transaction and outbox,
the relay, Kafka, and fraud's consumer. Prints the checkouts' statuses, how
many were decided within ``--settle`` seconds after the last checkout, and
p50/p99/max of the decision latency, with the load average; then its two
parts: the checkout request (scheduled start to its 201) and the event path
(the order's ``created_at`` in orders' database to the decision), and how
long orders' consumer took to apply the decision (the decision to the order's
``updated_at`` once its status is no longer PENDING).

Last, the CPU each process of the system used per decided checkout (from
/proc, from the first scheduled checkout until the last decision, so the
event path's work counts), their sum, and the rate that sum allows on this
machine's cores if nothing else ran (cores / CPU per checkout): above that
rate queues can only grow. With two or more rates the system kept up with
(every checkout answered 201 and was decided, at 90% of the rate or more),
a last line gives what one more checkout a second costs (the slope between
the lowest and the highest such rate), the idle system's CPU (measured for
5 s before the first rate), and the cores 100 checkouts/s need on that line.
Figures only: nothing passes or fails.
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
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import emporium_platform  # noqa: E402
from load import cpu_snapshot, cpu_used  # noqa: E402


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def database_url(name: str) -> str:
    """The superuser's DSN for one service's database on the local platform."""
    return emporium_platform.admin_url().rsplit("/", 1)[0] + "/" + name


async def top_up_stock(product_ids: list[str], units: int) -> None:
    """Gives each product at least ``units`` available units, so no checkout is refused for stock.

    Approved orders consume stock: 20, 50 and 100 orders/s for 20 s are more
    units than the demo catalog holds.
    """
    async with await psycopg.AsyncConnection.connect(
        database_url("catalog"), autocommit=True
    ) as conn:
        await conn.execute(
            "UPDATE products SET stock_on_hand = GREATEST(stock_on_hand, stock_reserved + %s)"
            " WHERE id = ANY(%s)",
            (units, product_ids),
        )


async def checkout(
    client: httpx.AsyncClient,
    product_id: str,
    started: dict[str, float],
    statuses: Counter[str],
    scheduled: float | None = None,
    durations: list[float] | None = None,
) -> None:
    scheduled = scheduled or time.time()
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
        if durations is not None:
            durations.append(time.time() - scheduled)


async def list_products(client: httpx.AsyncClient, within: float = 60.0) -> list[dict[str, Any]]:
    """The catalog's products through the gateway, waiting while it answers with an error.

    Right after a heavy rate, the gateway may still shed load or have a
    breaker open.
    """
    deadline = time.monotonic() + within
    while True:
        try:
            response = await client.get("/api/products", params={"page_size": 50})
            if response.status_code == 200:
                products: list[dict[str, Any]] = response.json()["products"]
                return products
            problem = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as error:
            problem = f"{type(error).__name__}: {error}"
        if time.monotonic() > deadline:
            raise SystemExit(f"cannot list the products: {problem}")
        await asyncio.sleep(1.0)


async def warm_up(client: httpx.AsyncClient, product_id: str, within: float = 60.0) -> None:
    """Unmeasured checkouts, one at a time, until 10 in a row succeed.

    Connection pools and channels are opened, and breakers a previous rate
    opened are closed again, before the schedule starts.
    """
    deadline = time.monotonic() + within
    in_a_row = 0
    while in_a_row < 10:
        if time.monotonic() > deadline:
            raise SystemExit(f"warm-up: checkouts still fail after {within:g} s")
        statuses: Counter[str] = Counter()
        await checkout(client, product_id, {}, statuses)
        if "201" in statuses or "200" in statuses:
            in_a_row += 1
        else:
            in_a_row = 0
            await asyncio.sleep(1.0)


async def run_rate(
    base_url: str, rate: float, seconds: float, settle: float
) -> tuple[float, float] | None:
    """Runs one rate and prints its figures; returns (decisions/s, cores used) over its window."""
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(base_url=base_url, timeout=10, limits=limits) as client:
        products = await list_products(client)
        # Products in stock (the demo's sold-out product stays sold out); their
        # stock is topped up below, so a previous rate never empties them.
        in_stock = [p["product_id"] for p in products if p["stock_available"] > 0]
        if not in_stock:
            raise SystemExit("no product in stock: reseed the catalog")
        total = int(rate * seconds)
        await top_up_stock(in_stock, total // len(in_stock) + 100)
        await warm_up(client, in_stock[0])
        started: dict[str, float] = {}
        statuses: Counter[str] = Counter()
        durations: list[float] = []
        tasks = []
        cpu_before = cpu_snapshot()
        t0, wall0 = time.monotonic(), time.time()
        window_start = t0
        for i in range(total):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            product = in_stock[i % len(in_stock)]
            # Latency counts from the scheduled start (no coordinated omission).
            scheduled = wall0 + i / rate
            tasks.append(
                asyncio.create_task(
                    checkout(client, product, started, statuses, scheduled, durations)
                )
            )
        await asyncio.gather(*tasks)
    deadline = time.monotonic() + settle
    decided: dict[str, float] = {}
    async with await psycopg.AsyncConnection.connect(
        database_url("fraud"), autocommit=True
    ) as conn:
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
    cpu = cpu_used(cpu_before, cpu_snapshot())
    window = time.monotonic() - window_start
    async with await psycopg.AsyncConnection.connect(
        database_url("orders"), autocommit=True
    ) as conn:
        rows = await (
            await conn.execute(
                "SELECT order_id::text, extract(epoch FROM created_at)::float8,"
                " CASE WHEN status <> 'PENDING' THEN extract(epoch FROM updated_at)::float8 END"
                " FROM orders WHERE order_id::text = ANY(%s)",
                (list(decided),),
            )
        ).fetchall()
    created = {order_id: at for order_id, at, _ in rows}
    applied = {order_id: at for order_id, _, at in rows if at is not None}
    latencies = [decided[o] - started[o] for o in decided]
    event_path = [decided[o] - created[o] for o in decided if o in created]
    # orders' consumer: fraud's decision -> the order's new status in orders' database.
    status_path = [applied[o] - decided[o] for o in decided if o in applied]
    load = os.getloadavg()
    print(
        f"{rate:g} orders/s for {seconds:g} s: checkouts {dict(sorted(statuses.items()))};"
        f" decided {len(decided)}/{len(started)} within {settle:g} s after the last"
        f" ({len(decided) / window:.1f}/s from the first checkout to the last decision)"
    )
    print(
        f"  checkout -> decision p50 {percentile(latencies, 0.5) * 1000:.0f} ms,"
        f" p99 {percentile(latencies, 0.99) * 1000:.0f} ms,"
        f" max {max(latencies, default=float('nan')) * 1000:.0f} ms;"
        f" load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"  of which the checkout request (scheduled start -> 201) p50"
        f" {percentile(durations, 0.5) * 1000:.0f} ms, p99 {percentile(durations, 0.99) * 1000:.0f}"
        f" ms; order created_at -> decision p50 {percentile(event_path, 0.5) * 1000:.0f} ms,"
        f" p99 {percentile(event_path, 0.99) * 1000:.0f} ms"
    )
    print(
        f"  orders' consumer: decision -> order status applied for {len(status_path)},"
        f" p50 {percentile(status_path, 0.5) * 1000:.0f} ms,"
        f" p99 {percentile(status_path, 0.99) * 1000:.0f} ms"
    )
    if decided:
        per_checkout = {name: used / len(decided) for name, used in cpu.items()}
        total = sum(per_checkout.values())
        cores = os.cpu_count() or 1
        parts = ", ".join(
            f"{name} {ms * 1000:.1f}"
            for name, ms in sorted(per_checkout.items(), key=lambda item: -item[1])
        )
        print(
            f"  CPU per decided checkout (ms): {parts}; total {total * 1000:.1f} ms,"
            f" so {cores} cores carry at most {cores / total:.0f} checkouts/s"
        )
        # Only a rate the system kept up with tells what a checkout costs: at a
        # saturated one the cores are spent whatever the rate, and the queue
        # stretches the window.
        kept_up = (
            set(statuses) == {"201"}
            and len(decided) == len(started)
            and len(decided) / window >= 0.9 * rate
        )
        if kept_up:
            return len(decided) / window, sum(cpu.values()) / window
    return None


def idle_cores(seconds: float = 5.0) -> float:
    """The cores the system uses with no checkouts at all (polls, health checks, flushes)."""
    before = cpu_snapshot()
    started = time.monotonic()
    time.sleep(seconds)
    return sum(cpu_used(before, cpu_snapshot()).values()) / (time.monotonic() - started)


def print_marginal(measured: list[tuple[float, float]], idle: float, target: float) -> None:
    """What one more checkout a second costs, from the two extreme rates the system kept up with.

    The CPU per checkout above also carries what runs at any rate; the
    slope between two rates leaves that out, and projects the cores
    ``target`` checkouts/s need. The line's intercept is larger than the
    idle system's CPU: a checkout costs less as the rate grows (batches
    grow), so a straight line through two rates is an estimate, not a law.
    """
    if len(measured) < 2:
        return
    (low_rate, low_cores), (high_rate, high_cores) = min(measured), max(measured)
    if high_rate - low_rate < 1:
        return
    slope = (high_cores - low_cores) / (high_rate - low_rate)
    intercept = low_cores - slope * low_rate
    print(
        f"CPU of the system: {idle:.2f} cores idle, {low_cores:.2f} at {low_rate:.0f}"
        f" decisions/s, {high_cores:.2f} at {high_rate:.0f}/s: {slope * 1000:.1f} ms per"
        f" additional checkout (intercept {intercept:.2f} cores); on that line {target:g}/s"
        f" would need {intercept + slope * target:.1f} cores (this machine has {os.cpu_count()})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://127.0.0.1:8080")
    parser.add_argument("--rates", default="20,50,100", help="checkouts per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=60.0)
    args = parser.parse_args()
    print("$ uv run python bench/decision_latency.py " + shlex.join(sys.argv[1:]))
    idle = idle_cores()
    measured = []
    for rate in (float(r) for r in args.rates.split(",") if r):
        result = asyncio.run(run_rate(args.base_url, rate, args.seconds, args.settle))
        if result is not None:
            measured.append(result)
    print_marginal(measured, idle, target=100.0)


if __name__ == "__main__":
    main()
