"""Breakers recover with the downstream's readiness: a real process killed and restarted.

The downstream is a separate Python process (``downstream_process.py``)
serving over a loopback socket; the test kills it with SIGKILL, starts a new
one on the same port that reports NOT_SERVING for a while and then SERVING,
and watches what the kit's client does. The breaker's reset timeout is a
minute, so only the readiness-driven close can explain a recovery within
seconds.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from emporium.kit import errors
from emporium.kit.config import Downstream
from emporium.kit.grpc import BreakerOpen, DownstreamClient
from emporium.testing.pytest_plugin import free_port

pytestmark = pytest.mark.unit

PROCESS = Path(__file__).with_name("downstream_process.py")
RESET_TIMEOUT_S = 60.0


class DownstreamProcess:
    def __init__(self, port: int) -> None:
        self.port = port
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, ready_after: float) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(PROCESS),
            str(self.port),
            str(ready_after),
            stdout=asyncio.subprocess.PIPE,
        )

    async def serving(self, within: float = 30.0) -> float:
        """Waits for the process to report SERVING; returns the monotonic time it did."""
        assert self.process is not None
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), within)
        assert line.strip() == b"serving", line
        return time.monotonic()

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@pytest.fixture
async def downstream() -> AsyncIterator[DownstreamProcess]:
    running = DownstreamProcess(free_port())
    yield running
    await running.kill()


@pytest.fixture
async def client(downstream: DownstreamProcess) -> AsyncIterator[DownstreamClient]:
    made = DownstreamClient(
        Downstream(
            name="restarting",
            addr=f"127.0.0.1:{downstream.port}",
            timeout_ms=500,
            breaker_fail_max=3,
            breaker_reset_seconds=RESET_TIMEOUT_S,
        )
    )
    yield made
    await made.close()


async def get(client: DownstreamClient) -> catalog_pb2.GetProductResponse:
    stub = catalog_pb2_grpc.CatalogServiceStub(client.channel)
    return await client.call(stub.GetProduct, catalog_pb2.GetProductRequest(product_id="p-1"))


async def first_success(client: DownstreamClient, attempts: list[float]) -> float:
    """Calls every 50 ms until one succeeds; records when each failed call was made."""
    while True:
        started = time.monotonic()
        try:
            await get(client)
        except errors.Unavailable:
            attempts.append(started)
            await asyncio.sleep(0.05)
            continue
        return started


async def test_calls_succeed_soon_after_a_restarted_downstream_is_ready(
    downstream: DownstreamProcess, client: DownstreamClient
) -> None:
    await downstream.start(ready_after=0)
    await downstream.serving()
    assert (await get(client)).product.name == "Teapot"

    await downstream.kill()
    for _ in range(3):
        with pytest.raises(errors.Unavailable):
            await get(client)
    assert client.breaker.state == "open"
    # Down long enough for the channel's reconnect backoff to reach its ceiling.
    await asyncio.sleep(2)

    # The new process listens at once but is not ready for 1.5 s.
    await downstream.start(ready_after=1.5)
    failed: list[float] = []
    waiting = asyncio.create_task(first_success(client, failed))
    ready_at = await downstream.serving()
    succeeded_at = await waiting
    recovery = succeeded_at - ready_at
    print(f"first successful call {recovery * 1000:.0f} ms after the downstream was SERVING")

    # Order of events: no call went through before the downstream said SERVING
    # (the breaker was open and the reset timeout far away), and calls work
    # again within a couple of seconds of it, long before the reset timeout.
    assert failed
    assert max(failed) < succeeded_at
    assert succeeded_at > ready_at - 0.05
    assert recovery < 3.0
    assert client.breaker.state == "closed"


async def test_a_downstream_still_not_serving_keeps_the_breaker_open(
    downstream: DownstreamProcess, client: DownstreamClient
) -> None:
    await downstream.start(ready_after=0)
    await downstream.serving()
    await downstream.kill()
    for _ in range(3):
        with pytest.raises(errors.Unavailable):
            await get(client)
    assert client.breaker.state == "open"

    # Listening, answering health checks, but NOT_SERVING: the breaker stays open.
    await downstream.start(ready_after=RESET_TIMEOUT_S)
    await asyncio.sleep(2.5)
    assert client.breaker.state == "open"
    with pytest.raises(errors.Unavailable) as refused:
        await get(client)
    assert isinstance(refused.value.__cause__, BreakerOpen)
