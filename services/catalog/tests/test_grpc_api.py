"""The catalog over real gRPC on a loopback port, against a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from emporium.catalog.repository import PostgresCatalogRepository, SeedProduct
from emporium.catalog.seed import DEMO_PRODUCTS
from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc

pytestmark = pytest.mark.integration

Stub = catalog_pb2_grpc.CatalogServiceStub


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def _product(pool: Any, stock: int, price: int = 1000) -> str:
    product_id = _id("p")
    await PostgresCatalogRepository(pool).upsert_products(
        [SeedProduct(product_id, f"Product {product_id}", "", "test", price, "EUR", stock)]
    )
    return product_id


def _reserve(order_id: str, *items: tuple[str, int]) -> catalog_pb2.ReserveStockRequest:
    return catalog_pb2.ReserveStockRequest(
        order_id=order_id,
        items=[catalog_pb2.StockItem(product_id=p, quantity=q) for p, q in items],
    )


async def _available(stub: Stub, product_id: str) -> int:
    reply = await stub.GetProduct(catalog_pb2.GetProductRequest(product_id=product_id))
    return reply.product.stock_available


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The BadRequest field violations carried in the status details."""
    status = rpc_status.from_call(error)
    assert status is not None, "INVALID_ARGUMENT without status details"
    found: dict[str, str] = {}
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            found.update({v.field: v.description for v in bad_request.field_violations})
    return found


async def _code_of(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_get_product_returns_price_and_stock(stub: Stub, pool: Any) -> None:
    product_id = await _product(pool, stock=7, price=2490)
    reply = await stub.GetProduct(catalog_pb2.GetProductRequest(product_id=product_id))
    assert reply.product.product_id == product_id
    assert reply.product.price.currency_code == "EUR"
    assert reply.product.price.amount_minor == 2490
    assert reply.product.stock_available == 7


async def test_get_product_errors(stub: Stub) -> None:
    missing = await _code_of(stub.GetProduct(catalog_pb2.GetProductRequest(product_id="ghost")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    empty = await _code_of(stub.GetProduct(catalog_pb2.GetProductRequest(product_id="")))
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(empty) == {"product_id": "is required"}
    malformed = await _code_of(stub.GetProduct(catalog_pb2.GetProductRequest(product_id="a b")))
    assert malformed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(malformed)) == ["product_id"]


async def test_list_products_pages_by_keyset(stub: Stub, pool: Any) -> None:
    for _ in range(5):
        await _product(pool, stock=1)
    seen: list[str] = []
    token = ""
    while True:
        reply = await stub.ListProducts(
            catalog_pb2.ListProductsRequest(page_size=2, page_token=token)
        )
        assert len(reply.products) <= 2
        seen += [p.product_id for p in reply.products]
        token = reply.next_page_token
        if not token:
            break
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen)) >= 5
    first = await stub.ListProducts(catalog_pb2.ListProductsRequest())
    assert len(first.products) == min(20, len(seen))


async def test_list_products_bad_input(stub: Stub) -> None:
    token = await _code_of(stub.ListProducts(catalog_pb2.ListProductsRequest(page_token="zz!")))
    assert token.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(token)) == ["page_token"]
    size = await _code_of(stub.ListProducts(catalog_pb2.ListProductsRequest(page_size=101)))
    assert list(field_violations(size)) == ["page_size"]


async def test_batch_get_prices(stub: Stub, pool: Any) -> None:
    a, b = await _product(pool, 1, price=590), await _product(pool, 1, price=8900)
    reply = await stub.BatchGetPrices(catalog_pb2.BatchGetPricesRequest(product_ids=[b, a]))
    assert [(p.product_id, p.price.amount_minor) for p in reply.prices] == [(b, 8900), (a, 590)]
    missing = await _code_of(
        stub.BatchGetPrices(catalog_pb2.BatchGetPricesRequest(product_ids=[a, "ghost-1"]))
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert "ghost-1" in (missing.details() or "")
    empty = await _code_of(stub.BatchGetPrices(catalog_pb2.BatchGetPricesRequest()))
    assert list(field_violations(empty)) == ["product_ids"]
    too_many = [f"p{i}" for i in range(101)]
    many = await _code_of(
        stub.BatchGetPrices(catalog_pb2.BatchGetPricesRequest(product_ids=too_many))
    )
    assert list(field_violations(many)) == ["product_ids"]


async def test_reserve_stock_field_violations(stub: Stub, pool: Any) -> None:
    product_id = await _product(pool, 10)
    error = await _code_of(
        stub.ReserveStock(_reserve("", (product_id, 0), (product_id, 101), ("", 1)))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(error)) == {
        "order_id",
        "items[0].quantity",
        "items[1].product_id",
        "items[1].quantity",
        "items[2].product_id",
    }
    none = await _code_of(stub.ReserveStock(_reserve(_id("o"))))
    assert list(field_violations(none)) == ["items"]
    assert await _available(stub, product_id) == 10


async def test_reserve_is_idempotent_and_all_or_nothing(stub: Stub, pool: Any) -> None:
    plenty, scarce = await _product(pool, 10, price=590), await _product(pool, 2, price=8900)
    order_id = _id("o")
    request = _reserve(order_id, (plenty, 3), (scarce, 2))
    first = await stub.ReserveStock(request)
    again = await stub.ReserveStock(request)  # a retry changes nothing
    assert (await _available(stub, plenty), await _available(stub, scarce)) == (7, 0)
    # Both answers carry the reserved products' prices (checkout charges them).
    for reply in (first, again):
        assert sorted(
            (p.product_id, p.price.currency_code, p.price.amount_minor) for p in reply.prices
        ) == sorted([(plenty, "EUR", 590), (scarce, "EUR", 8900)])

    refused = await _code_of(stub.ReserveStock(_reserve(_id("o"), (plenty, 1), (scarce, 1))))
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.details() == f"insufficient stock for {scarce}"
    assert await _available(stub, plenty) == 7  # nothing of the refused order was kept

    unknown = await _code_of(stub.ReserveStock(_reserve(_id("o"), (plenty, 1), ("ghost", 1))))
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    assert await _available(stub, plenty) == 7

    different = await _code_of(stub.ReserveStock(_reserve(order_id, (plenty, 4))))
    assert different.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_release_is_idempotent_and_final(stub: Stub, pool: Any) -> None:
    product_id = await _product(pool, 5)
    order_id = _id("o")
    await stub.ReserveStock(_reserve(order_id, (product_id, 5)))
    assert await _available(stub, product_id) == 0
    await stub.ReleaseStock(catalog_pb2.ReleaseStockRequest(order_id=order_id))
    await stub.ReleaseStock(catalog_pb2.ReleaseStockRequest(order_id=order_id))
    assert await _available(stub, product_id) == 5
    late = await _code_of(stub.ReserveStock(_reserve(order_id, (product_id, 5))))
    assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await _available(stub, product_id) == 5
    bad = await _code_of(stub.ReleaseStock(catalog_pb2.ReleaseStockRequest()))
    assert list(field_violations(bad)) == ["order_id"]


async def test_concurrent_reservations_never_oversell(stub: Stub, pool: Any) -> None:
    """20 orders race for the last 5 units: exactly 5 get one."""
    product_id = await _product(pool, 5)
    other = await _product(pool, 100)  # a second row locked by every call
    calls = [stub.ReserveStock(_reserve(_id("o"), (other, 1), (product_id, 1))) for _ in range(20)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    failures = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(results) - len(failures) == 5
    assert {f.code() for f in failures} == {grpc.StatusCode.FAILED_PRECONDITION}
    assert await _available(stub, product_id) == 0
    assert await _available(stub, other) == 95
    row = await pool.fetchrow(
        "SELECT stock_reserved, (SELECT sum(quantity) FROM stock_reservations"
        " WHERE product_id = $1 AND state = 'reserved') AS active FROM products WHERE id = $1",
        product_id,
    )
    assert (row["stock_reserved"], row["active"]) == (5, 5)


async def test_concurrent_retries_of_one_order_reserve_once(stub: Stub, pool: Any) -> None:
    product_id = await _product(pool, 50)
    request = _reserve(_id("o"), (product_id, 3))
    await asyncio.gather(*(stub.ReserveStock(request) for _ in range(10)))
    assert await _available(stub, product_id) == 47


async def test_seed_is_idempotent_and_keeps_stock(pool: Any) -> None:
    repository = PostgresCatalogRepository(pool)
    await repository.upsert_products(DEMO_PRODUCTS)
    ids = [p.product_id for p in DEMO_PRODUCTS]
    await pool.execute(
        "UPDATE products SET stock_reserved = 1 WHERE id = $1 AND stock_on_hand > 0", ids[0]
    )
    before = await pool.fetch("SELECT * FROM products WHERE id = ANY($1) ORDER BY id", ids)
    await repository.upsert_products(DEMO_PRODUCTS)
    after = await pool.fetch("SELECT * FROM products WHERE id = ANY($1) ORDER BY id", ids)
    assert [dict(r) for r in after] == [dict(r) for r in before]
    assert len(after) == len(DEMO_PRODUCTS) >= 12
    assert any(r["stock_on_hand"] == 0 for r in after)
