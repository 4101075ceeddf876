"""Customer journeys through the gateway, on the whole running system."""

from __future__ import annotations

import concurrent.futures
import uuid

import pytest

from .conftest import System, wait_until

pytestmark = pytest.mark.e2e


def test_browse_and_open_a_product(system: System) -> None:
    products = system.products()
    assert len(products) >= 5
    page = system.http.get(f"/api/products/{products[0]['product_id']}")
    assert page.status_code == 200
    body = page.json()
    assert body["product"]["name"]
    assert body["product"]["price"]["currency_code"] == "EUR"
    assert body["recommendations_available"] is True


def test_checkout_is_approved_and_teaches_recommendations(system: System) -> None:
    first, second = system.products()[:2]
    items = [
        {"product_id": first["product_id"], "quantity": 1},
        {"product_id": second["product_id"], "quantity": 1},
    ]
    response = system.checkout("journey-customer", items)
    assert response.status_code == 201, response.text
    order = response.json()["order"]
    assert order["status"] == "pending"
    expected_total = first["price"]["amount_minor"] + second["price"]["amount_minor"]
    assert order["total"]["amount_minor"] == expected_total
    assert system.wait_decided([order["order_id"]]) == {order["order_id"]: "approved"}

    def recommended() -> bool:
        page = system.http.get(f"/api/products/{first['product_id']}").json()
        return any(r["product_id"] == second["product_id"] for r in page["recommendations"])

    wait_until(recommended, 20, interval=0.5, what="co-purchase recommendation")


def test_fraudulent_checkout_is_rejected(system: System) -> None:
    product_id = system.products()[0]["product_id"]
    response = system.checkout("fraud-journey", [{"product_id": product_id, "quantity": 1}])
    assert response.status_code == 201, response.text
    order_id = response.json()["order"]["order_id"]
    assert system.wait_decided([order_id]) == {order_id: "rejected"}
    order = system.http.get(f"/api/orders/{order_id}").json()["order"]
    assert order["status_reason"]


def test_retried_checkout_returns_the_same_order(system: System) -> None:
    product_id = system.products()[0]["product_id"]
    items = [{"product_id": product_id, "quantity": 1}]
    key = f"retry-{uuid.uuid4()}"
    first = system.checkout("retry-customer", items, key)
    again = system.checkout("retry-customer", items, key)
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json()["order"]["order_id"] == first.json()["order"]["order_id"]


def test_concurrent_checkouts_with_one_key_make_one_order(system: System) -> None:
    product_id = system.products()[0]["product_id"]
    items = [{"product_id": product_id, "quantity": 1}]
    key = f"concurrent-{uuid.uuid4()}"
    customer = f"concurrent-{uuid.uuid4().hex[:12]}"
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: system.checkout(customer, items, key), range(8)))
    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    assert len({r.json()["order"]["order_id"] for r in responses}) == 1
    # One order stored, not just one answered.
    rows = system.sql("orders", "SELECT count(*) AS n FROM orders WHERE customer_id = $1", customer)
    assert rows[0]["n"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"customer_id": "", "items": [{"product_id": "x", "quantity": 1}]}, "customer_id"),
        ({"customer_id": "c", "items": []}, "items"),
        ({"customer_id": "c", "items": [{"product_id": "x", "quantity": 0}]}, "items[0].quantity"),
        (
            {"customer_id": "c", "items": [{"product_id": "x", "quantity": "two"}]},
            "items[0].quantity",
        ),
        ({"items": [{"product_id": "x", "quantity": 1}]}, "customer_id"),
    ],
)
def test_bad_checkout_gets_400_naming_the_field(system: System, body: dict, field: str) -> None:
    response = system.http.post(
        "/api/checkout", json=body, headers={"Idempotency-Key": f"bad-{uuid.uuid4()}"}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_argument"
    assert field in [f["field"] for f in error["fields"]], error


def test_malformed_requests_get_clear_errors(system: System) -> None:
    no_key = system.http.post("/api/checkout", json={"customer_id": "c", "items": []})
    assert no_key.status_code == 400
    assert "Idempotency-Key" in no_key.json()["error"]["message"]
    not_json = system.http.post(
        "/api/checkout",
        content=b"{not json",
        headers={"Idempotency-Key": f"bad-{uuid.uuid4()}", "Content-Type": "application/json"},
    )
    assert not_json.status_code == 400
    assert system.http.get("/api/products/no-such-product").status_code == 404
    assert system.http.get("/api/orders/not-a-uuid").status_code == 400
    assert system.http.get(f"/api/orders/{uuid.uuid4()}").status_code == 404


def test_out_of_stock_is_a_conflict(system: System) -> None:
    response = system.http.get("/api/products", params={"page_size": 50})
    sold_out = [p for p in response.json()["products"] if p["stock_available"] == 0]
    assert sold_out, "the demo catalog has a sold-out product"
    checkout = system.checkout(
        "eager-customer", [{"product_id": sold_out[0]["product_id"], "quantity": 1}]
    )
    assert checkout.status_code == 409, checkout.text


def test_unknown_product_in_the_cart_is_a_400_naming_its_line(system: System) -> None:
    known = system.products()[0]["product_id"]
    response = system.checkout(
        "unknown-product-customer",
        [{"product_id": known, "quantity": 1}, {"product_id": "no-such-product", "quantity": 1}],
    )
    assert response.status_code == 400, response.text
    fields = response.json()["error"]["fields"]
    assert fields == [{"field": "items[1].product_id", "description": "unknown product"}]
