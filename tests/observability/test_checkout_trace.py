"""One checkout is one trace, across gRPC, the outboxes and Kafka.

Asserted on the spans the services really exported over OTLP to the local
collector (scripts/otlp_sink.py), read back from its file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import journey
import pytest
import trace_tree

pytestmark = pytest.mark.e2e

#: Services whose spans a checkout must contain (recommendations consumes the
#: order-placed event too, and the catalog the status change: they join when present).
REQUIRED_SERVICES = {"gateway", "orders", "catalog", "fraud"}

#: Where statement spans come from (kit: emporium.kit.db turns it on).
DB_SCOPE = "opentelemetry.instrumentation.psycopg"


def rpc(span: dict[str, Any]) -> tuple[str, str]:
    attributes = span["attributes"]
    return attributes.get("rpc.service", ""), attributes.get("rpc.method", "")


def one(spans: list[dict[str, Any]], what: str, **match: Any) -> dict[str, Any]:
    found = [s for s in spans if all(s.get(k) == v for k, v in match.items())]
    assert found, f"no {what} span ({match}) in:\n{trace_tree.format_trace(spans)}"
    return found[0]


def test_a_checkout_is_one_trace_across_every_service(system: Any, traces: Path) -> None:
    placed = journey.checkout(system)
    spans = trace_tree.wait_for_trace(
        traces, placed.trace_id, timeout=30, settle=2.0, min_services=REQUIRED_SERVICES
    )
    tree = trace_tree.format_trace(spans)
    print(tree)  # shown with -s or when the test fails
    by_id = {span["span_id"]: span for span in spans}

    def parent(span: dict[str, Any]) -> dict[str, Any]:
        found = by_id.get(span["parent_span_id"] or "")
        assert found, f"parent of {span['service']} {span['name']} not exported:\n{tree}"
        return found

    def ancestors(span: dict[str, Any]) -> list[dict[str, Any]]:
        chain = []
        while span["parent_span_id"] in by_id:
            span = by_id[span["parent_span_id"]]
            chain.append(span)
        return chain

    # Everything hangs under the gateway's server span, which continues the caller's trace.
    services = {span["service"] for span in spans}
    assert services >= REQUIRED_SERVICES, tree
    roots = [s for s in spans if s["parent_span_id"] not in by_id]
    assert len(roots) == 1, f"{len(roots)} roots:\n{tree}"
    (root,) = roots
    assert root["service"] == "gateway"
    assert root["kind"] == "SERVER"
    assert root["name"] == "POST /api/checkout"
    assert root["parent_span_id"] == placed.caller_span_id

    # gateway -> orders over gRPC: a CLIENT span in the gateway, the SERVER span in orders.
    place_order = ("emporium.orders.v1.OrderService", "PlaceOrder")
    client = next(s for s in spans if s["kind"] == "CLIENT" and rpc(s) == place_order)
    assert client["service"] == "gateway"
    server = next(s for s in spans if s["kind"] == "SERVER" and rpc(s) == place_order)
    assert server["service"] == "orders"
    assert parent(server) is client
    assert root in ancestors(client)

    # orders -> catalog over gRPC, inside PlaceOrder.
    catalog_servers = [s for s in spans if s["service"] == "catalog" and s["kind"] == "SERVER"]
    assert catalog_servers, tree
    for catalog_server in catalog_servers:
        caller = parent(catalog_server)
        assert caller["service"] == "orders"
        assert caller["kind"] == "CLIENT"
        assert server in ancestors(caller)

    # The order and its outbox row are written inside PlaceOrder (database spans from
    # OpenTelemetry's psycopg instrumentation, the statement as written).
    queries = [s for s in spans if s["service"] == "orders" and s["scope"] == DB_SCOPE]
    statements = [
        " ".join(str(s["attributes"].get("db.statement", "")).split())
        for s in queries
        if server in ancestors(s)
    ]
    for table in ("orders", "outbox"):
        assert any(f"INSERT INTO {table} " in q for q in statements), tree

    # The relay publishes the OrderPlaced row under the context stored with it.
    publish = one(
        spans,
        "outbox relay publish",
        service="orders",
        kind="PRODUCER",
        name="send orders.order-placed.v1",
    )
    assert publish["scope"] == "emporium.kit.outbox"
    assert publish["attributes"]["messaging.kafka.message.key"] == placed.order_id
    assert server in ancestors(publish)

    # fraud consumes it in the same trace and does its own work under that span.
    fraud_consume = one(
        spans,
        "fraud consumer",
        service="fraud",
        kind="CONSUMER",
        name="process orders.order-placed.v1",
    )
    assert parent(fraud_consume) is publish
    assert fraud_consume["attributes"]["messaging.consumer.group.name"] == "fraud"
    fraud_work = [s for s in spans if s["service"] == "fraud" and fraud_consume in ancestors(s)]
    assert any(s["scope"] == DB_SCOPE for s in fraud_work), tree
    fraud_publish = one(
        spans,
        "fraud's relay publish",
        service="fraud",
        kind="PRODUCER",
        name="send fraud.decision-made.v1",
    )
    assert fraud_consume in ancestors(fraud_publish)

    # orders applies the decision, still in the checkout's trace.
    decision = one(
        spans,
        "orders' decision consumer",
        service="orders",
        kind="CONSUMER",
        name="process fraud.decision-made.v1",
    )
    assert parent(decision) is fraud_publish

    # Sane timings: children start within their parents' trace, nothing ends before it starts.
    for span in spans:
        assert span["end_ns"] >= span["start_ns"], span
        assert span["start_ns"] >= root["start_ns"] - 5_000_000, span  # clock granularity

    # The tree printer the demo uses shows the whole flow.
    assert f"{len(spans)} spans" in tree
    for service in REQUIRED_SERVICES:
        assert f"  {service}" in tree
