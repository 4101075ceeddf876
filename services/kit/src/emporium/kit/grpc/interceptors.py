"""The kit's gRPC server interceptors (the client side is in :mod:`.client`, without interceptors).

The server side is one interceptor, :class:`KitServerInterceptor`, that does
for each unary-unary RPC, in this order:

1. one OpenTelemetry SERVER span named ``/pkg.Service/Method``, parent taken
   from the caller's ``traceparent`` metadata, with the attributes of
   OpenTelemetry's gRPC instrumentation (``rpc.system``, ``rpc.service``,
   ``rpc.method``, ``rpc.grpc.status_code``, ``net.peer.ip``/``port``); the
   health service gets no span;
2. the deadline check: work whose deadline already passed is refused
   (DEADLINE_EXCEEDED, the handler never runs) and the time left is published
   to :mod:`emporium.kit.grpc.deadlines` for downstream calls;
3. the handler;
4. error mapping: kit errors to their status with rich details, anything
   else to INTERNAL (logged with its traceback);
5. RED metrics (requests by code, duration) and the access log line, inside
   the span: every failure and every slow call, successes sampled
   (:class:`~emporium.kit.logging.AccessLogSampler`).

The kit wraps each unary-unary method once, when the method is registered
(:class:`KitRegistrar`, which ``build_server`` hands to the generated
``add_*Servicer_to_server`` functions instead of the server): the server
then runs no interceptor at all, and a call costs one extra coroutine, not a
pass through grpc.aio's interceptor chain. When a service adds interceptors
of its own (authentication...), the same wrapping runs as an interceptor
(:class:`KitServerInterceptor`, outermost, the wrapped handler of a method
built once and reused), the service's interceptors run inside it and the
deadline check moves after them (:class:`DeadlineInterceptor`).

Other kinds of methods (streaming) pass through unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from emporium.kit import errors, metrics
from emporium.kit.grpc import deadlines
from emporium.kit.logging import AccessLogSampler

log = logging.getLogger("emporium.kit.grpc")
access_log = logging.getLogger("emporium.kit.grpc.access")

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]

#: Services whose calls are infrastructure, not work: logged at DEBUG only.
QUIET_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")
#: Services whose calls get no span (probes would drown the useful traces).
UNTRACED_SERVICES = ("grpc.health.v1.Health",)

OK = grpc.StatusCode.OK

#: Codes that mean "the server failed", logged at WARNING; the span is an error.
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


def unary_method(handler: Any, handler_call_details: grpc.HandlerCallDetails) -> str | None:
    """The full method name when ``handler`` is unary-unary, else None.

    None for a method the server does not know and for streaming methods:
    server interceptors pass those through unchanged. Synchronous on purpose:
    it runs for every call, and a coroutine per call would cost more than it does.
    """
    if handler is None or handler.request_streaming or handler.response_streaming:
        return None
    full_method = handler_call_details.method
    if isinstance(full_method, bytes):
        full_method = full_method.decode()
    return full_method


def with_behavior(handler: grpc.RpcMethodHandler, behavior: Behavior) -> grpc.RpcMethodHandler:
    """A unary-unary handler like ``handler`` (same (de)serializers) running ``behavior``."""
    return grpc.unary_unary_rpc_method_handler(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _peer_attributes(peer: str) -> dict[str, str]:
    """``ipv4:127.0.0.1:57284`` -> net.peer.ip and net.peer.port (as the instrumentation)."""
    if peer.startswith("unix:"):
        return {}
    try:
        ip, port = peer.split(",")[0].split(":", 1)[1].rsplit(":", 1)
    except (IndexError, ValueError):
        return {}
    ip = unquote(ip)
    attributes = {"net.peer.ip": ip, "net.peer.port": port}
    if ip in ("[::1]", "127.0.0.1"):
        attributes["net.peer.name"] = "localhost"
    return attributes


def _expired(method: str, left: float) -> errors.DeadlineExceeded:
    return errors.DeadlineExceeded(
        f"caller's deadline passed {-left * 1000:.0f} ms before {method} started"
    )


#: Span attribute sets kept per method, one per (peer, user agent): a peer is a
#: connection, so this bounds memory when clients come and go.
SPAN_ATTRIBUTE_SETS = 256


class KitServerInterceptor(grpc.aio.ServerInterceptor):
    """Span, deadline, error mapping, metrics and access log of every unary RPC, in one wrap.

    :meth:`wrap_handler` does the wrapping; :class:`KitRegistrar` applies it
    when methods are registered, :meth:`intercept_service` when the kit runs
    as the outermost of several interceptors.
    """

    def __init__(
        self,
        *,
        tracer_provider: Any = None,
        sampler: AccessLogSampler | None = None,
        check_deadline: bool = True,
    ) -> None:
        self._tracer = trace.get_tracer("emporium.kit.grpc.server", tracer_provider=tracer_provider)
        self._sampler = sampler or AccessLogSampler()
        self._check_deadline = check_deadline
        # full method -> (the handler we were given, the handler we return)
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        full_method = unary_method(handler, handler_call_details)
        if full_method is None:
            return handler
        return self.wrap_handler(handler, full_method)

    def wrap_handler(
        self, handler: grpc.RpcMethodHandler, full_method: str
    ) -> grpc.RpcMethodHandler:
        """``handler`` wrapped by the kit when it is unary-unary (once per method), else itself."""
        if handler.request_streaming or handler.response_streaming:
            return handler
        cached = self._wrapped.get(full_method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = with_behavior(handler, self._wrap(handler.unary_unary, full_method))  # type: ignore[arg-type]
        self._wrapped[full_method] = (handler, wrapped)
        return wrapped

    def _wrap(self, behavior: Behavior, full_method: str) -> Behavior:
        """One coroutine per call doing all the kit's work; everything per method is bound here."""
        service, method = split_method(full_method)
        quiet = is_quiet(service)
        traced = not service.startswith(UNTRACED_SERVICES)
        observe = metrics.RPC_SERVER_DURATION.labels(service, method).observe
        counters: dict[grpc.StatusCode, Any] = {}
        start_span = self._tracer.start_span
        decide = self._sampler.decide
        access_line = self._log
        check_deadline = self._check_deadline
        # A span that ends OK keeps the status code it started with; others are set at the end.
        base_attributes = {
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": method,
            "rpc.grpc.status_code": OK.value[0],
        }
        attribute_sets: dict[tuple[str, Any], dict[str, Any]] = {}

        def span_attributes(peer: str, agent: Any) -> dict[str, Any]:
            # The SDK copies them into the span: one dict serves every call alike.
            key = (peer, agent)
            attributes = attribute_sets.get(key)
            if attributes is None:
                if len(attribute_sets) >= SPAN_ATTRIBUTE_SETS:
                    attribute_sets.clear()
                attributes = dict(base_attributes)
                if peer:
                    attributes.update(_peer_attributes(peer))
                if isinstance(agent, str):
                    attributes["rpc.user_agent"] = agent
                attribute_sets[key] = attributes
            return attributes

        async def intercepted(request: Any, context: grpc.aio.ServicerContext) -> Any:
            span = token = None
            if traced:
                metadata = context.invocation_metadata()
                carrier = dict(metadata) if metadata else {}
                span = start_span(
                    full_method,
                    propagate.extract(carrier),
                    SpanKind.SERVER,
                    span_attributes(context.peer(), carrier.get("user-agent")),
                    record_exception=False,
                    set_status_on_exception=False,
                )
                token = otel_context.attach(trace.set_span_in_context(span))
            error: BaseException | None = None
            started = time.perf_counter()
            try:
                try:
                    left = context.time_remaining() if check_deadline else None
                    if left is None:
                        return await behavior(request, context)
                    if left <= 0:
                        raise _expired(method, left)
                    scope = deadlines.enter(left)
                    try:
                        return await behavior(request, context)
                    finally:
                        deadlines.leave(scope)
                except grpc.aio.AbortError:
                    raise
                except errors.ServiceError as caught:
                    status = status_for(caught)
                    await context.abort(status.code, status.details, status.trailing_metadata)
                except asyncio.CancelledError:
                    raise
                except Exception as caught:
                    log.exception(
                        "unhandled error in RPC handler",
                        extra={"rpc_service": service, "rpc_method": method},
                    )
                    if span is not None:
                        span.record_exception(caught)
                    await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            except BaseException as caught:
                error = caught
                raise
            finally:
                elapsed = time.perf_counter() - started
                code = final_code(context, error)
                observe(elapsed)
                counter = counters.get(code)
                if counter is None:
                    counter = counters[code] = metrics.RPC_SERVER_REQUESTS.labels(
                        service, method, code.name
                    )
                counter.inc()
                # The access line is written inside the span: it carries its ids.
                if quiet:
                    access_line(context, logging.DEBUG, code, elapsed, service, method, 0)
                elif code is OK:
                    trace_id = 0 if span is None else span.get_span_context().trace_id
                    sampled_out = decide(full_method, elapsed, trace_id)
                    if sampled_out is not None:
                        access_line(
                            context, logging.INFO, code, elapsed, service, method, sampled_out
                        )
                else:
                    if span is not None:
                        span.set_attribute("rpc.grpc.status_code", code.value[0])
                    level = logging.INFO
                    if code in SERVER_FAULT_CODES:
                        level = logging.WARNING
                        if span is not None:
                            span.set_status(Status(StatusCode.ERROR, code.name))
                    access_line(context, level, code, elapsed, service, method, 0)
                if span is not None:
                    otel_context.detach(token)  # type: ignore[arg-type]
                    span.end()

        return intercepted

    def _log(
        self,
        context: grpc.aio.ServicerContext,
        level: int,
        code: grpc.StatusCode,
        elapsed: float,
        service: str,
        method: str,
        sampled_out: int,
    ) -> None:
        if not access_log.isEnabledFor(level):
            return
        extra: dict[str, Any] = {
            "rpc_service": service,
            "rpc_method": method,
            "code": code.name,
            "duration_ms": round(elapsed * 1000, 2),
            "peer": context.peer(),
        }
        if sampled_out:
            extra["sampled_out"] = sampled_out
        access_log.log(level, "rpc", extra=extra)


class KitRegistrar:
    """Stands for the server in ``add_*Servicer_to_server(servicer, registrar)``.

    Every unary-unary method registered through it reaches the server already
    wrapped by the kit (:meth:`KitServerInterceptor.wrap_handler`), so the
    server needs no interceptor; with ``kit=None`` (the kit intercepts
    instead) handlers pass unchanged. Registered methods (what generated code
    registers, looked up by gRPC core) are wrapped here once; generic handlers
    (looked up per call, for methods not registered) wrap what they return,
    once per method. Anything else is the server's.

    ``register_methods=False`` keeps only the generic handlers, which generated
    code adds too, for services called rarely (health, reflection): grpc.aio
    keeps one request pending per registered method and waits on all of them
    each time a call arrives, so every registered method costs every call.
    """

    def __init__(
        self,
        server: grpc.aio.Server,
        kit: KitServerInterceptor | None,
        *,
        register_methods: bool = True,
    ) -> None:
        self._server = server
        self._kit = kit
        self._register_methods = register_methods

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        if not self._register_methods:
            return
        kit = self._kit
        if kit is not None:
            method_handlers = {
                name: kit.wrap_handler(handler, f"/{service_name}/{name}")
                for name, handler in method_handlers.items()
            }
        # grpc-stubs predates registered methods (grpcio >= 1.63).
        self._server.add_registered_method_handlers(  # type: ignore[attr-defined]
            service_name, method_handlers
        )

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Any) -> None:
        kit = self._kit
        if kit is not None:
            generic_rpc_handlers = [_KitGenericHandler(h, kit) for h in generic_rpc_handlers]
        self._server.add_generic_rpc_handlers(generic_rpc_handlers)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class _KitGenericHandler(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler, kit: KitServerInterceptor) -> None:
        self._inner = inner
        self._kit = kit

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = self._inner.service(handler_call_details)
        full_method = unary_method(handler, handler_call_details)
        if handler is None or full_method is None:
            return handler
        return self._kit.wrap_handler(handler, full_method)


class DeadlineInterceptor(grpc.aio.ServerInterceptor):
    """No work after the caller's deadline; downstream calls inherit what is left.

    Used only when a service adds interceptors of its own: they run between
    the kit's interceptor and this check.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        full_method = unary_method(handler, handler_call_details)
        if full_method is None:
            return handler
        _, method = split_method(full_method)
        behavior: Behavior = handler.unary_unary  # type: ignore[assignment]

        async def bounded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            left = context.time_remaining()
            if left is None:
                return await behavior(request, context)
            if left <= 0:
                raise _expired(method, left)
            with deadlines.deadline_scope(left):
                return await behavior(request, context)

        return with_behavior(handler, bounded)


def server_interceptors(
    extra: list[grpc.aio.ServerInterceptor],
    tracer_provider: Any = None,
    sampler: AccessLogSampler | None = None,
) -> tuple[list[grpc.aio.ServerInterceptor], KitServerInterceptor | None]:
    """The server's interceptors, and the kit to register methods with (None: it intercepts).

    Without ``extra``: no interceptor, the kit wraps methods as they are
    registered (:class:`KitRegistrar`). With ``extra``: the kit's
    interceptor, then ``extra``, then the deadline check.
    """
    if not extra:
        return [], KitServerInterceptor(tracer_provider=tracer_provider, sampler=sampler)
    kit = KitServerInterceptor(
        tracer_provider=tracer_provider, sampler=sampler, check_deadline=False
    )
    return [kit, *extra, DeadlineInterceptor()], None
