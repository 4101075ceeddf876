"""The services orders calls, behind the domain's protocols.

:class:`CatalogClient` is :class:`domain.Catalog` (the catalog as checkout
sees it) over the kit's gRPC client.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence

from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from emporium.kit.errors import NotFound
from emporium.kit.grpc import DownstreamClient
from emporium.orders import domain, messages


class CatalogClient:
    def __init__(self, client: DownstreamClient) -> None:
        self._client = client
        self._stub = catalog_pb2_grpc.CatalogServiceStub(client.channel)

    async def get_prices(self, product_ids: Sequence[str]) -> dict[str, domain.Money]:
        """Prices of the products the catalog knows; unknown ones are left out."""
        try:
            reply = await self._client.call(
                self._stub.BatchGetPrices,
                catalog_pb2.BatchGetPricesRequest(product_ids=list(product_ids)),
                idempotent=True,
            )
        except NotFound:
            # BatchGetPrices is all or nothing. Only on this error path, ask per
            # product, so checkout can name the cart lines that are unknown.
            return await self._known_prices(product_ids)
        return {price.product_id: messages.money_from_wire(price.price) for price in reply.prices}

    async def _known_prices(self, product_ids: Sequence[str]) -> dict[str, domain.Money]:
        async def price_of(product_id: str) -> tuple[str, domain.Money] | None:
            try:
                reply = await self._client.call(
                    self._stub.GetProduct,
                    catalog_pb2.GetProductRequest(product_id=product_id),
                    idempotent=True,
                )
            except NotFound:
                return None
            return product_id, messages.money_from_wire(reply.product.price)

        found = await asyncio.gather(*(price_of(product_id) for product_id in product_ids))
        return dict(entry for entry in found if entry is not None)

    async def reserve_stock(
        self, order_id: str, items: Sequence[domain.RequestedItem]
    ) -> dict[str, domain.Money]:
        # Safe to retry: the catalog keys reservations by order id, so a second
        # attempt after a lost answer changes nothing (catalog.proto).
        reply = await self._client.call(
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
        prices = {price.product_id: messages.money_from_wire(price.price) for price in reply.prices}
        # A catalog older than the prices in its answer (during a rolling
        # upgrade) answers without them: ask as before.
        unpriced = [item.product_id for item in items if item.product_id not in prices]
        if unpriced:
            prices.update(await self.get_prices(unpriced))
        return prices

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
        # If the caller is cancelled meanwhile, the release goes on and its outcome
        # is not awaited: retrieve it here (a failure leaves the pending
        # reservation claimed, and the sweeper releases it).
        release.add_done_callback(_retrieve)
        await asyncio.shield(release)


def _retrieve(task: asyncio.Task[object]) -> None:
    if not task.cancelled():
        task.exception()
