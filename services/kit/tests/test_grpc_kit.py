"""The kit's gRPC server and client over real loopback sockets.

A small CatalogService servicer (from the generated contracts) does what each
test tells it: answer, fail, hang or refuse. It is served by the kit's own
``build_server`` and called through the kit's ``DownstreamClient``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from emporium.kit import errors
from emporium.kit.config import Downstream
from emporium.kit.grpc import (
    BreakerOpen,
    BreakerRegistry,
    BuiltServer,
    DownstreamClient,
    build_server,
    deadline_scope,
    deadlines,
    set_serving,
)
from emporium.kit.health import HealthRegistry
from emporium.kit.logging import JsonFormatter

pytestmark = pytest.mark.unit

CATALOG = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name


@dataclass
class Catalog(catalog_pb2_grpc.CatalogServiceServicer):
    """GetProduct does what ``plan`` says (one step per call, then ``default``)."""

    default: str = "ok"
    plan: list[str] = field(default_factory=list)
    delay: float = 0.0
    calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    time_remaining: list[float | None] = field(default_factory=list)
    deadline_remaining: list[float | None] = field(default_factory=list)
    trace_ids: list[int] = field(default_factory=list)
    #: For "chain": the next hop, called with the kit client.
    next_hop: DownstreamClient | None = None

    async def GetProduct(
        self, request: catalog_pb2.GetProductRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.GetProductResponse:
        self.calls += 1
        self.time_remaining.append(context.time_remaining())
        self.deadline_remaining.append(deadlines.remaining())
        self.trace_ids.append(trace.get_current_span().get_span_context().trace_id)
        step = self.plan.pop(0) if self.plan else self.default
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if step == "hang":
                await asyncio.sleep(30)
            if step == "unavailable":
                await context.abort(grpc.StatusCode.UNAVAILABLE, "catalog database down")
            if step == "crash":
                raise RuntimeError("a bug with a secret in its message")
            if step == "not_found":
                raise errors.NotFound(f"no product {request.product_id}")
            if step == "invalid":
                raise errors.InvalidArgument(
                    {"product_id": "must not be empty", "page_size": "must be 1..100"}
                )
            if step == "precondition":
                raise errors.FailedPrecondition("out of stock")
            if step == "exists":
                raise errors.AlreadyExists("already reserved")
            if step == "chain":
                assert self.next_hop is not None
                stub = catalog_pb2_grpc.CatalogServiceStub(self.next_hop.channel)
                return await self.next_hop.call(stub.GetProduct, request)
            return catalog_pb2.GetProductResponse(
                product=catalog_pb2.Product(product_id=request.product_id, name="Teapot")
            )
        finally:
            self.in_flight -= 1


Start = Callable[..., Awaitable[BuiltServer]]
Connect = Callable[..., DownstreamClient]


@pytest.fixture
async def start_server() -> AsyncIterator[Start]:
    servers: list[grpc.aio.Server] = []

    async def start(
        servicer: Catalog,
        *,
        interceptors: list[grpc.aio.ServerInterceptor] | None = None,
        tracer_provider: TracerProvider | None = None,
        serving: bool = True,
    ) -> BuiltServer:
        built = build_server(
            host="127.0.0.1",
            port=0,
            servicers=[(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, servicer)],
            service_names=[CATALOG],
            interceptors=interceptors or [],
            tracer_provider=tracer_provider,
        )
        servers.append(built.server)
        await built.server.start()
        if serving:
            task = set_serving(built.health, [CATALOG], True)
            assert task is not None
            await task
        return built

    yield start
    await asyncio.gather(*(server.stop(None) for server in servers))


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    clients: list[DownstreamClient] = []

    def make(port: int, name: str = "catalog", **options: Any) -> DownstreamClient:
        settings = {"timeout_ms": 500, "breaker_fail_max": 3, "breaker_reset_seconds": 0.3}
        settings.update({k: options.pop(k) for k in list(options) if k in settings})
        client = DownstreamClient(
            Downstream(name=name, addr=f"127.0.0.1:{port}", **settings), **options
        )
        clients.append(client)
        return client

    yield make
    await asyncio.gather(*(client.close() for client in clients))


async def get(client: DownstreamClient, product_id: str = "p-1", **kwargs: Any) -> Any:
    stub = catalog_pb2_grpc.CatalogServiceStub(client.channel)
    request = catalog_pb2.GetProductRequest(product_id=product_id)
    return await client.call(stub.GetProduct, request, **kwargs)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def settled(condition: Callable[[], bool], within: float = 1.0) -> None:
    """Waits until the server finished its bookkeeping.

    The client has its answer as soon as the status is sent, a moment before
    the server's interceptors log and count the call.
    """
    stop = time.monotonic() + within
    for _ in range(1000):
        if condition() or time.monotonic() > stop:
            return
        await asyncio.sleep(0.005)


# --- (a) async failures trip the breaker; then calls fail fast -------------------


@pytest.mark.parametrize("failure", ["unavailable", "crash", "hang"])
async def test_async_failures_open_the_breaker_and_calls_then_fail_fast(
    start_server: Start, connect: Connect, failure: str
) -> None:
    catalog = Catalog(default=failure)
    built = await start_server(catalog)
    client = connect(built.port, name=f"catalog-{failure}", timeout_ms=150)

    for _ in range(3):
        with pytest.raises((errors.Unavailable, errors.DeadlineExceeded)) as raised:
            await get(client)
        assert raised.value.dependency == f"catalog-{failure}"
        assert raised.value.sent  # it reached the server, which may have acted on it
    assert client.breaker.state == "open"
    assert catalog.calls == 3

    started = time.monotonic()
    with pytest.raises(errors.Unavailable, match="circuit breaker open") as raised:
        await get(client)
    assert time.monotonic() - started < 0.02
    assert isinstance(raised.value.__cause__, BreakerOpen)
    assert catalog.calls == 3  # the server was not reached
    assert raised.value.sent is False  # and the error says so: nothing to compensate
    assert sample("emporium_breaker_state", downstream=f"catalog-{failure}") == 2
    assert (
        sample(
            "emporium_rpc_client_requests_total",
            downstream=f"catalog-{failure}",
            rpc_method="GetProduct",
            code="BREAKER_OPEN",
        )
        == 1
    )


# --- (b) business errors never trip it -----------------------------------------


@pytest.mark.parametrize(
    ("step", "error"),
    [
        ("not_found", errors.NotFound),
        ("invalid", errors.InvalidArgument),
        ("precondition", errors.FailedPrecondition),
        ("exists", errors.AlreadyExists),
    ],
)
async def test_business_errors_never_trip_the_breaker(
    start_server: Start, connect: Connect, step: str, error: type[errors.ServiceError]
) -> None:
    catalog = Catalog(default=step)
    built = await start_server(catalog)
    client = connect(built.port, name=f"catalog-{step}")
    for _ in range(10):  # fail_max is 3
        with pytest.raises(error):
            await get(client)
    assert client.breaker.state == "closed"
    assert client.breaker.fail_counter == 0
    assert catalog.calls == 10


# --- (c) concurrent calls are not serialized -----------------------------------


async def test_concurrent_slow_calls_through_one_breaker_run_in_parallel(
    start_server: Start, connect: Connect
) -> None:
    catalog = Catalog(delay=0.3)
    built = await start_server(catalog)
    client = connect(built.port, name="catalog-parallel", timeout_ms=2000)
    await get(client)  # connect first, so timing measures the calls only

    started = time.monotonic()
    replies = await asyncio.gather(*(get(client, f"p-{i}") for i in range(10)))
    elapsed = time.monotonic() - started

    assert [r.product.product_id for r in replies] == [f"p-{i}" for i in range(10)]
    assert catalog.max_in_flight == 10
    assert elapsed < 0.6, f"10 calls of 0.3 s took {elapsed:.2f} s: serialized?"


# --- (d) half-open ----------------------------------------------------------------


async def test_half_open_lets_one_trial_through_and_closes_after_success(
    start_server: Start, connect: Connect
) -> None:
    catalog = Catalog(plan=["unavailable"] * 3)
    # Health says NOT_SERVING, so only the timer's trial call can close the breaker
    # (a SERVING answer would close it at once: test_breaker_recovery.py).
    built = await start_server(catalog, serving=False)
    client = connect(built.port, name="catalog-half-open")
    for _ in range(3):
        with pytest.raises(errors.Unavailable):
            await get(client)
    assert client.breaker.state == "open"

    await asyncio.sleep(0.35)  # breaker_reset_seconds = 0.3
    catalog.delay = 0.2
    trial = asyncio.create_task(get(client, "trial"))
    await asyncio.sleep(0.05)
    assert client.breaker.state == "half-open"
    with pytest.raises(errors.Unavailable, match="trial call in flight"):
        await get(client, "second")
    assert (await trial).product.product_id == "trial"
    assert client.breaker.state == "closed"
    catalog.delay = 0
    assert (await get(client, "after")).product.product_id == "after"
    assert catalog.calls == 5  # 3 failures, the trial, the call after it


async def test_a_failed_trial_opens_the_breaker_again(
    start_server: Start, connect: Connect
) -> None:
    catalog = Catalog(default="unavailable")
    built = await start_server(catalog, serving=False)
    client = connect(built.port, name="catalog-trial-fails")
    for _ in range(3):
        with pytest.raises(errors.Unavailable):
            await get(client)
    await asyncio.sleep(0.35)
    with pytest.raises(errors.Unavailable, match="UNAVAILABLE"):
        await get(client)
    assert client.breaker.state == "open"
    assert catalog.calls == 4


# --- (e) deadline = min(budget, remaining - margin), propagated -------------------


async def test_the_budget_applies_when_the_caller_has_no_deadline(
    start_server: Start, connect: Connect
) -> None:
    catalog = Catalog()
    built = await start_server(catalog)
    client = connect(built.port, timeout_ms=300)
    await get(client)
    seen = catalog.time_remaining[0]
    assert seen is not None
    assert 0.2 < seen <= 0.31


async def test_the_callers_remaining_time_reaches_every_hop(
    start_server: Start, connect: Connect
) -> None:
    back = Catalog()
    back_server = await start_server(back)
    front = Catalog(default="chain")
    front_server = await start_server(front)
    # Both budgets are larger than the caller's own deadline.
    front.next_hop = connect(back_server.port, name="back", timeout_ms=5000)
    client = connect(front_server.port, name="front", timeout_ms=5000)

    with deadline_scope(0.4):
        reply = await get(client, "deep")
    assert reply.product.product_id == "deep"

    front_seen, back_seen = front.time_remaining[0], back.time_remaining[0]
    assert front_seen is not None
    assert back_seen is not None
    assert 0.2 < front_seen <= 0.4 - 0.05 + 0.01  # caller's remaining minus the margin
    assert back_seen <= front_seen - 0.05 + 0.01  # and again one hop further
    # The server published its caller's deadline to the handler's context.
    front_deadline = front.deadline_remaining[0]
    assert front_deadline is not None
    assert abs(front_deadline - front_seen) < 0.01


async def test_a_call_with_no_time_left_is_not_started(
    start_server: Start, connect: Connect
) -> None:
    catalog = Catalog()
    built = await start_server(catalog)
    client = connect(built.port, name="catalog-no-time")
    with deadline_scope(0.03), pytest.raises(errors.DeadlineExceeded) as raised:
        await get(client)
    assert raised.value.dependency == "catalog-no-time"
    assert catalog.calls == 0
    assert raised.value.sent is False
    assert client.breaker.fail_counter == 0


async def test_a_timeout_cut_short_by_the_caller_does_not_count_against_the_callee(
    start_server: Start, connect: Connect
) -> None:
    catalog = Catalog(default="hang")
    built = await start_server(catalog)
    client = connect(built.port, name="catalog-caller-limited", timeout_ms=2000)
    for _ in range(4):
        with deadline_scope(0.12), pytest.raises(errors.DeadlineExceeded):
            await get(client)
    assert client.breaker.state == "closed"
    assert client.breaker.fail_counter == 0


# --- (f) an expired deadline is refused before the handler runs -------------------


class StallBeforeHandler(grpc.aio.ServerInterceptor):
    """Blocks the server for a while after the call arrived (a stalled process)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = await continuation(details)
        behavior = handler.unary_unary

        async def stalled(request: Any, context: Any) -> Any:
            time.sleep(self.seconds)  # noqa: ASYNC251 - blocking on purpose
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            stalled,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


async def test_work_whose_deadline_passed_is_not_started(
    start_server: Start, connect: Connect
) -> None:
    catalog = Catalog()
    built = await start_server(catalog, interceptors=[StallBeforeHandler(0.15)])
    client = connect(built.port, name="catalog-stalled", timeout_ms=100)
    refused_before = sample(
        "emporium_rpc_server_requests_total",
        rpc_service=CATALOG,
        rpc_method="GetProduct",
        code="DEADLINE_EXCEEDED",
    )
    with pytest.raises(errors.DeadlineExceeded):
        await get(client)

    def refused() -> float:
        return sample(
            "emporium_rpc_server_requests_total",
            rpc_service=CATALOG,
            rpc_method="GetProduct",
            code="DEADLINE_EXCEEDED",
        )

    await settled(lambda: refused() == refused_before + 1)
    assert refused() == refused_before + 1
    assert catalog.calls == 0


async def test_work_within_its_deadline_runs_after_the_same_stall(
    start_server: Start, connect: Connect
) -> None:
    catalog = Catalog()
    built = await start_server(catalog, interceptors=[StallBeforeHandler(0.15)])
    client = connect(built.port, name="catalog-stalled-ok", timeout_ms=1000)
    await get(client)
    assert catalog.calls == 1


# --- (g) retries ---------------------------------------------------------------------


async def test_idempotent_calls_are_retried_on_transient_errors(
    start_server: Start, connect: Connect
) -> None:
    catalog = Catalog(plan=["unavailable", "unavailable"])
    built = await start_server(catalog)
    client = connect(built.port, name="catalog-retry", breaker_fail_max=10)
    reply = await get(client, "r", idempotent=True)
    assert reply.product.product_id == "r"
    assert catalog.calls == 3
    attempts = {
        code: sample(
            "emporium_rpc_client_attempts_total",
            downstream="catalog-retry",
            rpc_method="GetProduct",
            code=code,
        )
        for code in ("UNAVAILABLE", "OK")
    }
    assert attempts == {"UNAVAILABLE": 2, "OK": 1}


async def test_retries_are_bounded(start_server: Start, connect: Connect) -> None:
    catalog = Catalog(default="unavailable")
    built = await start_server(catalog)
    client = connect(built.port, name="catalog-bounded", breaker_fail_max=10)
    with pytest.raises(errors.Unavailable):
        await get(client, idempotent=True)
    assert catalog.calls == 3  # one call and two retries


async def test_non_idempotent_calls_are_never_retried(
    start_server: Start, connect: Connect
) -> None:
    catalog = Catalog(plan=["unavailable"])
    built = await start_server(catalog)
    client = connect(built.port, name="catalog-once")
    with pytest.raises(errors.Unavailable):
        await get(client)
    assert catalog.calls == 1


async def test_business_errors_are_never_retried(start_server: Start, connect: Connect) -> None:
    catalog = Catalog(default="not_found")
    built = await start_server(catalog)
    client = connect(built.port, name="catalog-no-retry-404")
    with pytest.raises(errors.NotFound):
        await get(client, idempotent=True)
    assert catalog.calls == 1


async def test_retries_stay_within_the_deadline(start_server: Start, connect: Connect) -> None:
    catalog = Catalog(default="unavailable", delay=0.12)
    built = await start_server(catalog)
    client = connect(built.port, name="catalog-retry-deadline", timeout_ms=250)
    started = time.monotonic()
    with pytest.raises((errors.Unavailable, errors.DeadlineExceeded)):
        await get(client, idempotent=True)
    elapsed = time.monotonic() - started
    assert elapsed < 0.25 + 0.04
    assert catalog.calls == 2  # a third attempt would not fit in 250 ms
    remaining = [r for r in catalog.time_remaining if r is not None]
    assert remaining[1] < remaining[0] - 0.1  # the retry got only what was left


# --- (h) INVALID_ARGUMENT with field violations, end to end ---------------------------


async def test_invalid_argument_carries_field_violations_to_the_caller(
    start_server: Start, connect: Connect
) -> None:
    built = await start_server(Catalog(default="invalid"))
    client = connect(built.port, name="catalog-invalid")
    with pytest.raises(errors.InvalidArgument) as raised:
        await get(client)
    assert raised.value.violations == [
        errors.FieldViolation("product_id", "must not be empty"),
        errors.FieldViolation("page_size", "must be 1..100"),
    ]


async def test_invalid_argument_details_are_standard_for_any_client(
    start_server: Start,
) -> None:
    built = await start_server(Catalog(default="invalid"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GetProduct(catalog_pb2.GetProductRequest(), timeout=2)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(raised.value)  # type: ignore[arg-type]
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert {(v.field, v.description) for v in bad_request.field_violations} == {
        ("product_id", "must not be empty"),
        ("page_size", "must be 1..100"),
    }


async def test_unexpected_exceptions_become_internal_without_leaking_details(
    start_server: Start, caplog: pytest.LogCaptureFixture
) -> None:
    built = await start_server(Catalog(default="crash"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        with (
            caplog.at_level(logging.INFO),
            pytest.raises(grpc.aio.AioRpcError) as raised,
        ):
            await stub.GetProduct(catalog_pb2.GetProductRequest(product_id="x"), timeout=2)
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert raised.value.details() == "internal error"
    crash = next(r for r in caplog.records if r.message == "unhandled error in RPC handler")
    assert crash.exc_info is not None
    assert "secret" in str(crash.exc_info[1])


# --- access log, metrics and traces --------------------------------------------------


class JsonLines(logging.Handler):
    """Formats records when they are emitted, inside the span that is current then."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def test_one_access_log_line_per_rpc_with_trace_ids(
    start_server: Start, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    catalog = Catalog(plan=["ok", "not_found"])
    built = await start_server(catalog, tracer_provider=provider)
    client = connect(built.port, name="catalog-traced", tracer_provider=provider)

    access = logging.getLogger("emporium.kit.grpc.access")
    formatted = JsonLines()
    formatted.setFormatter(JsonFormatter("catalog", "test"))
    access.addHandler(formatted)
    try:
        with caplog.at_level(logging.INFO, logger="emporium.kit.grpc.access"):
            await get(client, "a")
            with pytest.raises(errors.NotFound):
                await get(client, "b")
            await settled(lambda: len(formatted.lines) == 2)
    finally:
        access.removeHandler(formatted)
    entries = [json.loads(line) for line in formatted.lines]
    assert [(e["rpc_method"], e["code"]) for e in entries] == [
        ("GetProduct", "OK"),
        ("GetProduct", "NOT_FOUND"),
    ]
    assert entries[0]["rpc_service"] == CATALOG
    assert entries[0]["duration_ms"] >= 0

    spans = exporter.get_finished_spans()
    server_spans = [s for s in spans if s.kind == trace.SpanKind.SERVER]
    client_spans = [s for s in spans if s.kind == trace.SpanKind.CLIENT]
    assert len(server_spans) == len(client_spans) == 2
    for server_span, client_span in zip(server_spans, client_spans, strict=True):
        # One trace across the hop: the server span is the client span's child.
        assert server_span.parent is not None
        assert server_span.parent.span_id == client_span.context.span_id
        assert server_span.context.trace_id == client_span.context.trace_id
        assert server_span.attributes is not None
        assert server_span.attributes["rpc.system"] == "grpc"
        assert server_span.attributes["rpc.service"] == CATALOG
        assert server_span.attributes["rpc.method"] == "GetProduct"
    assert server_spans[1].attributes is not None
    assert server_spans[1].attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    # The client spans have the gRPC instrumentation's name and attributes.
    for client_span in client_spans:
        assert client_span.name == f"/{CATALOG}/GetProduct"
        assert client_span.attributes is not None
        assert client_span.attributes["rpc.system"] == "grpc"
        assert client_span.attributes["rpc.service"] == CATALOG
        assert client_span.attributes["rpc.method"] == "GetProduct"
    assert client_spans[0].attributes is not None
    assert client_spans[0].attributes["rpc.grpc.status_code"] == 0
    assert client_spans[0].status.status_code is trace.StatusCode.UNSET
    assert client_spans[1].attributes is not None
    assert client_spans[1].attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert client_spans[1].status.status_code is trace.StatusCode.ERROR
    assert catalog.trace_ids == [s.context.trace_id for s in server_spans]
    # Each log line was written inside its RPC's server span.
    assert [e["trace_id"] for e in entries] == [
        format(s.context.trace_id, "032x") for s in server_spans
    ]
    assert [e["span_id"] for e in entries] == [
        format(s.context.span_id, "016x") for s in server_spans
    ]


async def test_server_red_metrics(start_server: Start, connect: Connect) -> None:
    built = await start_server(Catalog(plan=["ok", "ok", "precondition"]))
    client = connect(built.port, name="catalog-red")
    labels = {"rpc_service": CATALOG, "rpc_method": "GetProduct"}
    ok_before = sample("emporium_rpc_server_requests_total", **labels, code="OK")
    refused_before = sample(
        "emporium_rpc_server_requests_total", **labels, code="FAILED_PRECONDITION"
    )
    count_before = sample("emporium_rpc_server_duration_seconds_count", **labels)
    await get(client)
    await get(client)
    with pytest.raises(errors.FailedPrecondition):
        await get(client)
    await settled(
        lambda: sample("emporium_rpc_server_duration_seconds_count", **labels) == count_before + 3
    )
    assert sample("emporium_rpc_server_requests_total", **labels, code="OK") == ok_before + 2
    assert (
        sample("emporium_rpc_server_requests_total", **labels, code="FAILED_PRECONDITION")
        == refused_before + 1
    )
    assert sample("emporium_rpc_server_duration_seconds_count", **labels) == count_before + 3


def add_catalog_generic_only(servicer: Catalog, server: Any) -> None:
    """Registers GetProduct the way hand-written code may: a generic handler only."""
    handler = grpc.unary_unary_rpc_method_handler(
        servicer.GetProduct,
        request_deserializer=catalog_pb2.GetProductRequest.FromString,
        response_serializer=catalog_pb2.GetProductResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(CATALOG, {"GetProduct": handler}),)
    )


async def test_a_method_behind_a_generic_handler_gets_the_kits_work_once_per_call() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    catalog = Catalog(plan=["ok", "ok", "not_found"])
    built = build_server(
        host="127.0.0.1",
        port=0,
        servicers=[(add_catalog_generic_only, catalog)],
        service_names=[CATALOG],
        tracer_provider=provider,
    )
    labels = {"rpc_service": CATALOG, "rpc_method": "GetProduct"}
    ok_before = sample("emporium_rpc_server_requests_total", **labels, code="OK")
    missing_before = sample("emporium_rpc_server_requests_total", **labels, code="NOT_FOUND")
    await built.server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            stub = catalog_pb2_grpc.CatalogServiceStub(channel)
            request = catalog_pb2.GetProductRequest(product_id="p-1")
            for _ in range(2):
                await stub.GetProduct(request, timeout=2)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.GetProduct(request, timeout=2)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND  # the kit's error mapping
            await settled(lambda: len(exporter.get_finished_spans()) == 3)
    finally:
        await built.server.stop(None)
    assert sample("emporium_rpc_server_requests_total", **labels, code="OK") == ok_before + 2
    assert (
        sample("emporium_rpc_server_requests_total", **labels, code="NOT_FOUND")
        == missing_before + 1
    )
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == [f"/{CATALOG}/GetProduct"] * 3
    assert all(span.kind == trace.SpanKind.SERVER for span in spans)
    assert catalog.trace_ids == [span.context.trace_id for span in spans]


async def test_health_checks_are_counted_but_get_no_span(start_server: Start) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    built = await start_server(Catalog(), tracer_provider=provider)
    labels = {"rpc_service": "grpc.health.v1.Health", "rpc_method": "Check", "code": "OK"}
    before = sample("emporium_rpc_server_requests_total", **labels)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=CATALOG), timeout=1)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    await settled(lambda: sample("emporium_rpc_server_requests_total", **labels) == before + 1)
    assert sample("emporium_rpc_server_requests_total", **labels) == before + 1
    assert exporter.get_finished_spans() == ()


# --- (j) health service and reflection ------------------------------------------------


async def test_health_status_follows_set_serving(start_server: Start) -> None:
    built = await start_server(Catalog(), serving=False)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)

        async def status(service: str) -> int:
            request = health_pb2.HealthCheckRequest(service=service)
            return (await health.Check(request, timeout=1)).status

        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        serving = health_pb2.HealthCheckResponse.SERVING
        assert await status("") == not_serving  # not ready until told so
        assert await status(CATALOG) == not_serving
        task = set_serving(built.health, [CATALOG], True)
        assert task is not None
        await task
        assert await status("") == serving
        assert await status(CATALOG) == serving
        task = set_serving(built.health, [CATALOG], False)  # drain
        assert task is not None
        await task
        assert await status(CATALOG) == not_serving
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await status("no.such.Service")
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_and_describes_the_services(start_server: Start) -> None:
    built = await start_server(Catalog())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=CATALOG),
        ]
        responses = [r async for r in stub.ServerReflectionInfo(iter(requests), timeout=2)]
    listed = {s.name for s in responses[0].list_services_response.service}
    assert listed == {
        CATALOG,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    files = responses[1].file_descriptor_response.file_descriptor_proto
    assert files  # serialized FileDescriptorProtos, what grpcurl decodes requests with


async def test_downstream_health_check_and_breakers_in_healthz(
    start_server: Start, connect: Connect
) -> None:
    built = await start_server(Catalog(plan=["unavailable"]))
    registry = HealthRegistry(check_timeout_seconds=1.0)
    breakers = BreakerRegistry()
    breakers.expose_on(registry)
    client = connect(
        built.port, name="catalog-health", health=registry, critical=True, breakers=breakers
    )
    await registry.run_once()
    healthy, body = registry.report()
    assert healthy
    assert body["dependencies"]["catalog-health"]["status"] == "up"
    assert body["dependencies"]["catalog-health"]["critical"] is True
    assert body["breakers"]["catalog-health"]["state"] == "closed"

    with pytest.raises(errors.Unavailable):
        await get(client)
    _, body = registry.report()
    assert body["breakers"]["catalog-health"]["failures"] == 1

    task = set_serving(built.health, [CATALOG], False)
    assert task is not None
    await task
    await registry.run_once()
    healthy, body = registry.report()
    assert not healthy
    assert "NOT_SERVING" in body["dependencies"]["catalog-health"]["detail"]


async def test_an_unreachable_downstream_is_down_in_healthz_with_a_short_detail(
    connect: Connect,
) -> None:
    registry = HealthRegistry(check_timeout_seconds=1.0)
    connect(1, name="catalog-unreachable", health=registry, critical=False)  # nothing on port 1
    await registry.run_once()
    healthy, body = registry.report()
    dependency = body["dependencies"]["catalog-unreachable"]
    assert healthy  # not critical
    assert dependency["status"] == "down"
    assert dependency["detail"].startswith("ConnectionError: UNAVAILABLE")
    assert "\n" not in dependency["detail"]
