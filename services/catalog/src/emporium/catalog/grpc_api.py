"""The gRPC face of the catalog: wire messages in, domain calls, wire messages out.

Errors are raised as the kit's exceptions; the kit's interceptor maps them to
status codes with field violations.
"""

from __future__ import annotations

import grpc

from emporium.catalog.domain import Catalog, Money, Product, StockLine
from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from emporium.common.v1 import money_pb2

SERVICE_NAME = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name


def _money(money: Money) -> money_pb2.Money:
    return money_pb2.Money(currency_code=money.currency_code, amount_minor=money.amount_minor)


def _product(product: Product) -> catalog_pb2.Product:
    return catalog_pb2.Product(
        product_id=product.product_id,
        name=product.name,
        description=product.description,
        category=product.category,
        price=_money(product.price),
        stock_available=product.stock_available,
    )


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def GetProduct(
        self, request: catalog_pb2.GetProductRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.GetProductResponse:
        product = await self._catalog.get_product(request.product_id)
        return catalog_pb2.GetProductResponse(product=_product(product))

    async def ListProducts(
        self, request: catalog_pb2.ListProductsRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ListProductsResponse:
        page = await self._catalog.list_products(request.page_size, request.page_token)
        return catalog_pb2.ListProductsResponse(
            products=[_product(p) for p in page.products], next_page_token=page.next_page_token
        )

    async def BatchGetPrices(
        self, request: catalog_pb2.BatchGetPricesRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.BatchGetPricesResponse:
        prices = await self._catalog.batch_get_prices(list(request.product_ids))
        return catalog_pb2.BatchGetPricesResponse(
            prices=[
                catalog_pb2.ProductPrice(product_id=product_id, price=_money(price))
                for product_id, price in prices
            ]
        )

    async def ReserveStock(
        self, request: catalog_pb2.ReserveStockRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ReserveStockResponse:
        lines = [StockLine(item.product_id, item.quantity) for item in request.items]
        await self._catalog.reserve_stock(request.order_id, lines)
        return catalog_pb2.ReserveStockResponse()

    async def ReleaseStock(
        self, request: catalog_pb2.ReleaseStockRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ReleaseStockResponse:
        await self._catalog.release_stock(request.order_id)
        return catalog_pb2.ReleaseStockResponse()
