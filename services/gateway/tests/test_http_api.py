"""The HTTP API over hand-written fakes: validation, error mapping, degradation,
static files and per-request telemetry. No sockets, no servers."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY

from emporium.gateway.cache import TTLCache
from emporium.gateway.domain import Budgets, Storefront
from emporium.gateway.http_api import build_app
from emporium.kit.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)

from .conftest import TEST_BUDGETS, Fakes

pytestmark = pytest.mark.unit

KEY = {"Idempotency-Key": "key-0123456789"}
GOOD_ORDER = {"customer_id": "alice", "items": [{"product_id": "p1", "quantity": 2}]}


QUANTITY = "items[0].quantity"


def one_line(quantity: Any) -> dict[str, Any]:
    return {"customer_id": "c", "items": [{"product_id": "p1", "quantity": quantity}]}


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "fields"}
    assert error["message"]
    return error


def fields_of(response: httpx.Response) -> list[str]:
    return [f["field"] for f in error_of(response)["fields"]]


def metric(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- product list -------------------------------------------------------------


async def test_lists_products_with_stock_and_next_page(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/products", params={"page_size": 2})
    assert response.status_code == 200
    body = response.json()
    assert [p["product_id"] for p in body["products"]] == ["p1", "p2"]
    assert body["next_page_token"] == "2"
    first = body["products"][0]
    assert first["price"] == {"currency_code": "EUR", "amount_minor": 1999}
    assert first["in_stock"] is True
    rest = (await http.get("/api/products", params={"page_token": "2"})).json()
    sold_out = next(p for p in rest["products"] if p["product_id"] == "sold-out")
    assert sold_out["in_stock"] is False
    assert sold_out["stock_available"] == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"page_size": "ten"}, "page_size"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "101"}, "page_size"),
        ({"page_token": "x" * 600}, "page_token"),
    ],
)
async def test_bad_list_query_is_a_400_naming_the_field(
    http: httpx.AsyncClient, query: dict[str, str], field: str
) -> None:
    response = await http.get("/api/products", params=query)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_argument"
    assert fields_of(response) == [field]


async def test_product_list_is_cached(http: httpx.AsyncClient, fakes: Fakes) -> None:
    for _ in range(3):
        assert (await http.get("/api/products")).status_code == 200
    assert fakes.catalog.behaviour.calls == 1


# --- product page ---------------------------------------------------------------


async def test_product_page_resolves_recommendations(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/products/p1")
    assert response.status_code == 200
    body = response.json()
    assert body["product"]["product_id"] == "p1"
    assert body["product"]["name"] == "Product p1"
    assert body["recommendations_available"] is True
    # The product itself and ids the catalog no longer knows are left out.
    assert [r["product_id"] for r in body["recommendations"]] == ["p2", "p3"]
    assert body["recommendations"][0] == {
        "product_id": "p2",
        "name": "Product p2",
        "price": {"currency_code": "EUR", "amount_minor": 1999},
        "stock_available": 5,
        "in_stock": True,
    }


async def test_product_without_recommendations_is_still_available(
    http: httpx.AsyncClient,
) -> None:
    body = (await http.get("/api/products/p4")).json()
    assert body["recommendations"] == []
    assert body["recommendations_available"] is True


async def test_without_a_recommendations_service_the_page_says_so_without_degrading(
    fakes: Fakes,
) -> None:
    """RECOMMENDATIONS_ADDR unset: the page as when recommendations are down, nothing counted."""
    storefront = Storefront(
        fakes.catalog,
        None,
        fakes.orders,
        product_cache=TTLCache("test-products-absent", 5.0, 100),
        list_cache=TTLCache("test-lists-absent", 5.0, 100),
        budgets=TEST_BUDGETS,
    )
    labels = {"route": "/api/products/{product_id}", "dependency": "recommendations"}
    before = metric("emporium_degraded_responses_total", labels)
    transport = httpx.ASGITransport(app=build_app(storefront))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        response = await http.get("/api/products/p1")
        missing = await http.get("/api/products/nope")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["product"]["product_id"] == "p1"
    assert body["recommendations"] == []
    assert body["recommendations_available"] is False
    assert fakes.recommendations.behaviour.calls == 0
    assert metric("emporium_degraded_responses_total", labels) == before
    # The catalog is still the page's critical part.
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "error",
    [
        Unavailable("recommendations unavailable: circuit breaker open", "recommendations"),
        DeadlineExceeded("recommendations timed out", "recommendations"),
        RuntimeError("a bug in the adapter must not take the page down either"),
    ],
    ids=["unavailable", "deadline", "bug"],
)
async def test_product_page_degrades_when_recommendations_fail(
    http: httpx.AsyncClient, fakes: Fakes, error: Exception
) -> None:
    fakes.recommendations.behaviour.error = error
    labels = {"route": "/api/products/{product_id}", "dependency": "recommendations"}
    before = metric("emporium_degraded_responses_total", labels)
    response = await http.get("/api/products/p1")
    assert response.status_code == 200
    body = response.json()
    assert body["product"]["product_id"] == "p1"
    assert body["recommendations"] == []
    assert body["recommendations_available"] is False
    assert metric("emporium_degraded_responses_total", labels) == before + 1


async def test_hung_recommendations_cost_only_their_budget(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    fakes.recommendations.behaviour.delay = 30
    started = time.perf_counter()
    response = await http.get("/api/products/p1")
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert response.json()["recommendations_available"] is False
    # The recommendations budget (80 ms) plus the safety margin (100 ms), far
    # below the page budget (500 ms).
    assert elapsed < 0.3, elapsed


async def test_product_and_recommendations_are_fetched_in_parallel(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    fakes.catalog.behaviour.delay = 0.1
    fakes.recommendations.behaviour.delay = 0.1
    fakes.recommendations.suggestions["p4"] = []
    started = time.perf_counter()
    response = await http.get("/api/products/p4")
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert response.json()["recommendations_available"] is True
    assert elapsed < 0.19, f"sequential calls would take 200 ms, took {elapsed * 1000:.0f} ms"


async def test_unknown_product_is_a_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/products/nope")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


async def test_catalog_down_is_a_503_naming_the_catalog(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    fakes.catalog.behaviour.error = Unavailable("catalog unavailable (UNAVAILABLE)", "catalog")
    for path in ("/api/products/p1", "/api/products"):
        response = await http.get(path)
        assert response.status_code == 503
        error = error_of(response)
        assert error["code"] == "unavailable"
        assert error["message"].startswith("catalog is unavailable right now")


async def test_slow_catalog_is_a_504_within_the_page_budget(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    fakes.catalog.behaviour.delay = 30
    started = time.perf_counter()
    response = await http.get("/api/products/p1")
    elapsed = time.perf_counter() - started
    assert response.status_code == 504
    error = error_of(response)
    assert error["code"] == "deadline_exceeded"
    assert "catalog" in error["message"]
    assert elapsed < TEST_BUDGETS.product_page + 0.1


async def test_product_page_is_cached_but_recommendations_are_not(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    for _ in range(3):
        assert (await http.get("/api/products/p1")).status_code == 200
    # p1 once, then p2 and p3 (resolved recommendations) once each; an unknown
    # id is not cached (failures never are) and is asked again.
    assert sorted(fakes.catalog.requested) == ["gone", "gone", "gone", "p1", "p2", "p3"]
    assert fakes.recommendations.behaviour.calls == 3


async def test_recommendations_degrade_when_the_catalog_cannot_name_them(
    make_storefront: Callable[..., Storefront], fakes: Fakes
) -> None:
    storefront = make_storefront()
    await storefront.product_page("p4")  # p4 is now cached
    fakes.catalog.behaviour.error = Unavailable("catalog unavailable", "catalog")
    fakes.recommendations.suggestions["p4"] = ["p1"]
    page, degradation = await storefront.product_page("p4")
    assert page.product.product_id == "p4"
    assert page.recommendations_available is False
    assert degradation is not None
    assert degradation.dependency == "catalog"


# --- checkout -------------------------------------------------------------------


async def test_checkout_creates_then_replays_the_same_order(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    first = await http.post("/api/checkout", json=GOOD_ORDER, headers=KEY)
    assert first.status_code == 201, first.text
    order = first.json()["order"]
    assert order["status"] == "pending"
    assert order["items"] == [
        {
            "product_id": "p1",
            "quantity": 2,
            "unit_price": {"currency_code": "EUR", "amount_minor": 1000},
        }
    ]
    assert first.headers["location"] == f"/api/orders/{order['order_id']}"
    again = await http.post("/api/checkout", json=GOOD_ORDER, headers=KEY)
    assert again.status_code == 200
    assert again.json()["order"]["order_id"] == order["order_id"]
    assert [r.idempotency_key for r in fakes.orders.placed] == [KEY["Idempotency-Key"]] * 2


@pytest.mark.parametrize(
    ("quantity", "description"),
    [
        (2.5, "must be a whole number, got 2.5"),
        ("2", 'must be a whole number, got "2"'),
        (True, "must be a whole number, got true"),
        ([2], "must be a whole number, got an array"),
        (101, "must be between 1 and 100"),
    ],
    ids=["fraction", "string", "boolean", "array", "too-many"],
)
async def test_a_wrong_quantity_says_what_it_got(
    http: httpx.AsyncClient, quantity: Any, description: str
) -> None:
    body = {"customer_id": "alice", "items": [{"product_id": "p1", "quantity": quantity}]}
    response = await http.post("/api/checkout", json=body, headers=KEY)
    assert response.status_code == 400
    assert error_of(response)["fields"] == [{"field": QUANTITY, "description": description}]


async def test_a_400_lists_twenty_fields_and_counts_the_rest(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    # 50 lines, each with a bad product id and a bad quantity: 100 violations.
    body = {"customer_id": "alice", "items": [{"product_id": "no id", "quantity": 0}] * 50}
    response = await http.post("/api/checkout", json=body, headers=KEY)
    assert response.status_code == 400
    error = error_of(response)
    assert len(error["fields"]) == 20
    assert error["fields"][:2] == [
        {"field": "items[0].product_id", "description": error["fields"][0]["description"]},
        {"field": "items[0].quantity", "description": "must be between 1 and 100"},
    ]
    assert error["message"].endswith("; and 80 more")
    assert len(response.content) < 4096
    assert fakes.orders.placed == []


async def test_a_long_refusal_from_orders_stays_short(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    fakes.orders.behaviour.error = InvalidArgument(
        [FieldViolation(f"items[{i}].product_id", "unknown product") for i in range(10_000)]
    )
    response = await http.post("/api/checkout", json=GOOD_ORDER, headers=KEY)
    assert response.status_code == 400
    error = error_of(response)
    assert len(error["fields"]) == 20
    assert error["message"].endswith("; and 9,980 more")
    print(f"HTTP 400 for 10,000 refused lines: {len(response.content)} bytes")
    assert len(response.content) < 4096


@pytest.mark.parametrize(
    ("headers", "description"),
    [({}, "header is required"), ({"Idempotency-Key": "short"}, "8 to 128")],
    ids=["missing", "too-short"],
)
async def test_checkout_needs_an_idempotency_key(
    http: httpx.AsyncClient, fakes: Fakes, headers: dict[str, str], description: str
) -> None:
    response = await http.post("/api/checkout", json=GOOD_ORDER, headers=headers)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_argument"
    assert "Idempotency-Key" in error["message"]
    assert error["fields"][0]["field"] == "Idempotency-Key"
    assert description in error["fields"][0]["description"]
    assert fakes.orders.placed == []


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"items": [{"product_id": "p1", "quantity": 1}]}, ["customer_id"]),
        ({"customer_id": "  ", "items": [{"product_id": "p1", "quantity": 1}]}, ["customer_id"]),
        ({"customer_id": 7, "items": [{"product_id": "p1", "quantity": 1}]}, ["customer_id"]),
        ({"customer_id": "c"}, ["items"]),
        ({"customer_id": "c", "items": []}, ["items"]),
        ({"customer_id": "c", "items": {"p1": 1}}, ["items"]),
        (
            {"customer_id": "c", "items": [{"product_id": "p1", "quantity": 0}]},
            ["items[0].quantity"],
        ),
        (
            {"customer_id": "c", "items": [{"product_id": "p1", "quantity": "two"}]},
            ["items[0].quantity"],
        ),
        (
            {"customer_id": "c", "items": [{"product_id": "p1", "quantity": True}]},
            ["items[0].quantity"],
        ),
        (
            {"customer_id": "c", "items": [{"product_id": "p1", "quantity": 1.5}]},
            ["items[0].quantity"],
        ),
        ({"customer_id": "c", "items": [{"product_id": "p1"}]}, ["items[0].quantity"]),
        ({"customer_id": "c", "items": [{"quantity": 1}]}, ["items[0].product_id"]),
        ({"customer_id": "c", "items": [{"product_id": "p1", "quantity": 1}, "p2"]}, ["items[1]"]),
        (
            {"customer_id": None, "items": [{"product_id": "", "quantity": -1}]},
            ["customer_id", "items[0].product_id", "items[0].quantity"],
        ),
        ([GOOD_ORDER], ["body"]),
    ],
)
async def test_bad_checkout_body_is_a_400_naming_every_field(
    http: httpx.AsyncClient, fakes: Fakes, body: Any, fields: list[str]
) -> None:
    response = await http.post("/api/checkout", json=body, headers=KEY)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_argument"
    assert fields_of(response) == fields
    assert fakes.orders.placed == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"\xff\xfe", "not valid"),
    ],
)
async def test_malformed_json_is_a_400_with_a_message(
    http: httpx.AsyncClient, content: bytes, message: str
) -> None:
    response = await http.post(
        "/api/checkout", content=content, headers={**KEY, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_argument"
    assert message in error["message"]
    assert error["fields"] == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # Python refuses to parse integers of more than 4300 digits (ValueError).
        (
            b'{"customer_id": "c", "items": [{"product_id": "p1", "quantity": '
            + b"9" * 5000
            + b"}]}",
            "too many digits",
        ),
        # Nesting deeper than the parser's recursion limit (RecursionError).
        (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
    ],
)
async def test_json_the_parser_cannot_take_is_a_400_not_a_500(
    http: httpx.AsyncClient, fakes: Fakes, content: bytes, message: str
) -> None:
    response = await http.post(
        "/api/checkout", content=content, headers={**KEY, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_argument"
    assert message in error["message"]
    assert fakes.orders.placed == []


@pytest.mark.parametrize(
    ("content", "field"),
    [
        # A lone surrogate is valid JSON but no UTF-8 string: gRPC cannot send it.
        (
            b'{"customer_id": "\\ud800", "items": [{"product_id": "p1", "quantity": 1}]}',
            "customer_id",
        ),
        (
            b'{"customer_id": "c", "items": [{"product_id": "p\\udfff", "quantity": 1}]}',
            "items[0].product_id",
        ),
        # NUL and other control characters cannot be stored as text.
        (
            b'{"customer_id": "eve\\u0000", "items": [{"product_id": "p1", "quantity": 1}]}',
            "customer_id",
        ),
        (
            b'{"customer_id": "c", "items": [{"product_id": "p1\\u0007", "quantity": 1}]}',
            "items[0].product_id",
        ),
    ],
)
async def test_unprintable_strings_are_a_400_naming_the_field(
    http: httpx.AsyncClient, fakes: Fakes, content: bytes, field: str
) -> None:
    response = await http.post(
        "/api/checkout", content=content, headers={**KEY, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert fields_of(response) == [field]
    assert fakes.orders.placed == []


async def test_whole_number_floats_are_quantities(http: httpx.AsyncClient, fakes: Fakes) -> None:
    body = {"customer_id": "c", "items": [{"product_id": "p1", "quantity": 2.0}]}
    assert (await http.post("/api/checkout", json=body, headers=KEY)).status_code == 201
    assert fakes.orders.placed[0].items[0].quantity == 2


async def test_checkout_needs_a_json_content_type(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/checkout",
        content=json.dumps(GOOD_ORDER),
        headers={**KEY, "Content-Type": "text/plain"},
    )
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


async def test_oversized_body_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/checkout",
        content=b'{"customer_id": "' + b"x" * 70_000 + b'"}',
        headers={**KEY, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


async def test_orders_field_violations_come_back_as_the_same_fields(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    fakes.orders.behaviour.error = InvalidArgument(
        [
            FieldViolation("items[0].product_id", "unknown product"),
            FieldViolation("idempotency_key", "too long"),
        ]
    )
    response = await http.post("/api/checkout", json=GOOD_ORDER, headers=KEY)
    assert response.status_code == 400
    assert error_of(response)["fields"] == [
        {"field": "items[0].product_id", "description": "unknown product"},
        {"field": "idempotency_key", "description": "too long"},
    ]


@pytest.mark.parametrize(
    ("error", "status", "code", "words"),
    [
        (FailedPrecondition("p1 is out of stock"), 409, "conflict", "out of stock"),
        (Unavailable("orders unavailable", "orders"), 503, "unavailable", "orders is unavailable"),
        (Unavailable("catalog (behind orders)", "catalog"), 503, "unavailable", "catalog is"),
        (DeadlineExceeded("orders timed out", "orders"), 504, "deadline_exceeded", "orders did"),
        (NotFound("no product p9"), 404, "not_found", "p9"),
        (RuntimeError("bug with a secret"), 500, "internal", "internal error"),
    ],
)
async def test_checkout_errors_map_to_statuses(
    http: httpx.AsyncClient,
    fakes: Fakes,
    error: Exception,
    status: int,
    code: str,
    words: str,
) -> None:
    fakes.orders.behaviour.error = error
    response = await http.post("/api/checkout", json=GOOD_ORDER, headers=KEY)
    assert response.status_code == status
    body = error_of(response)
    assert body["code"] == code
    assert words in body["message"]
    assert "secret" not in body["message"]


async def test_checkout_answers_within_its_budget(
    make_storefront: Callable[..., Storefront], fakes: Fakes
) -> None:
    fakes.orders.behaviour.delay = 30
    app = build_app(make_storefront(Budgets(checkout=0.2)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
    ) as client:
        started = time.perf_counter()
        response = await client.post("/api/checkout", json=GOOD_ORDER, headers=KEY)
    assert response.status_code == 504
    assert time.perf_counter() - started < 0.3


# --- order status ---------------------------------------------------------------


async def test_order_status(http: httpx.AsyncClient) -> None:
    placed = (await http.post("/api/checkout", json=GOOD_ORDER, headers=KEY)).json()["order"]
    response = await http.get(f"/api/orders/{placed['order_id']}")
    assert response.status_code == 200
    order = response.json()["order"]
    assert order["status"] == "pending"
    assert order["created_at"].endswith("Z")
    assert order["total"] == {"currency_code": "EUR", "amount_minor": 2000}


async def test_unknown_order_is_a_404(http: httpx.AsyncClient) -> None:
    response = await http.get(f"/api/orders/{uuid.uuid4()}")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


async def test_order_id_is_checked(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/orders/" + "x" * 200)
    assert response.status_code == 400
    assert fields_of(response) == ["order_id"]


# --- HTTP-level errors, page, telemetry ----------------------------------------------


async def test_wrong_method_and_unknown_path_are_json(http: httpx.AsyncClient) -> None:
    wrong = await http.get("/api/checkout")
    assert wrong.status_code == 405
    assert error_of(wrong)["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["allow"]
    unknown = await http.get("/api/nothing-here")
    assert unknown.status_code == 404
    assert error_of(unknown)["code"] == "not_found"


async def test_storefront_page_and_assets(http: httpx.AsyncClient) -> None:
    page = await http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'data-testid="view"' in page.text
    script = await http.get("/static/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "randomUUID" in script.text
    again = await http.get("/static/app.js", headers={"If-None-Match": script.headers["etag"]})
    assert again.status_code == 304
    assert (await http.get("/static/app.css")).headers["content-type"].startswith("text/css")
    missing = await http.get("/static/../main.py")
    assert missing.status_code == 404


async def test_metrics_and_access_log_use_the_route_template(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    labels = {"route": "/api/products/{product_id}", "method": "GET", "status": "200"}
    before = metric("emporium_http_requests_total", labels)
    with caplog.at_level(logging.INFO, logger="emporium.gateway.access"):
        await http.get("/api/products/p2")
        await http.get("/api/products/p3")
    assert metric("emporium_http_requests_total", labels) == before + 2
    duration = {"route": "/api/products/{product_id}", "method": "GET"}
    assert metric("emporium_http_request_duration_seconds_count", duration) >= 2
    lines = [r for r in caplog.records if r.name == "emporium.gateway.access"]
    assert len(lines) == 2
    assert vars(lines[0])["http_route"] == "/api/products/{product_id}"
    assert vars(lines[0])["http_path"] == "/api/products/p2"
    assert vars(lines[0])["http_status"] == 200
    assert vars(lines[0])["duration_ms"] >= 0
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    before = metric("emporium_http_requests_total", unmatched)
    await http.get("/no/such/path")
    assert metric("emporium_http_requests_total", unmatched) == before + 1


async def test_one_server_span_per_request_named_after_the_route(
    make_storefront: Callable[..., Storefront],
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = build_app(make_storefront(), tracer_provider=provider)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
    ) as client:
        traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        await client.get("/api/products/p1", headers={"traceparent": traceparent})
    spans = exporter.get_finished_spans()
    assert len(spans) == 1
    span = spans[0]
    assert span.name == "GET /api/products/{product_id}"
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/api/products/{product_id}"
    assert span.attributes["http.method"] == "GET"
    assert span.attributes["http.status_code"] == 200
    assert span.attributes["http.target"] == "/api/products/p1"
    assert span.kind is SpanKind.SERVER
    # The caller's trace continues through the gateway.
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"


async def test_server_span_of_an_unmatched_path_and_of_a_server_error(
    make_storefront: Callable[..., Storefront], fakes: Fakes
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = build_app(make_storefront(), tracer_provider=provider)
    fakes.catalog.behaviour.error = Unavailable("catalog down", "catalog")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
    ) as client:
        assert (await client.get("/no/such/path")).status_code == 404
        assert (await client.get("/api/products/p1")).status_code == 503
    unmatched, failed = exporter.get_finished_spans()
    assert unmatched.name == "GET"  # never the raw path
    assert unmatched.attributes is not None
    assert "http.route" not in unmatched.attributes
    assert unmatched.attributes["http.status_code"] == 404
    assert unmatched.status.status_code is StatusCode.UNSET
    assert failed.name == "GET /api/products/{product_id}"
    assert failed.attributes is not None
    assert failed.attributes["http.status_code"] == 503
    assert failed.status.status_code is StatusCode.ERROR


async def test_concurrent_product_pages_share_one_catalog_load(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    fakes.catalog.behaviour.delay = 0.02
    responses = await asyncio.gather(*(http.get("/api/products/p4") for _ in range(20)))
    assert all(r.status_code == 200 for r in responses)
    assert fakes.catalog.requested.count("p4") == 1


async def test_a_refusal_beyond_the_limit_is_counted_but_not_traced(
    make_storefront: Callable[..., Storefront], fakes: Fakes
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = build_app(
        make_storefront(),
        tracer_provider=provider,
        max_concurrent_requests=1,
        retry_after_seconds=7,
    )
    fakes.catalog.behaviour.delay = 0.2  # the first page holds the only slot
    refused_label = {"route": "unmatched", "method": "GET", "status": "503"}
    before = metric("emporium_http_requests_total", refused_label)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
    ) as client:
        first, *others = await asyncio.gather(
            *(client.get(f"/api/products/p{i}") for i in (1, 2, 3))
        )
    assert first.status_code == 200
    assert [r.status_code for r in others] == [503, 503]
    assert all(r.headers["retry-after"] == "7" for r in others)
    assert all(r.json()["error"]["code"] == "overloaded" for r in others)
    assert metric("emporium_http_requests_total", refused_label) == before + 2
    assert [s.name for s in exporter.get_finished_spans()] == ["GET /api/products/{product_id}"]
