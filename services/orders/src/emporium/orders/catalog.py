"""The catalog as checkout sees it: :class:`domain.Catalog` over the kit's gRPC client."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence

from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from emporium.kit.grpc import DownstreamClient
from emporium.orders import domain, messages


class CatalogClient:
    def __init__(self, client: DownstreamClient) -> None:
        self._client = client
        self._stub = catalog_pb2_grpc.CatalogServiceStub(client.channel)

    async def get_prices(self, product_ids: Sequence[str]) -> dict[str, domain.Money]:
        reply = await self._client.call(
            self._stub.BatchGetPrices,
            catalog_pb2.BatchGetPricesRequest(product_ids=list(product_ids)),
            idempotent=True,
        )
        return {price.product_id: messages.money_from_wire(price.price) for price in reply.prices}

    async def reserve_stock(self, order_id: str, items: Sequence[domain.RequestedItem]) -> None:
        # Safe to retry: the catalog keys reservations by order id, so a second
        # attempt after a lost answer changes nothing (catalog.proto).
        await self._client.call(
            self._stub.ReserveStock,
            catalog_pb2.ReserveStockRequest(
                order_id=order_id,
                items=[
                    catalog_pb2.StockItem(product_id=i.product_id, quantity=i.quantity)
                    for i in items
                ],
            ),
            idempotent=True,
        )

    async def release_stock(self, order_id: str) -> None:
        # A compensation: it runs outside the request's deadline (which may be
        # what just ran out), bounded by the catalog budget and its retries.
        release = asyncio.create_task(
            self._client.call(
                self._stub.ReleaseStock,
                catalog_pb2.ReleaseStockRequest(order_id=order_id),
                idempotent=True,
            ),
            context=contextvars.Context(),
        )
        await asyncio.shield(release)
