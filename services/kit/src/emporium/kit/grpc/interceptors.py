"""Server and client interceptors of the kit.

Server chain, outermost first (see :func:`server_interceptors`):

1. OpenTelemetry's aio server interceptor: one SERVER span per RPC, parent
   taken from the caller's ``traceparent`` metadata, with ``rpc.system``,
   ``rpc.service``, ``rpc.method`` and ``rpc.grpc.status_code``;
2. :class:`AccessLogInterceptor`: one JSON log line per RPC (inside the span,
   so it carries the trace and span ids);
3. :class:`MetricsInterceptor`: RED metrics (requests by code, duration);
4. :class:`ErrorMappingInterceptor`: kit errors to status codes with details;
5. any extra interceptors the service adds (authentication...);
6. :class:`DeadlineInterceptor`: refuses work whose deadline has passed and
   publishes the remaining time to :mod:`emporium.kit.grpc.deadlines`.

The kit's own interceptors act on unary-unary methods (all the services'
methods are unary); other kinds of methods pass through them unchanged and
are still traced by OpenTelemetry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from emporium.kit import errors, metrics
from emporium.kit.grpc import deadlines

log = logging.getLogger("emporium.kit.grpc")
access_log = logging.getLogger("emporium.kit.grpc.access")

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
Wrapper = Callable[[Behavior, str, str], Behavior]

#: Services whose calls are infrastructure, not work: logged at DEBUG only.
QUIET_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")

#: Codes that mean "the server failed", logged at WARNING.
SERVER_FAULT_CODES = frozenset(
    {
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


def split_method(full_method: str | bytes) -> tuple[str, str]:
    """'/pkg.Service/Method' -> ('pkg.Service', 'Method')."""
    if isinstance(full_method, bytes):
        full_method = full_method.decode()
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service or "unknown", method or "unknown"


def is_quiet(service: str) -> bool:
    return service.startswith(QUIET_SERVICES)


def _wrap_unary_unary(
    handler: grpc.RpcMethodHandler | None, full_method: str, wrapper: Wrapper
) -> grpc.RpcMethodHandler | None:
    """Wraps a unary-unary handler's behaviour; other handlers pass unchanged."""
    if handler is None or handler.request_streaming or handler.response_streaming:
        return handler
    service, method = split_method(full_method)
    behavior: Behavior = handler.unary_unary  # type: ignore[assignment]
    return grpc.unary_unary_rpc_method_handler(
        wrapper(behavior, service, method),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class _UnaryServerInterceptor(grpc.aio.ServerInterceptor):
    """Base: subclasses implement :meth:`wrap` around one RPC's behaviour."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        return _wrap_unary_unary(handler, handler_call_details.method, self.wrap)  # type: ignore[return-value]

    def wrap(self, behavior: Behavior, service: str, method: str) -> Behavior:
        raise NotImplementedError


def final_code(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status an RPC ended with, as seen from inside the server."""
    if isinstance(error, asyncio.CancelledError):
        left = context.time_remaining()
        if left is not None and left <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN


class AccessLogInterceptor(_UnaryServerInterceptor):
    """One log line per RPC: method, code, duration_ms, peer."""

    def wrap(self, behavior: Behavior, service: str, method: str) -> Behavior:
        quiet = is_quiet(service)

        async def logged(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as caught:
                error = caught
                raise
            finally:
                code = final_code(context, error)
                if quiet:
                    level = logging.DEBUG
                elif code in SERVER_FAULT_CODES:
                    level = logging.WARNING
                else:
                    level = logging.INFO
                if access_log.isEnabledFor(level):
                    access_log.log(
                        level,
                        "rpc",
                        extra={
                            "rpc_service": service,
                            "rpc_method": method,
                            "code": code.name,
                            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                            "peer": context.peer(),
                        },
                    )

        return logged


class MetricsInterceptor(_UnaryServerInterceptor):
    """emporium_rpc_server_requests_total and _duration_seconds."""

    def wrap(self, behavior: Behavior, service: str, method: str) -> Behavior:
        duration = metrics.RPC_SERVER_DURATION.labels(service, method)

        async def measured(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as caught:
                error = caught
                raise
            finally:
                duration.observe(time.perf_counter() - started)
                code = final_code(context, error)
                metrics.RPC_SERVER_REQUESTS.labels(service, method, code.name).inc()

        return measured


def status_for(error: errors.ServiceError) -> grpc.Status:
    """The rich status of a kit error (google.rpc.Status in the trailers)."""
    status = status_pb2.Status(code=error.grpc_code.value[0], message=error.message)
    if isinstance(error, errors.InvalidArgument):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=violation.field, description=violation.description
                )
                for violation in error.violations
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad_request)
        status.details.append(detail)
    dependency = getattr(error, "dependency", "")
    if dependency:
        info = error_details_pb2.ErrorInfo(
            reason=error.grpc_code.name,
            domain="emporium",
            metadata={"dependency": dependency},
        )
        detail = any_pb2.Any()
        detail.Pack(info)
        status.details.append(detail)
    return rpc_status.to_status(status)


class ErrorMappingInterceptor(_UnaryServerInterceptor):
    """Kit errors to their status; anything else to INTERNAL, logged with traceback.

    A handler that already aborted (``context.abort``) keeps its status.
    """

    def wrap(self, behavior: Behavior, service: str, method: str) -> Behavior:
        async def mapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except errors.ServiceError as error:
                status = status_for(error)
                await context.abort(status.code, status.details, status.trailing_metadata)
            except Exception:
                log.exception(
                    "unhandled error in RPC handler",
                    extra={"rpc_service": service, "rpc_method": method},
                )
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")

        return mapped


class DeadlineInterceptor(_UnaryServerInterceptor):
    """No work after the caller's deadline; downstream calls inherit what is left."""

    def wrap(self, behavior: Behavior, service: str, method: str) -> Behavior:
        async def bounded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            left = context.time_remaining()
            if left is None:
                return await behavior(request, context)
            if left <= 0:
                raise errors.DeadlineExceeded(
                    f"caller's deadline passed {-left * 1000:.0f} ms before {method} started"
                )
            with deadlines.deadline_scope(left):
                return await behavior(request, context)

        return bounded


def server_interceptors(
    extra: list[grpc.aio.ServerInterceptor] | None = None,
    tracer_provider: Any = None,
) -> list[grpc.aio.ServerInterceptor]:
    """The kit's server chain, outermost first, with ``extra`` before the deadline check."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    telemetry = aio_server_interceptor(
        tracer_provider=tracer_provider, filter_=filters.negate(filters.health_check())
    )
    return [
        telemetry,
        AccessLogInterceptor(),
        MetricsInterceptor(),
        ErrorMappingInterceptor(),
        *(extra or []),
        DeadlineInterceptor(),
    ]


# --- client side ------------------------------------------------------------


class ClientMetricsInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Counts every attempt that goes on the wire (retries included), by code."""

    def __init__(self, downstream: str) -> None:
        self._downstream = downstream

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        call = await continuation(client_call_details, request)
        service, method = split_method(client_call_details.method)
        if is_quiet(service):
            return call
        try:
            code = await call.code()
        except asyncio.CancelledError:
            metrics.RPC_CLIENT_ATTEMPTS.labels(self._downstream, method, "CANCELLED").inc()
            raise
        metrics.RPC_CLIENT_ATTEMPTS.labels(self._downstream, method, code.name).inc()
        return call


def client_interceptors(downstream: str, tracer_provider: Any = None) -> list[Any]:
    """Telemetry (client span, W3C trace context in metadata) then attempt metrics."""
    from opentelemetry.instrumentation.grpc import aio_client_interceptors, filters

    telemetry = aio_client_interceptors(
        tracer_provider=tracer_provider, filter_=filters.negate(filters.health_check())
    )
    return [*telemetry, ClientMetricsInterceptor(downstream)]
