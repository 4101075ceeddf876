"""Fixtures of the fraud tests: a hand-written fake store for unit tests, real servers
for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from emporium_platform.pytest_plugin import free_port

from emporium.fraud import domain
from emporium.fraud.main import MIGRATIONS_DIR, build
from emporium.fraud.settings import FraudSettings
from emporium.fraud.topics import Topics
from emporium.kit.config import parse_settings


@dataclass
class FakeDecisionStore:
    decisions: dict[str, domain.Decision] = field(default_factory=dict)
    outbox: list[domain.Decision] = field(default_factory=list)

    async def add_decision(self, order: domain.PlacedOrder, decision: domain.Decision) -> bool:
        if order.order_id in self.decisions:
            return False
        self.decisions[order.order_id] = decision
        self.outbox.append(decision)
        return True


@pytest.fixture
def decision_store() -> FakeDecisionStore:
    return FakeDecisionStore()


# --- integration: the real PostgreSQL and Kafka of the local runner -----------------
#
# Each test gets its own database and its own topics, so tests never see each
# other's data or that of a running system (the local platform's plugin,
# scripts/emporium_platform/pytest_plugin.py, makes both). The fraud service is the
# real composition from main.py, started in this process on loopback ports.


@pytest.fixture
async def database(database_factory: Callable[..., Awaitable[str]]) -> str:
    """A fresh database with the fraud migrations; dropped afterwards."""
    return await database_factory(MIGRATIONS_DIR)


@pytest.fixture
async def db(database: str) -> AsyncIterator[asyncpg.Pool]:
    """The test's own view of the fraud database, for assertions."""
    pool = await asyncpg.create_pool(database, min_size=1, max_size=3)
    yield pool
    await pool.close()


@pytest.fixture
async def topics(topic_factory: Callable[..., Awaitable[str]]) -> Topics:
    """Uniquely named topics (and .dlq twins) for this test; deleted afterwards."""
    return Topics(
        order_placed=await topic_factory("fraud.order-placed"),
        fraud_decision_made=await topic_factory("fraud.fraud-decision-made"),
    )


@dataclass
class RunningFraud:
    service: Any
    task: asyncio.Task[None]
    settings: FraudSettings

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.admin_port}"

    @property
    def grpc_addr(self) -> str:
        return f"127.0.0.1:{self.settings.grpc_port}"

    async def healthz(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=2) as http:
            body: dict[str, Any] = (await http.get(self.admin_url + "/healthz")).json()
            return body

    async def ready(self) -> bool:
        async with httpx.AsyncClient(timeout=1) as http:
            try:
                return (await http.get(self.admin_url + "/readyz")).status_code == 200
            except httpx.HTTPError:
                return False


@pytest.fixture
async def fraud(database: str, kafka_bootstrap: str, topics: Topics) -> AsyncIterator[RunningFraud]:
    """The real fraud composition (main.build) in this process; stopped afterwards."""
    env = {
        "ENVIRONMENT": "test",
        "BIND_HOST": "127.0.0.1",
        "GRPC_PORT": str(free_port()),
        "ADMIN_PORT": str(free_port()),
        "HEALTH_CHECK_INTERVAL_SECONDS": "0.5",
        "SHUTDOWN_GRACE_SECONDS": "3",
        "DATABASE_URL": database,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_CONSUMER_GROUP": f"fraud-test-{uuid.uuid4().hex[:8]}",
        "KAFKA_MAX_DELIVERY_ATTEMPTS": "3",
    }
    settings = parse_settings(FraudSettings, env)
    service = await build(settings, topics)
    running = RunningFraud(service, asyncio.create_task(service.run()), settings)
    started = time.monotonic()
    while not await running.ready():
        assert time.monotonic() - started < 15, "fraud did not become ready"
        await asyncio.sleep(0.05)
    yield running
    service.request_stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(running.task, 15)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
