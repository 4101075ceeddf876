"""The gRPC aio server of a service, with health, reflection and the kit's interceptors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from emporium.kit.grpc.interceptors import server_interceptors
from emporium.kit.logging import AccessLogSampler

log = logging.getLogger(__name__)

AddServicer = Callable[[Any, grpc.aio.Server], None]

HEALTH_SERVICE_NAME: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name

DEFAULT_SERVER_OPTIONS: tuple[tuple[str, Any], ...] = (
    # Let clients keep idle connections open with keepalive pings.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
)


class BuiltServer(tuple[Any, Any]):
    """``(server, health_servicer)``, which unpacks as a pair, plus the bound ``port``."""

    port: int

    def __new__(cls, server: grpc.aio.Server, health: HealthServicer, port: int) -> BuiltServer:
        built = super().__new__(cls, (server, health))
        built.port = port
        return built

    @property
    def server(self) -> grpc.aio.Server:
        return self[0]

    @property
    def health(self) -> HealthServicer:
        return self[1]


def build_server(
    *,
    host: str,
    port: int,
    servicers: Sequence[tuple[AddServicer, Any]],
    service_names: Sequence[str],
    health_servicer: HealthServicer | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    tracer_provider: Any = None,
    options: Sequence[tuple[str, Any]] = DEFAULT_SERVER_OPTIONS,
    access_log: AccessLogSampler | None = None,
    max_concurrent_rpcs: int | None = None,
) -> BuiltServer:
    """Builds (does not start) the server; ``port=0`` picks a free port.

    Every service in ``service_names`` (full names, e.g.
    ``emporium.catalog.v1.CatalogService``) and the overall server ("") start
    NOT_SERVING in the health service: the runtime flips them with
    :func:`set_serving` once the service is ready. ``interceptors`` run inside
    the kit's telemetry, logging, metrics and error mapping, before the
    deadline check. ``access_log`` decides which successes are logged (every
    one by default). With ``max_concurrent_rpcs``, the server runs at most
    that many RPCs at once and refuses more straight away with
    RESOURCE_EXHAUSTED ("Concurrent RPC limit exceeded"), before any
    interceptor or handler runs: an overloaded server sheds load in
    microseconds instead of queueing calls until their deadlines expire.
    """
    health = health_servicer or HealthServicer()
    server = grpc.aio.server(
        interceptors=server_interceptors(
            list(interceptors), tracer_provider, access_log or AccessLogSampler(rate=1.0)
        ),
        # gRPC shares a port with any other process by default (SO_REUSEPORT):
        # a second copy of a service would get half the calls. Refused instead.
        options=[("grpc.so_reuseport", 0), *options],
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    for add_to_server, servicer in servicers:
        add_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [*service_names, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    set_serving(health, service_names, False)
    return BuiltServer(server, health, bound)


def set_serving(
    health_servicer: HealthServicer, service_names: Sequence[str], serving: bool
) -> asyncio.Task[None] | None:
    """Sets the overall ("") and every named service's health status.

    Safe to call from synchronous code running in the event loop (readiness
    listeners): the update runs as a task, in call order. Returns that task,
    or None when there is no running loop (nothing can be watching then).
    """
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )

    async def apply() -> None:
        for name in ("", *service_names):
            await health_servicer.set(name, status)

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    task = loop.create_task(apply(), name="grpc-health-status")
    _pending.add(task)
    task.add_done_callback(_pending.discard)
    return task


# Strong references to the status updates in flight (asyncio keeps only weak ones).
_pending: set[asyncio.Task[None]] = set()
