"""Latency of the product page and of checkout on the running system.

    python3 scripts/platformctl.py up
    uv run python bench/latency.py --requests 500

Sequential requests through the gateway, as one user clicking: the product
page (catalog from the gateway's read cache, recommendations over gRPC every
time) and checkout (gateway, orders, catalog price and reservation, one
database transaction with its outbox row). Prints median, p90, p99 and max;
nothing passes or fails on time.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import httpx


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(name: str, samples: list[float]) -> None:
    print(
        f"{name:<14} n={len(samples):<5} median {statistics.median(samples):6.2f} ms"
        f"  p90 {percentile(samples, 0.90):6.2f} ms  p99 {percentile(samples, 0.99):6.2f} ms"
        f"  max {max(samples):6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://127.0.0.1:8080")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--checkouts", type=int, default=100)
    args = parser.parse_args()
    with httpx.Client(base_url=args.base_url, timeout=10) as client:
        products = client.get("/api/products", params={"page_size": 50}).json()["products"]
        in_stock = [p["product_id"] for p in products if p["stock_available"] > 100]
        pages: list[float] = []
        for i in range(args.requests):
            started = time.perf_counter()
            response = client.get(f"/api/products/{in_stock[i % len(in_stock)]}")
            pages.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
        checkouts: list[float] = []
        for i in range(args.checkouts):
            started = time.perf_counter()
            response = client.post(
                "/api/checkout",
                json={
                    "customer_id": "bench-customer",
                    "items": [{"product_id": in_stock[i % len(in_stock)], "quantity": 1}],
                },
                headers={"Idempotency-Key": f"bench-{uuid.uuid4()}"},
            )
            checkouts.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    report("product page", pages)
    report("checkout", checkouts)


if __name__ == "__main__":
    main()
