"""gRPC for the services: the server bootstrap and clients for downstreams.

Serving (the runtime in :mod:`emporium.kit.service` does this)::

    server, health_servicer = build_server(
        host="0.0.0.0",
        port=50051,
        servicers=[(add_CatalogServiceServicer_to_server, CatalogServicer(...))],
        service_names=["emporium.catalog.v1.CatalogService"],
    )
    health.on_readiness_change(lambda ready: set_serving(health_servicer, names, ready))
    await server.start()

Handlers raise the kit's errors (``NotFound``, ``InvalidArgument({"quantity": "must
be positive"})``...); the server maps them to status codes with rich details.

Calling a downstream::

    breakers = BreakerRegistry()
    breakers.expose_on(health)  # /healthz "breakers"
    catalog = DownstreamClient(
        downstream(settings, "catalog"), health=health, critical=True, breakers=breakers
    )
    stub = CatalogServiceStub(catalog.channel)
    reply = await catalog.call(stub.GetProduct, GetProductRequest(product_id=pid), idempotent=True)
    ...
    await catalog.close()

At the HTTP edge, one request is one deadline scope::

    with deadline_scope(settings.product_page_budget_ms / 1000):
        ...  # every downstream call inside gets min(its budget, time left - 50 ms)
"""

from emporium.kit.grpc.breaker import (
    AsyncCircuitBreaker,
    BreakerOpen,
    BreakerRegistry,
    is_business_error,
)
from emporium.kit.grpc.client import DownstreamClient, map_rpc_error
from emporium.kit.grpc.deadlines import deadline_scope, effective_timeout, remaining
from emporium.kit.grpc.server import BuiltServer, build_server, set_serving

__all__ = [
    "AsyncCircuitBreaker",
    "BreakerOpen",
    "BreakerRegistry",
    "BuiltServer",
    "DownstreamClient",
    "build_server",
    "deadline_scope",
    "effective_timeout",
    "is_business_error",
    "map_rpc_error",
    "remaining",
    "set_serving",
]
