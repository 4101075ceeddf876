"""A real Prometheus scrapes the running services; its HTTP API shows what operators query.

The server (Debian's package) scrapes every admin port each second with the
labels the chart's ServiceMonitors give in a cluster, and evaluates the SLO
rules of the chart on the live series.
"""

from __future__ import annotations

import time
from typing import Any

import journey
import observability_prometheus
import pytest

pytestmark = pytest.mark.e2e

PRODUCT_PAGE = "/api/products/{product_id}"


@pytest.fixture(scope="module")
def traffic(system: Any, prometheus: Any) -> journey.TracedCheckout:
    """Product pages and a checkout, then a few scrapes so Prometheus has seen them."""
    # Requests made before the first scrape would not show in any rate().
    targets = len(observability_prometheus.ADMIN_PORTS)
    assert prometheus.wait_for(f"count(up == 1) == {targets}", timeout=30), prometheus.targets()
    prometheus.wait_for("count(emporium_ready) > 0", timeout=10)
    # The gateway's last request and the last effect (orders' decision delay).
    counters = (
        'sum(emporium_http_requests_total{route="/api/checkout"})',
        'sum(emporium_order_decision_delay_seconds_count{service="emporium-orders"})',
    )
    # Twice: a counter's first sample holds the requests that created it, and
    # rate() sees no increase in it; on services that have served nothing yet
    # the first round creates the series and the second one moves them.
    for _ in range(2):
        before = [sum(float(i["value"][1]) for i in prometheus.query(c)) for c in counters]
        for product in system.products()[:3]:
            response = system.http.get(f"/api/products/{product['product_id']}")
            assert response.status_code == 200, response.text
        placed = journey.checkout(system, customer="prometheus")
        # Scrapes run every second; wait until both targets were scraped since.
        for counter, count in zip(counters, before, strict=True):
            assert prometheus.wait_for(f"{counter} > {count}", timeout=20), counter
    return placed


def series(prometheus: Any, expr: str) -> list[dict[str, str]]:
    result = prometheus.wait_for(expr, timeout=15)
    assert result, f"Prometheus has no series for {expr}"
    return [dict(item["metric"]) for item in result]


def value(prometheus: Any, expr: str) -> float:
    result = prometheus.wait_for(expr, timeout=15)
    assert len(result) == 1, f"{expr}: {result}"
    return float(result[0]["value"][1])


def test_every_service_is_scraped_with_the_cluster_labels(prometheus: Any, traffic: Any) -> None:
    targets = prometheus.targets()
    up = {t["labels"]["job"]: t["health"] for t in targets}
    assert up == {service: "up" for service in observability_prometheus.ADMIN_PORTS}, targets
    for target in targets:
        assert target["labels"]["namespace"] == "emporium-local"
        assert target["labels"]["service"] == f"emporium-{target['labels']['job']}"


def test_red_metrics_of_the_storefront_routes(prometheus: Any, traffic: Any) -> None:
    route = f'route="{PRODUCT_PAGE}", method="GET"'
    ok = value(prometheus, f'sum(emporium_http_requests_total{{{route}, status="200"}})')
    assert ok >= 3
    checkouts = series(
        prometheus, 'emporium_http_requests_total{route="/api/checkout", method="POST"}'
    )
    assert {s["status"] for s in checkouts} & {"200", "201"}
    assert all(s["service"] == "emporium-gateway" for s in checkouts)
    # Duration histogram by route template (never the raw path).
    p95 = value(
        prometheus,
        f"histogram_quantile(0.95, sum by (le) "
        f"(emporium_http_request_duration_seconds_bucket{{{route}}}))",
    )
    assert 0 < p95 <= 10
    raw_paths = series(prometheus, "count by (route) (emporium_http_requests_total)")
    assert all("{" in s["route"] or "/products/" not in s["route"] for s in raw_paths), raw_paths


def test_red_metrics_of_every_rpc(prometheus: Any, traffic: Any) -> None:
    servers = series(prometheus, "emporium_rpc_server_requests_total")
    seen = {(s["service"], s["rpc_service"], s["rpc_method"], s["code"]) for s in servers}
    assert ("emporium-orders", "emporium.orders.v1.OrderService", "PlaceOrder", "OK") in seen
    assert any(s == "emporium-catalog" and c == "OK" for s, _, _, c in seen), seen
    assert any(s == "emporium-recommendations" for s, _, _, _ in seen), seen
    durations = series(
        prometheus,
        'emporium_rpc_server_duration_seconds_count{rpc_service="emporium.orders.v1.OrderService"}',
    )
    assert {s["rpc_method"] for s in durations} >= {"PlaceOrder"}
    clients = series(prometheus, "emporium_rpc_client_requests_total")
    calls = {(s["service"], s["downstream"]) for s in clients}
    assert {
        ("emporium-gateway", "catalog"),
        ("emporium-gateway", "orders"),
        ("emporium-gateway", "recommendations"),
        ("emporium-orders", "catalog"),
    } <= calls, calls


def test_consumer_lag_and_processing_per_topic_and_group(prometheus: Any, traffic: Any) -> None:
    lag = series(prometheus, "emporium_kafka_consumer_lag")
    groups = {(s["service"], s["group"], s["topic"]) for s in lag}
    assert {
        ("emporium-fraud", "fraud", "orders.order-placed.v1"),
        ("emporium-recommendations", "recommendations", "orders.order-placed.v1"),
        ("emporium-orders", "orders", "fraud.decision-made.v1"),
        ("emporium-catalog", "catalog", "orders.order-status-changed.v1"),
    } <= groups, groups
    assert all(s["partition"].isdigit() for s in lag)
    # The checkout's events were consumed: lag back to zero on the paths it took.
    fraud_lag = value(
        prometheus,
        'sum(emporium_kafka_consumer_lag{group="fraud", topic="orders.order-placed.v1"})',
    )
    assert fraud_lag == 0
    processed = series(prometheus, 'emporium_kafka_messages_total{outcome="processed"}')
    assert {s["group"] for s in processed} >= {"fraud", "orders"}
    series(prometheus, 'emporium_kafka_processing_duration_seconds_count{group="fraud"} > 0')


def test_breaker_state_per_downstream(prometheus: Any, traffic: Any) -> None:
    breakers = series(prometheus, "emporium_breaker_state")
    states = {(s["service"], s["downstream"]) for s in breakers}
    assert {
        ("emporium-gateway", "catalog"),
        ("emporium-gateway", "orders"),
        ("emporium-gateway", "recommendations"),
        ("emporium-orders", "catalog"),
    } <= states, states
    assert all(s.get("downstream") for s in breakers)
    # 0 closed, 1 half-open, 2 open: the catalog just served the checkout, so closed.
    closed = 'emporium_breaker_state{service="emporium-orders", downstream="catalog"}'
    assert value(prometheus, closed) == 0


def test_outbox_cache_pool_and_decision_metrics(prometheus: Any, traffic: Any) -> None:
    backlogs = {s["service"] for s in series(prometheus, "emporium_outbox_backlog")}
    assert {"emporium-orders", "emporium-fraud"} <= backlogs
    published = series(prometheus, "emporium_outbox_published_total")
    assert ("emporium-orders", "orders.order-placed.v1") in {
        (s["service"], s["topic"]) for s in published
    }
    series(prometheus, 'emporium_outbox_publish_delay_seconds_count{service="emporium-orders"} > 0')
    pools = series(prometheus, "emporium_db_pool_connections")
    assert {s["state"] for s in pools} == {"in_use", "idle", "max"}
    series(prometheus, 'emporium_cache_requests_total{service="emporium-gateway"}')
    decided = series(prometheus, "emporium_order_decision_delay_seconds_count > 0")
    assert {s["decision"] for s in decided} <= {"approved", "rejected"}
    assert traffic.status.lower() in {s["decision"] for s in decided}


def test_the_slo_rules_evaluate_on_the_live_series(prometheus: Any, traffic: Any) -> None:
    """The chart's recording rules, evaluated by this Prometheus on the traffic above."""
    wanted = {
        "product-page-availability",
        "product-page-latency",
        "checkout-availability",
        "checkout-latency",
        "fraud-decision-freshness",
    }
    deadline = time.monotonic() + 15
    while True:
        # NaN (0/0) while a window holds no request yet: wait for numbers.
        recorded = {
            item["metric"]["slo"]: float(item["value"][1])
            for item in prometheus.query(
                'emporium:slo_errors:ratio_rate5m{namespace="emporium-local"} >= 0'
            )
        }
        if wanted <= set(recorded):
            break
        assert time.monotonic() < deadline, f"SLO series missing: {wanted - set(recorded)}"
        time.sleep(0.5)
    assert all(0 <= ratio <= 1 for ratio in recorded.values()), recorded
    # Nothing failed: no bad event in either availability SLI.
    assert recorded["product-page-availability"] == 0
    assert recorded["checkout-availability"] == 0
    objectives = series(prometheus, "emporium:slo_objective:ratio")
    assert len(objectives) == 5
