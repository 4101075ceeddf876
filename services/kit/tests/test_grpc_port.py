"""A second server on a port another one holds fails at start, not with half the calls."""

from __future__ import annotations

import pytest

from emporium.catalog.v1 import catalog_pb2_grpc
from emporium.kit.grpc import BuiltServer, build_server

pytestmark = pytest.mark.unit


def _build(port: int) -> BuiltServer:
    servicer = catalog_pb2_grpc.CatalogServiceServicer()
    return build_server(
        host="127.0.0.1",
        port=port,
        servicers=[(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, servicer)],
        service_names=["emporium.catalog.v1.CatalogService"],
    )


async def test_a_taken_port_is_refused() -> None:
    first = _build(0)
    await first.server.start()
    try:
        with pytest.raises(RuntimeError, match="Failed to bind"):
            _build(first.port)
    finally:
        await first.server.stop(None)
