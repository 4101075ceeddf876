"""Refusals stay small: at most 20 field violations listed, the rest counted.

Over a real gRPC socket: a handler refusing 10,000 cart lines at once answers
with a status of a few hundred bytes, whose message says how many were left
out, and the kit's client reads it back as the same capped error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from emporium.kit import errors
from emporium.kit.config import Downstream
from emporium.kit.grpc import DownstreamClient, build_server

pytestmark = pytest.mark.unit

LINES = 10_000


def every_line_refused() -> errors.InvalidArgument:
    return errors.InvalidArgument(
        [
            errors.FieldViolation(f"items[{index}].product_id", "appears more than once")
            for index in range(1, LINES)
        ]
    )


def test_the_error_lists_twenty_violations_and_counts_the_rest() -> None:
    error = every_line_refused()
    assert len(error.violations) == errors.MAX_LISTED_VIOLATIONS == 20
    assert error.unlisted == LINES - 1 - 20
    assert error.violations[0].field == "items[1].product_id"
    assert error.message.endswith("items[20].product_id: appears more than once; and 9,979 more")
    assert len(error.message) < 1000


def test_a_short_list_is_given_whole() -> None:
    error = errors.InvalidArgument({"customer_id": "is required", "items": "is required"})
    assert error.unlisted == 0
    assert error.message == "invalid request: customer_id: is required; items: is required"


class Refusing(catalog_pb2_grpc.CatalogServiceServicer):
    async def GetProduct(
        self, request: catalog_pb2.GetProductRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.GetProductResponse:
        raise every_line_refused()


@pytest.fixture
async def refusing_port() -> AsyncIterator[int]:
    built = build_server(
        host="127.0.0.1",
        port=0,
        servicers=[(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, Refusing())],
        service_names=[catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name],
        interceptors=[],
    )
    await built.server.start()
    yield built.port
    await built.server.stop(None)


async def test_the_grpc_status_of_ten_thousand_refused_lines_is_small(refusing_port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{refusing_port}") as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetProduct(catalog_pb2.GetProductRequest(product_id="p"), timeout=5)
    error = refused.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert len(bad_request.field_violations) == 20
    assert status.message.endswith("; and 9,979 more")
    size = status.ByteSize()
    print(f"status of {LINES:,} refused lines: {size} bytes")
    assert size < 2048


async def test_the_kit_client_reads_the_capped_refusal_back(refusing_port: int) -> None:
    client = DownstreamClient(
        Downstream(name="catalog", addr=f"127.0.0.1:{refusing_port}", timeout_ms=2000)
    )
    try:
        stub = catalog_pb2_grpc.CatalogServiceStub(client.channel)
        with pytest.raises(errors.InvalidArgument) as refused:
            await client.call(stub.GetProduct, catalog_pb2.GetProductRequest(product_id="p"))
    finally:
        await client.close()
    assert len(refused.value.violations) == 20
    assert refused.value.message.endswith("; and 9,979 more")
