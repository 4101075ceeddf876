"""A second server on a port another one holds fails at start, not with half the calls."""

from __future__ import annotations

import socket

import pytest

from emporium.catalog.v1 import catalog_pb2_grpc
from emporium.kit.config import ServiceSettings
from emporium.kit.grpc import BuiltServer, build_server
from emporium.kit.service import PortTaken, Service

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


def test_a_service_whose_port_is_taken_stops_before_it_connects_anything() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        settings = ServiceSettings(bind_host="127.0.0.1", grpc_port=taken, admin_port=taken + 1)
        with pytest.raises(PortTaken, match=f"GRPC_PORT={taken}: cannot listen on 127.0.0.1"):
            Service("ports", settings)
