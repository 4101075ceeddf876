"""The gRPC face of the catalog: wire messages in, domain calls, wire messages out.

Errors are raised as the kit's exceptions; the kit's interceptor maps them to
status codes with field violations.
"""

from __future__ import annotations

import grpc

from emporium.catalog import domain, messages
from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc

SERVICE_NAME = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, catalog: domain.Catalog) -> None:
        self._catalog = catalog

    async def GetProduct(
        self, request: catalog_pb2.GetProductRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.GetProductResponse:
        product = await self._catalog.get_product(request.product_id)
        return catalog_pb2.GetProductResponse(product=messages.product_to_wire(product))

    async def ListProducts(
        self, request: catalog_pb2.ListProductsRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ListProductsResponse:
        page = await self._catalog.list_products(request.page_size, request.page_token)
        return catalog_pb2.ListProductsResponse(
            products=[messages.product_to_wire(p) for p in page.products],
            next_page_token=page.next_page_token,
        )

    async def BatchGetPrices(
        self, request: catalog_pb2.BatchGetPricesRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.BatchGetPricesResponse:
        prices = await self._catalog.batch_get_prices(list(request.product_ids))
        return catalog_pb2.BatchGetPricesResponse(
            prices=[messages.product_price_to_wire(pid, price) for pid, price in prices]
        )

    async def ReserveStock(
        self, request: catalog_pb2.ReserveStockRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ReserveStockResponse:
        lines = messages.stock_lines_from_wire(request.items)
        reserved = await self._catalog.reserve_stock(request.order_id, lines)
        return catalog_pb2.ReserveStockResponse(
            prices=[
                messages.product_price_to_wire(product_id, price)
                for product_id, price in sorted(reserved.prices.items())
            ]
        )

    async def ReleaseStock(
        self, request: catalog_pb2.ReleaseStockRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ReleaseStockResponse:
        await self._catalog.release_stock(request.order_id)
        return catalog_pb2.ReleaseStockResponse()
