"""A full kit server sheds load; which successes the access log keeps.

A real kit server (``build_server`` with ``max_concurrent_rpcs``) on a
loopback port, its handler held open by the test, and the kit's client: the
call beyond the limit is refused with RESOURCE_EXHAUSTED before the handler
runs, the caller gets Unavailable, and the breaker stays closed (the callee
is up, just full). A downstream too busy to answer its health check while it
answers calls stays up, and a timeout caused by the caller's own blocked
event loop does not count against the breaker. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1._async import HealthServicer

from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from emporium.kit import errors
from emporium.kit.config import Downstream
from emporium.kit.grpc import DownstreamClient, build_server, set_serving
from emporium.kit.grpc import client as client_module
from emporium.kit.health import HealthRegistry
from emporium.kit.logging import AccessLogSampler
from emporium.testing.pytest_plugin import eventually

pytestmark = pytest.mark.unit

CATALOG = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name


class HeldCatalog(catalog_pb2_grpc.CatalogServiceServicer):
    """GetProduct waits until the test releases it."""

    def __init__(self) -> None:
        self.running = 0
        self.started = 0
        self.release = asyncio.Event()

    async def GetProduct(
        self, request: catalog_pb2.GetProductRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.GetProductResponse:
        self.started += 1
        self.running += 1
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        return catalog_pb2.GetProductResponse(
            product=catalog_pb2.Product(product_id=request.product_id)
        )


@pytest.fixture
async def full_server() -> AsyncIterator[tuple[HeldCatalog, int]]:
    catalog = HeldCatalog()
    built = build_server(
        host="127.0.0.1",
        port=0,
        servicers=[(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, catalog)],
        service_names=[CATALOG],
        max_concurrent_rpcs=2,
    )
    await built.server.start()
    task = set_serving(built.health, [CATALOG], True)
    assert task is not None
    await task
    yield catalog, built.port
    catalog.release.set()
    await built.server.stop(None)


async def test_calls_beyond_the_limit_are_refused_with_resource_exhausted(
    full_server: tuple[HeldCatalog, int],
) -> None:
    catalog, port = full_server
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        held = [
            asyncio.ensure_future(
                stub.GetProduct(catalog_pb2.GetProductRequest(product_id=f"p-{i}"), timeout=30)
            )
            for i in range(2)
        ]

        async def both_running() -> bool:
            return catalog.running == 2

        await eventually(both_running, 10, "two calls in the handler")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetProduct(catalog_pb2.GetProductRequest(product_id="p-3"), timeout=30)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert catalog.started == 2, "the refused call must not reach the handler"
        catalog.release.set()
        replies = await asyncio.gather(*held)
        assert [r.product.product_id for r in replies] == ["p-0", "p-1"]
        # Capacity is back once the held calls are done.
        reply = await stub.GetProduct(catalog_pb2.GetProductRequest(product_id="p-4"), timeout=30)
        assert reply.product.product_id == "p-4"


async def test_a_shed_call_is_unavailable_to_the_caller_and_does_not_open_the_breaker(
    full_server: tuple[HeldCatalog, int],
) -> None:
    catalog, port = full_server
    client = DownstreamClient(
        Downstream(
            name="catalog-full", addr=f"127.0.0.1:{port}", timeout_ms=30_000, breaker_fail_max=2
        )
    )
    try:
        stub = catalog_pb2_grpc.CatalogServiceStub(client.channel)

        def get(product_id: str) -> asyncio.Future[catalog_pb2.GetProductResponse]:
            request = catalog_pb2.GetProductRequest(product_id=product_id)
            return asyncio.ensure_future(client.call(stub.GetProduct, request, idempotent=True))

        held = [get("p-0"), get("p-1")]

        async def both_running() -> bool:
            return catalog.running == 2

        await eventually(both_running, 10, "two calls in the handler")
        for i in range(4):  # twice breaker_fail_max
            with pytest.raises(errors.Unavailable):
                await get(f"shed-{i}")
        assert client.breaker.state == "closed"
        assert catalog.started == 2, "a shed call is not retried into the full server"
        catalog.release.set()
        await asyncio.gather(*held)
    finally:
        await client.close()


# --- busy is not down: health checks and timeouts --------------------------------------


class SilentHealth(HealthServicer):
    """A health service that never answers Check (a downstream too busy to answer it)."""

    async def Check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await asyncio.Event().wait()


class SlowCatalog(catalog_pb2_grpc.CatalogServiceServicer):
    """Answers GetProduct at once, except ids starting with ``slow``: those take a minute."""

    async def GetProduct(
        self, request: catalog_pb2.GetProductRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.GetProductResponse:
        if request.product_id.startswith("slow"):
            await asyncio.sleep(60)
        return catalog_pb2.GetProductResponse(
            product=catalog_pb2.Product(product_id=request.product_id)
        )


@pytest.fixture
async def silent_health_server() -> AsyncIterator[int]:
    built = build_server(
        host="127.0.0.1",
        port=0,
        servicers=[(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, SlowCatalog())],
        service_names=[CATALOG],
        health_servicer=SilentHealth(),
    )
    await built.server.start()
    yield built.port
    await built.server.stop(None)


async def test_a_timed_out_health_check_does_not_mark_down_a_downstream_that_answers_calls(
    silent_health_server: int,
) -> None:
    health = HealthRegistry(check_timeout_seconds=5, fail_threshold=2)
    client = DownstreamClient(
        Downstream(name="catalog-busy", addr=f"127.0.0.1:{silent_health_server}", timeout_ms=5000),
        health=health,
        critical=True,
    )
    try:
        # No call answered yet: a silent health service is a down dependency.
        for _ in range(2):
            await health.run_once()
        status = health.report()[1]["dependencies"]["catalog-busy"]
        assert status["status"] == "down", status
        assert "TimeoutError" in status["detail"], status
        assert not health.ready

        # Calls get answers: the same silent health check no longer says down.
        stub = catalog_pb2_grpc.CatalogServiceStub(client.channel)
        reply = await client.call(
            stub.GetProduct, catalog_pb2.GetProductRequest(product_id="p-1"), idempotent=True
        )
        assert reply.product.product_id == "p-1"
        for _ in range(3):
            await health.run_once()
        status = health.report()[1]["dependencies"]["catalog-busy"]
        assert status["status"] == "up", status
        assert "calls were answered" in status["detail"], status
        assert health.ready
    finally:
        await client.close()


async def test_a_timeout_the_callers_own_busy_loop_caused_does_not_count_against_the_breaker(
    silent_health_server: int,
) -> None:
    client = DownstreamClient(
        Downstream(name="catalog-slow", addr=f"127.0.0.1:{silent_health_server}", timeout_ms=50),
        max_retries=0,
    )
    stub = catalog_pb2_grpc.CatalogServiceStub(client.channel)

    async def slow_call() -> None:
        with pytest.raises(errors.DeadlineExceeded):
            await client.call(
                stub.GetProduct, catalog_pb2.GetProductRequest(product_id="slow"), idempotent=True
            )

    try:
        await client.call(  # connected
            stub.GetProduct, catalog_pb2.GetProductRequest(product_id="p-1"), idempotent=True
        )
        # The downstream is slow and this process is not: the timeout counts.
        await slow_call()
        assert client.breaker.fail_counter == 1

        # This process's loop is blocked past the deadline (as a saturated loop is):
        # the expiry is handled late, so it says nothing about the downstream.
        call = asyncio.ensure_future(slow_call())
        await asyncio.sleep(0)  # the call is on the wire
        time.sleep(0.2 + client_module.CALLER_LAG_TOLERANCE_SECONDS)  # noqa: ASYNC251 (a saturated loop)
        await call
        assert client.breaker.fail_counter == 1
    finally:
        await client.close()


# --- access log sampling ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_sampler_keeps_one_success_per_interval_and_counts_the_rest() -> None:
    clock = Clock()
    sampler = AccessLogSampler(rate=0, slow_seconds=0.1, interval_seconds=1.0, clock=clock)
    assert sampler.decide("/a/B", 0.001) == 0  # the first one of a method
    assert sampler.decide("/a/B", 0.001) is None
    assert sampler.decide("/a/B", 0.001) is None
    assert sampler.decide("/a/C", 0.001) == 0  # methods are counted apart
    clock.now += 1.0
    assert sampler.decide("/a/B", 0.001) == 2  # and says how many it left out


def test_sampler_always_keeps_slow_calls() -> None:
    sampler = AccessLogSampler(rate=0, slow_seconds=0.1, interval_seconds=1.0, clock=Clock())
    assert sampler.decide("/a/B", 0.001) == 0
    assert sampler.decide("/a/B", 0.1) == 0
    assert sampler.decide("/a/B", 0.001) is None


def test_sampler_decides_on_the_trace_id_so_every_service_keeps_the_same_traces() -> None:
    clock = Clock()
    sampler = AccessLogSampler(rate=0.25, slow_seconds=10, interval_seconds=0, clock=clock)
    other = AccessLogSampler(rate=0.25, slow_seconds=10, interval_seconds=0, clock=clock)
    low = (0xABCDEF << 64) | (1 << 60)  # low 64 bits below a quarter of their range
    high = (0xABCDEF << 64) | (3 << 62)
    assert sampler.decide("/a/B", 0.001, low) == 0
    assert other.decide("/x/Y", 0.001, low) == 0
    assert sampler.decide("/a/B", 0.001, high) is None
    assert sampler.decide("/a/B", 0.001, 0) is None


def test_sampler_rate_one_keeps_everything_and_bad_rates_are_refused() -> None:
    sampler = AccessLogSampler(rate=1.0, clock=Clock())
    assert all(sampler.decide("/a/B", 0.0) == 0 for _ in range(5))
    with pytest.raises(ValueError, match="rate"):
        AccessLogSampler(rate=1.5)
