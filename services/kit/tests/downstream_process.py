"""A downstream gRPC service in its own process, for tests that kill and restart one.

    python downstream_process.py PORT READY_AFTER_SECONDS

Serves CatalogService.GetProduct and the standard health service on
127.0.0.1:PORT through the kit's ``build_server``. Health says NOT_SERVING
until READY_AFTER_SECONDS have passed (a service still checking its own
dependencies), then SERVING, and prints one line ``serving`` when it does.
"""

from __future__ import annotations

import asyncio
import sys

import grpc

from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from emporium.kit.grpc import build_server, set_serving

CATALOG = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name


class Catalog(catalog_pb2_grpc.CatalogServiceServicer):
    async def GetProduct(
        self, request: catalog_pb2.GetProductRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.GetProductResponse:
        return catalog_pb2.GetProductResponse(
            product=catalog_pb2.Product(product_id=request.product_id, name="Teapot")
        )


async def serve(port: int, ready_after: float) -> None:
    built = build_server(
        host="127.0.0.1",
        port=port,
        servicers=[(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, Catalog())],
        service_names=[CATALOG],
    )
    await built.server.start()
    await asyncio.sleep(ready_after)
    task = set_serving(built.health, [CATALOG], True)
    if task is not None:
        await task
    print("serving", flush=True)
    await built.server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), float(sys.argv[2])))
