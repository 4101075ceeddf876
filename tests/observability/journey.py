"""One traced checkout through the gateway, shared by the end-to-end observability tests.

The request carries a W3C ``traceparent`` chosen by the test, so the test
knows the trace id before anything is exported: the gateway's server span
continues that trace, and so does everything the checkout causes in the
other services, over gRPC and through the outboxes and Kafka.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TracedCheckout:
    trace_id: str
    caller_span_id: str
    order_id: str
    status: str
    started: float


def traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def checkout(system: Any, customer: str = "observability") -> TracedCheckout:
    """Places one order with a known trace id and waits for its fraud decision."""
    product = system.products()[0]
    trace_id, span_id, header = traceparent()
    started = time.time()
    response = system.http.post(
        "/api/checkout",
        json={
            "customer_id": f"{customer}-{uuid.uuid4().hex[:8]}",
            "items": [{"product_id": product["product_id"], "quantity": 1}],
        },
        headers={"Idempotency-Key": f"obs-{uuid.uuid4()}", "traceparent": header},
    )
    assert response.status_code in (200, 201), response.text
    order_id: str = response.json()["order"]["order_id"]
    statuses = system.wait_decided([order_id], timeout=60)
    return TracedCheckout(trace_id, span_id, order_id, statuses[order_id], started)
