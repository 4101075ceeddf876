"""Recommendations over real gRPC on a loopback port, against a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from emporium.recommendations.domain import record_order
from emporium.recommendations.repository import PostgresCoPurchaseLedger
from emporium.recommendations.v1 import recommendations_pb2, recommendations_pb2_grpc

pytestmark = pytest.mark.integration

Stub = recommendations_pb2_grpc.RecommendationServiceStub


def _ids(*names: str) -> list[str]:
    suffix = uuid.uuid4().hex[:8]
    return [f"{name}-{suffix}" for name in names]


async def _place(pool: Any, order_id: str, product_ids: list[str]) -> int:
    async with pool.unit_of_work() as conn:
        return await record_order(PostgresCoPurchaseLedger(conn), order_id, product_ids)


async def _list(stub: Stub, product_id: str, max_results: int = 0) -> list[tuple[str, int]]:
    reply = await stub.ListRecommendations(
        recommendations_pb2.ListRecommendationsRequest(
            product_id=product_id, max_results=max_results
        )
    )
    return [(r.product_id, r.score) for r in reply.recommendations]


def _violations(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    fields: list[str] = []
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            fields += [v.field for v in bad_request.field_violations]
    return fields


async def test_unknown_product_has_no_recommendations(stub: Stub) -> None:
    assert await _list(stub, "never-bought") == []


async def test_top_co_purchased_by_count_then_id(stub: Stub, pool: Any) -> None:
    grinder, beans, scale, filters, kettle, mug = _ids(
        "grinder", "beans", "scale", "filters", "kettle", "mug"
    )
    await _place(pool, f"o1-{grinder}", [grinder, beans, scale])
    await _place(pool, f"o2-{grinder}", [grinder, beans])
    await _place(pool, f"o3-{grinder}", [grinder, kettle])
    await _place(pool, f"o4-{grinder}", [grinder, filters])
    await _place(pool, f"o5-{grinder}", [grinder, mug])
    assert await _list(stub, grinder) == [(beans, 2), (filters, 1), (kettle, 1), (mug, 1)]
    assert await _list(stub, grinder, 20) == [
        (beans, 2),
        (filters, 1),
        (kettle, 1),
        (mug, 1),
        (scale, 1),
    ]
    assert await _list(stub, grinder, 1) == [(beans, 2)]
    assert await _list(stub, scale) == [(beans, 1), (grinder, 1)]


async def test_one_order_counts_once(stub: Stub, pool: Any) -> None:
    a, b = _ids("a", "b")
    order_id = f"o-{a}"
    assert await _place(pool, order_id, [a, b]) == 2
    assert await _place(pool, order_id, [a, b]) == 0
    assert await _list(stub, a) == [(b, 1)]


async def test_concurrent_orders_all_count(stub: Stub, pool: Any) -> None:
    a, b, c = _ids("a", "b", "c")
    await asyncio.gather(*(_place(pool, f"o{i}-{a}", [c, a, b]) for i in range(8)))
    assert await _list(stub, a) == [(b, 8), (c, 8)]


async def test_bad_requests_are_invalid_argument(stub: Stub) -> None:
    for request, fields in [
        (recommendations_pb2.ListRecommendationsRequest(), ["product_id"]),
        (
            recommendations_pb2.ListRecommendationsRequest(product_id="x", max_results=21),
            ["max_results"],
        ),
        (
            recommendations_pb2.ListRecommendationsRequest(product_id="a b", max_results=-1),
            ["product_id", "max_results"],
        ),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListRecommendations(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _violations(caught.value) == fields
