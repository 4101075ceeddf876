"""The gRPC face of orders: wire message in, domain call, wire message out.

Errors are raised as the kit's exceptions; the server interceptor maps them
to status codes (INVALID_ARGUMENT with field violations, NOT_FOUND...).
"""

from __future__ import annotations

import grpc

from emporium.orders import domain, messages
from emporium.orders.v1 import orders_pb2, orders_pb2_grpc

SERVICE_NAME = orders_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name


class OrderServicer(orders_pb2_grpc.OrderServiceServicer):
    def __init__(self, checkout: domain.Checkout) -> None:
        self._checkout = checkout

    async def PlaceOrder(
        self, request: orders_pb2.PlaceOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.PlaceOrderResponse:
        result = await self._checkout.place_order(messages.place_order_from_wire(request))
        return orders_pb2.PlaceOrderResponse(
            order=messages.order_to_wire(result.order), created=result.created
        )

    async def GetOrder(
        self, request: orders_pb2.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.GetOrderResponse:
        order = await self._checkout.get_order(request.order_id)
        return orders_pb2.GetOrderResponse(order=messages.order_to_wire(order))
