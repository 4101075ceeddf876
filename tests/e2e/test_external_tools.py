"""Tools that are not part of the project can use it: grpcurl through
reflection on every service, and Kafka's own console consumer on the
documented topics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, SYSTEM, System

pytestmark = pytest.mark.e2e

GRPC_PORTS = {s.name: s.ports.grpc for s in SYSTEM.services.values()}
SERVICES = {
    "catalog": "emporium.catalog.v1.CatalogService",
    "recommendations": "emporium.recommendations.v1.RecommendationService",
    "orders": "emporium.orders.v1.OrderService",
}


@pytest.fixture(scope="module")
def grpcurl() -> Path:
    path = ROOT / ".cache" / "bin" / "grpcurl"
    if not path.exists():
        pytest.fail(f"grpcurl is not installed ({path}): run make setup")
    return path


def call(grpcurl: Path, service: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(grpcurl), "-plaintext", *args[:-1], f"127.0.0.1:{GRPC_PORTS[service]}", args[-1]],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("service", sorted(GRPC_PORTS))
def test_every_service_lists_its_api_and_health_through_reflection(
    grpcurl: Path, service: str
) -> None:
    listing = call(grpcurl, service, "list")
    assert listing.returncode == 0, listing.stderr
    names = listing.stdout.split()
    assert "grpc.health.v1.Health" in names
    if service in SERVICES:
        assert SERVICES[service] in names
    health = call(grpcurl, service, "-d", "{}", "grpc.health.v1.Health/Check")
    assert json.loads(health.stdout)["status"] == "SERVING", health.stderr


def test_grpcurl_calls_the_business_apis(grpcurl: Path, system: System) -> None:
    products = call(
        grpcurl, "catalog", "-d", '{"page_size": 3}', f"{SERVICES['catalog']}/ListProducts"
    )
    assert products.returncode == 0, products.stderr
    first = json.loads(products.stdout)["products"][0]["product_id"]

    recommendations = call(
        grpcurl,
        "recommendations",
        "-d",
        json.dumps({"product_id": first}),
        f"{SERVICES['recommendations']}/ListRecommendations",
    )
    assert recommendations.returncode == 0, recommendations.stderr

    checkout = system.checkout("grpcurl-customer", [{"product_id": first, "quantity": 1}])
    order_id = checkout.json()["order"]["order_id"]
    order = call(
        grpcurl,
        "orders",
        "-d",
        json.dumps({"order_id": order_id}),
        f"{SERVICES['orders']}/GetOrder",
    )
    assert order.returncode == 0, order.stderr
    assert json.loads(order.stdout)["order"]["order_id"] == order_id


def test_bad_input_is_invalid_argument_with_field_details(grpcurl: Path) -> None:
    result = call(
        grpcurl,
        "catalog",
        "-d",
        '{"order_id": "", "items": [{"product_id": "x", "quantity": 0}]}',
        f"{SERVICES['catalog']}/ReserveStock",
    )
    assert result.returncode != 0
    assert "Code: InvalidArgument" in result.stdout + result.stderr
    details = result.stdout + result.stderr
    assert "order_id" in details
    assert "items[0].quantity" in details


def test_kafka_console_consumer_sees_the_events(system: System) -> None:
    product_id = system.products()[0]["product_id"]
    checkout = system.checkout("kafka-tools", [{"product_id": product_id, "quantity": 1}])
    order_id = checkout.json()["order"]["order_id"]
    system.wait_decided([order_id])

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import emporium_platform  # type: ignore[import-not-found]
        from emporium_platform import kafka  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    settings = emporium_platform.settings()
    for topic in (
        "orders.order-placed.v1",
        "fraud.decision-made.v1",
        "orders.order-status-changed.v1",
    ):
        result = kafka.tool(
            settings,
            "org.apache.kafka.tools.consumer.ConsoleConsumer",
            "--bootstrap-server",
            emporium_platform.kafka_bootstrap(),
            "--topic",
            topic,
            "--from-beginning",
            "--property",
            "print.key=true",
            "--property",
            "print.headers=true",
            "--property",
            "print.value=false",
            "--timeout-ms",
            "8000",
            check=False,
            timeout=120,
        )
        assert order_id in result.stdout, f"{topic}: {result.stderr[-500:]}"
        assert "event-type:emporium.events.v1." in result.stdout
