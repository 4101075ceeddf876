"""The HTTP/JSON API and the storefront page, as one ASGI application.

Routes are thin: validate the request (:mod:`emporium.gateway.validation`),
call the storefront, render JSON. Errors are the kit's errors, rendered once,
here, as ``{"error": {"code", "message", "fields"}}`` with the matching
status. Two middlewares wrap the routes: :class:`LoadShedder` outermost (at
most ``max_concurrent_requests`` requests at once; beyond that, an immediate
503 with ``Retry-After`` instead of a queue) and :class:`RequestTelemetry`
(one server span per request named after the route template, RED metrics per
route template and the JSON access log: failures and slow requests always,
successes sampled).
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode, get_current_span
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emporium.gateway import metrics, validation
from emporium.gateway.domain import Storefront
from emporium.kit.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unavailable,
)
from emporium.kit.logging import AccessLogSampler

log = logging.getLogger(__name__)
access_log = logging.getLogger("emporium.gateway.access")

PRODUCT_PAGE_ROUTE = "/api/products/{product_id}"

#: Error codes of the JSON error body, by kit error class (most specific first).
ERROR_CODES: list[tuple[type[ServiceError], str]] = [
    (InvalidArgument, "invalid_argument"),
    (NotFound, "not_found"),
    (FailedPrecondition, "conflict"),
    (AlreadyExists, "conflict"),
    (Unavailable, "unavailable"),
    (DeadlineExceeded, "deadline_exceeded"),
]

#: Codes of errors that Starlette raises itself (unknown path, wrong method).
HTTP_ERROR_CODES = {
    400: "invalid_argument",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

#: Methods that get their own metric label; anything else is counted as "other".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

#: The page loads only its own files: no inline script, no third-party origin.
PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Endpoint = Callable[[Request], Awaitable[Response]]

#: Retry-After of a 503 caused by an unavailable dependency (its breaker may be open).
DEPENDENCY_RETRY_AFTER_SECONDS = 1
#: Set in the ASGI scope of a request the LoadShedder refused.
SHED_SCOPE_KEY = "emporium.shed"


def error_response(
    status: int, code: str, message: str, fields: list[dict[str, str]] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "fields": fields or []}}
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def service_error_response(error: ServiceError) -> JSONResponse:
    code = next((code for cls, code in ERROR_CODES if isinstance(error, cls)), "internal")
    fields = []
    if isinstance(error, InvalidArgument):
        fields = [{"field": v.field, "description": v.description} for v in error.violations]
    message = error.message
    if isinstance(error, Unavailable | DeadlineExceeded):
        message = _dependency_message(error)
    status = error.http_status if code != "internal" else 500
    if status >= 500 and code == "internal":
        message = "internal error"
    response = error_response(status, code, message, fields)
    if status == 503:
        response.headers["Retry-After"] = str(DEPENDENCY_RETRY_AFTER_SECONDS)
    return response


def _dependency_message(error: Unavailable | DeadlineExceeded) -> str:
    """What a person should read when a downstream failed the request.

    The technical detail (gRPC status, addresses) goes to the log line with
    the trace id, not to the page.
    """
    dependency = error.dependency or "a required service"
    if isinstance(error, DeadlineExceeded):
        return f"{dependency} did not answer in time; please try again shortly"
    return f"{dependency} is unavailable right now; please try again shortly"


def json_errors(endpoint: Endpoint) -> Endpoint:
    """Renders the kit's errors, and any bug, as the JSON error body."""

    async def handle(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ServiceError as error:
            if error.http_status >= 500:
                log.warning(
                    "request failed",
                    extra={
                        "path": request.url.path,
                        "error": type(error).__name__,
                        "dependency": getattr(error, "dependency", ""),
                        "detail": error.message,
                    },
                )
            return service_error_response(error)
        except HTTPException:
            raise  # rendered by the application's handler
        except Exception:
            log.exception("unhandled error", extra={"path": request.url.path})
            trace_id = format(get_current_span().get_span_context().trace_id, "032x")
            return error_response(500, "internal", f"internal error (trace id {trace_id})")

    return handle


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    etag: str


def load_static(root: Traversable | None = None) -> dict[str, StaticFile]:
    """Reads the page's files from the installed package, once, into memory."""
    root = root or resources.files("emporium.gateway").joinpath("static")
    files: dict[str, StaticFile] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            name = f"{prefix}{entry.name}"
            if entry.is_dir():
                walk(entry, f"{name}/")
            elif not entry.name.startswith("."):
                body = entry.read_bytes()
                media_type = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
                if media_type.startswith("text/") or media_type.endswith("javascript"):
                    media_type += "; charset=utf-8"
                etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
                files[name] = StaticFile(body, media_type, etag)

    walk(root, "")
    return files


def build_app(
    storefront: Storefront,
    static_files: dict[str, StaticFile] | None = None,
    tracer_provider: Any = None,
    *,
    access_log: AccessLogSampler | None = None,
    max_concurrent_requests: int | None = None,
    retry_after_seconds: int = 1,
) -> ASGIApp:
    """The gateway's ASGI application (telemetry and load-shedding middlewares included).

    ``tracer_provider`` defaults to the global one (set by the kit's Service);
    ``access_log`` decides which successes get a line (all by default);
    ``max_concurrent_requests`` (none by default) bounds the requests served
    at once (HTTP_MAX_CONCURRENT_REQUESTS).
    """
    static = static_files if static_files is not None else load_static()
    if "index.html" not in static:
        raise RuntimeError("the storefront page (static/index.html) is missing from the package")

    def serve_file(request: Request, name: str) -> Response:
        file = static.get(name)
        if file is None:
            raise NotFound(f"no static file {name!r}")
        headers = {"ETag": file.etag, "Cache-Control": "no-cache", **PAGE_SECURITY_HEADERS}
        if request.headers.get("if-none-match") == file.etag:
            return Response(status_code=304, headers=headers)
        return Response(file.body, media_type=file.media_type, headers=headers)

    async def index(request: Request) -> Response:
        return serve_file(request, "index.html")

    async def static_file(request: Request) -> Response:
        return serve_file(request, request.path_params["path"])

    async def list_products(request: Request) -> Response:
        page_size, page_token = validation.page_query(request.query_params)
        result = await storefront.list_products(page_size, page_token)
        return JSONResponse(result.as_json())

    async def product_page(request: Request) -> Response:
        product_id = validation.product_id(request.path_params["product_id"])
        page, degradation = await storefront.product_page(product_id)
        if degradation is not None:
            metrics.DEGRADED_RESPONSES.labels(PRODUCT_PAGE_ROUTE, degradation.dependency).inc()
        return JSONResponse(page.as_json(), headers={"Cache-Control": "no-store"})

    async def checkout(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            return error_response(
                415,
                "unsupported_media_type",
                "checkout expects a JSON body with Content-Type: application/json",
            )
        key = validation.idempotency_key(request.headers)
        body = await _read_body(request, validation.MAX_BODY_BYTES)
        order_request = validation.checkout_request(key, validation.json_body(body))
        placed = await storefront.checkout(order_request)
        order = placed.order
        return JSONResponse(
            {"order": order.as_json()},
            status_code=201 if placed.created else 200,
            headers={"Location": f"/api/orders/{order.order_id}", "Cache-Control": "no-store"},
        )

    async def get_order(request: Request) -> Response:
        order_id = validation.order_id(request.path_params["order_id"])
        order = await storefront.order(order_id)
        return JSONResponse({"order": order.as_json()}, headers={"Cache-Control": "no-store"})

    routes: list[BaseRoute] = [
        Route("/", json_errors(index), methods=["GET"]),
        Route("/static/{path:path}", json_errors(static_file), methods=["GET"]),
        Route("/api/products", json_errors(list_products), methods=["GET"]),
        Route(PRODUCT_PAGE_ROUTE, json_errors(product_page), methods=["GET"]),
        Route("/api/checkout", json_errors(checkout), methods=["POST"]),
        Route("/api/orders/{order_id}", json_errors(get_order), methods=["GET"]),
    ]
    app: ASGIApp = Starlette(routes=routes, exception_handlers={HTTPException: _http_exception})
    telemetry = RequestTelemetry(app, access_log or AccessLogSampler(rate=1.0), tracer_provider)
    if max_concurrent_requests is None:
        return telemetry
    return LoadShedder(
        telemetry, max_concurrent_requests, retry_after_seconds, on_refused=telemetry.record
    )


async def _http_exception(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    status = error.status_code
    code = HTTP_ERROR_CODES.get(status, "internal" if status >= 500 else "invalid_argument")
    if status == 404:
        message = f"no such resource: {request.url.path}"
    elif status == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(error.detail)
    response = error_response(status, code, message)
    if error.headers:
        response.headers.update(error.headers)
    return response


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def route_template(scope: Scope) -> str:
    """The matched route's template (``/api/orders/{order_id}``), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class LoadShedder:
    """At most ``limit`` requests at once; the next ones get 503 + Retry-After at once.

    No queue: a request the gateway cannot start now would wait behind the
    ones in flight and likely miss its budget (PRODUCT_PAGE_BUDGET_MS), so it
    is refused while refusing is cheap, and the client comes back after
    ``Retry-After`` seconds. It sits outside the telemetry middleware: the
    refusal is counted (route ``unmatched``, status 503) and its access line
    sampled like a success (``on_refused``), but it gets no span. Under
    overload a span per refusal, exported, would cost more than the refusal
    and take that CPU from the requests being served.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        retry_after_seconds: int,
        on_refused: Callable[[Scope, int, float], None] | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.app = app
        self.limit = limit
        self.on_refused = on_refused
        self.in_flight = 0
        self._body = (
            b'{"error":{"code":"overloaded","message":"the shop is busy right now; '
            b'please try again in a moment","fields":[]}}'
        )
        self._headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._body)).encode()),
            (b"cache-control", b"no-store"),
            (b"retry-after", str(retry_after_seconds).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            started = time.perf_counter()
            scope[SHED_SCOPE_KEY] = True
            await send({"type": "http.response.start", "status": 503, "headers": self._headers})
            await send({"type": "http.response.body", "body": self._body})
            if self.on_refused is not None:
                self.on_refused(scope, 503, time.perf_counter() - started)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


#: Request headers that carry trace context (W3C traceparent/tracestate, baggage).
TRACE_HEADERS = frozenset(
    name.encode("latin-1") for name in propagate.get_global_textmap().fields
) | {b"traceparent", b"tracestate", b"baggage"}


class RequestTelemetry:
    """The SERVER span, RED metrics by route template and the JSON access log, in one wrap.

    The span has the name and attributes OpenTelemetry's ASGI middleware
    gives it (``GET /api/products/{product_id}``, ``http.route``,
    ``http.method``, ``http.status_code``, ``http.target``, ``net.peer.ip``...;
    error status for 5xx) and continues the caller's W3C trace context. It is
    started with the OpenTelemetry API directly, as the kit's gRPC server
    does: the middleware's per-request cost (a second route lookup, a wrapped
    ``send`` per message, attribute collection through generic getters) was a
    tenth of the gateway's CPU at 300 pages/s (docs/decisions/overload.md).
    The route template is known once Starlette has matched the request, so the
    span is renamed then; an unmatched path keeps the bare method as its name.
    """

    def __init__(
        self,
        app: ASGIApp,
        access_log: AccessLogSampler | None = None,
        tracer_provider: Any = None,
    ) -> None:
        self.app = app
        self.access_log = access_log or AccessLogSampler(rate=1.0)
        self._tracer = trace.get_tracer("emporium.gateway.http", tracer_provider=tracer_provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
        carrier: dict[str, str] = {}
        attributes: dict[str, Any] = {
            "http.method": scope["method"],
            "http.scheme": scope.get("scheme", "http"),
            "http.flavor": scope.get("http_version", "1.1"),
            "http.target": scope["path"],
        }
        host = ""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"user-agent":
                attributes["http.user_agent"] = value.decode("latin-1")
            elif name in TRACE_HEADERS:
                carrier[name.decode("latin-1")] = value.decode("latin-1")
        server = scope.get("server")
        if server:
            server_host, server_port = server
            attributes["http.host"] = server_host
            if server_port is not None:
                attributes["http.host"] = f"{server_host}:{server_port}"
                attributes["net.host.port"] = server_port
        if host:
            attributes["http.server_name"] = host
            query = scope.get("query_string", b"")
            attributes["http.url"] = f"{attributes['http.scheme']}://{host}{scope['path']}" + (
                f"?{query.decode('latin-1')}" if query else ""
            )
        client = scope.get("client")
        if client:
            attributes["net.peer.ip"] = client[0]
            attributes["net.peer.port"] = client[1]
        status = 500  # what the client sees if the app dies before answering

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        span_name = method if method != "other" else "HTTP"
        with self._tracer.start_as_current_span(
            span_name,
            context=propagate.extract(carrier) if carrier else None,
            kind=SpanKind.SERVER,
            attributes=attributes,
        ) as span:
            try:
                await self.app(scope, receive, send_and_watch)
            finally:
                duration = time.perf_counter() - started
                route = route_template(scope)
                if route != "unmatched":
                    span.update_name(f"{span_name} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                self._count(scope, route, method, status, duration)

    def record(self, scope: Scope, status: int, duration: float) -> None:
        """Metrics and access line of a request answered without a span (a refusal)."""
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
        self._count(scope, "unmatched", method, status, duration)

    def _count(self, scope: Scope, route: str, method: str, status: int, duration: float) -> None:
        metrics.HTTP_REQUESTS.labels(route, method, str(status)).inc()
        metrics.HTTP_DURATION.labels(route, method).observe(duration)
        self._log(scope, route, status, duration)

    def _log(self, scope: Scope, route: str, status: int, duration: float) -> None:
        extra: dict[str, Any] = {}
        shed = scope.get(SHED_SCOPE_KEY, False)
        if status < 400 or shed:
            span_context = get_current_span().get_span_context()
            key = "shed" if shed else route
            decision = self.access_log.decide(key, duration, span_context.trace_id)
            if decision is None:
                return
            if decision:
                extra["sampled_out"] = decision
        if not access_log.isEnabledFor(logging.INFO):
            return
        extra.update(
            http_method=scope["method"],
            http_path=scope["path"],
            http_route=route,
            http_status=status,
            duration_ms=round(duration * 1000, 2),
            client=(scope.get("client") or ("", 0))[0],
        )
        access_log.info("request", extra=extra)
