"""The scripted customer journey of `make demo`.

Browses the storefront API, places orders (one that fraud approves, one it
rejects, and a retried checkout that must not create a second order), waits
for the fraud decisions, then stops the recommendations service and shows
that the product page still renders without them. Prints each step with its
outcome and timing and exits non-zero if any step failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trace_tree  # scripts/trace_tree.py, beside this file

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = [sys.executable, str(ROOT / "scripts" / "platformctl.py")]


@dataclass
class Journey:
    base_url: str
    client: httpx.Client = field(init=False)
    results: list[tuple[str, bool, float, str]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base_url, timeout=10)

    def step(self, title: str, action: Callable[[], str]) -> bool:
        started = time.perf_counter()
        try:
            detail = action()
            ok = True
        except Exception as error:  # a failed step is reported, and the journey goes on
            detail = f"{type(error).__name__}: {error}"
            ok = False
        elapsed = (time.perf_counter() - started) * 1000
        self.results.append((title, ok, elapsed, detail))
        mark = "ok  " if ok else "FAIL"
        print(f"  [{mark}] {title:<58} {elapsed:8.1f} ms  {detail}", flush=True)
        return ok

    # --- the steps ---------------------------------------------------------

    def browse(self) -> str:
        response = self.client.get("/api/products", params={"page_size": 50})
        response.raise_for_status()
        products = response.json()["products"]
        assert products, "the catalog is empty"
        in_stock = [p for p in products if p["stock_available"] > 0]
        self.facts["products"] = in_stock
        return f"{len(products)} products, {len(in_stock)} in stock"

    def product_page(self) -> str:
        product = self.facts["products"][0]
        response = self.client.get(f"/api/products/{product['product_id']}")
        response.raise_for_status()
        page = response.json()
        available = page["recommendations_available"]
        assert available, "recommendations should be available while the service runs"
        return f"{page['product']['name']}: {len(page['recommendations'])} recommendations"

    def checkout(self, customer_id: str, items: list[dict[str, Any]], key: str) -> dict[str, Any]:
        response = self.client.post(
            "/api/checkout",
            json={"customer_id": customer_id, "items": items},
            headers={"Idempotency-Key": key},
        )
        if response.status_code not in (200, 201):
            raise RuntimeError(f"HTTP {response.status_code}: {response.text}")
        order: dict[str, Any] = response.json()["order"]
        return order

    def place_orders(self) -> str:
        first, second = self.facts["products"][0], self.facts["products"][1]
        items = [
            {"product_id": first["product_id"], "quantity": 1},
            {"product_id": second["product_id"], "quantity": 2},
        ]
        key = f"demo-{uuid.uuid4()}"
        good = self.checkout("customer-42", items, key)
        risky = self.checkout(
            "fraud-demo-customer",
            [{"product_id": first["product_id"], "quantity": 1}],
            f"demo-{uuid.uuid4()}",
        )
        self.facts["orders"] = {"customer-42": good, "fraud-demo-customer": risky}
        self.facts["retry_key"] = (key, items, good["order_id"])
        assert good["status"] == "pending", good
        return f"2 orders accepted as pending: {good['order_id'][:8]}…, {risky['order_id'][:8]}…"

    def retried_checkout(self) -> str:
        key, items, order_id = self.facts["retry_key"]
        again = self.checkout("customer-42", items, key)
        assert again["order_id"] == order_id, "a retried checkout created a second order"
        return f"same idempotency key returned the same order {order_id[:8]}…"

    def decisions(self) -> str:
        expected = {"customer-42": "approved", "fraud-demo-customer": "rejected"}
        deadline = time.monotonic() + 30
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            for customer, order in self.facts["orders"].items():
                response = self.client.get(f"/api/orders/{order['order_id']}")
                response.raise_for_status()
                seen[customer] = response.json()["order"]["status"]
            if all(status != "pending" for status in seen.values()):
                break
            time.sleep(0.25)
        assert seen == expected, f"expected {expected}, saw {seen}"
        return ", ".join(f"{c} → {s}" for c, s in seen.items())

    def recommendations_learnt(self) -> str:
        first = self.facts["products"][0]["product_id"]
        second = self.facts["products"][1]["product_id"]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            page = self.client.get(f"/api/products/{first}").json()
            if any(r["product_id"] == second for r in page["recommendations"]):
                return f"{second} now recommended with {first}"
            time.sleep(0.5)
        raise AssertionError(f"{second} never became a recommendation for {first}")

    def without_recommendations(self) -> str:
        subprocess.run([*PLATFORM, "stop-service", "recommendations"], check=True)
        try:
            product = self.facts["products"][0]["product_id"]
            timings = []
            for _ in range(10):
                started = time.perf_counter()
                response = self.client.get(f"/api/products/{product}")
                timings.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                page = response.json()
                assert page["recommendations_available"] is False, page
            return f"page renders without them, slowest of 10: {max(timings):.0f} ms"
        finally:
            subprocess.run([*PLATFORM, "start-service", "recommendations"], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://127.0.0.1:8080")
    args = parser.parse_args()
    journey = Journey(args.base_url)
    print(f"\nCustomer journey against {args.base_url}\n")
    steps: list[tuple[str, Callable[[], str]]] = [
        ("browse the catalog", journey.browse),
        ("open a product page with recommendations", journey.product_page),
        ("check out two orders", journey.place_orders),
        ("retry a checkout with the same idempotency key", journey.retried_checkout),
        ("fraud decisions arrive (approved and rejected)", journey.decisions),
        ("recommendations learn from the orders", journey.recommendations_learnt),
        ("stop recommendations: product page still renders", journey.without_recommendations),
    ]
    for title, action in steps:
        journey.step(title, action)
    order = journey.facts.get("orders", {}).get("customer-42")
    if order:
        print(f"\nThe trace of checkout {order['order_id']} across the services:\n")
        trace_tree.print_checkout(ROOT / ".run" / "traces.jsonl", order_id=order["order_id"])
    failed = [title for title, ok, _, _ in journey.results if not ok]
    total = sum(elapsed for _, _, elapsed, _ in journey.results)
    print(f"\n{len(journey.results) - len(failed)} passed, {len(failed)} failed ({total:.0f} ms)")
    print(f"storefront: {args.base_url}/   (stop everything with: make down)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
