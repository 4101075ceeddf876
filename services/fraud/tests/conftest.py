"""Fixtures of the fraud tests: a hand-written fake store for unit tests, real servers
for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import astuple, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from emporium.fraud import domain
from emporium.fraud.main import MIGRATIONS_DIR, build
from emporium.fraud.settings import FraudSettings
from emporium.fraud.topics import Topics
from emporium.kit.config import KafkaSettings, parse_settings
from emporium.kit.db import migrate
from emporium.kit.kafka import EventProducer


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
# other's data or that of a running system. The fraud service is the real
# composition from main.py, started in this process on loopback ports.

REPO = Path(__file__).resolve().parents[3]
TEST_PARTITIONS = 3


def load_platform() -> ModuleType:
    """The runner's package, loaded from its file (scripts/ must not go on sys.path)."""
    if "emporium_platform" in sys.modules:
        return sys.modules["emporium_platform"]
    package = REPO / "scripts" / "emporium_platform"
    spec = importlib.util.spec_from_file_location(
        "emporium_platform", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["emporium_platform"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def platform() -> ModuleType:
    """PostgreSQL and Kafka, started by the runner if they are not running yet."""
    module = load_platform()
    try:
        module.ensure_started()
    except module.PlatformError as error:
        pytest.skip(f"PostgreSQL and Kafka could not be started: {error}")
    return module


@pytest.fixture(scope="session")
def admin_dsn(platform: ModuleType) -> str:
    return str(platform.admin_url())


@pytest.fixture(scope="session")
def kafka_bootstrap(platform: ModuleType) -> str:
    return str(platform.kafka_bootstrap())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def database(admin_dsn: str) -> AsyncIterator[str]:
    """A fresh database with the fraud migrations; dropped afterwards."""
    name = f"fraud_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = admin_dsn.rsplit("/", 1)[0] + "/" + name
        await migrate(dsn, MIGRATIONS_DIR)
        yield dsn
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def db(database: str) -> AsyncIterator[asyncpg.Pool]:
    """The test's own view of the fraud database, for assertions."""
    pool = await asyncpg.create_pool(database, min_size=1, max_size=3)
    yield pool
    await pool.close()


@pytest.fixture
async def topics(kafka_bootstrap: str) -> AsyncIterator[Topics]:
    """Uniquely named topics (and .dlq twins) for this test; deleted afterwards."""
    suffix = uuid.uuid4().hex[:10]
    names = Topics(
        order_placed=f"fraud-test.order-placed.{suffix}",
        fraud_decision_made=f"fraud-test.fraud-decision-made.{suffix}",
    )
    every = [t for name in astuple(names) for t in (name, f"{name}.dlq")]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(t, num_partitions=TEST_PARTITIONS, replication_factor=1) for t in every]
        )
        for _ in range(100):
            if set(every) <= set(await admin.list_topics()):
                break
            await asyncio.sleep(0.05)
        yield names
    finally:
        with contextlib.suppress(Exception):
            await admin.delete_topics(every)
        await admin.close()


@pytest.fixture
def reader(kafka_bootstrap: str) -> Callable[..., Awaitable[list[Any]]]:
    """``await reader(topic, expected)``: records of a test topic, from the beginning."""

    async def read(topic: str, expected: int, within: float = 15.0) -> list[Any]:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            assigned = [TopicPartition(topic, p) for p in range(TEST_PARTITIONS)]
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            records: list[Any] = []
            deadline = time.monotonic() + within
            while len(records) < expected and time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
            return records
        finally:
            await consumer.stop()

    return read


@pytest.fixture
async def publisher(kafka_bootstrap: str) -> AsyncIterator[EventProducer]:
    settings = parse_settings(KafkaSettings, {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    producer = EventProducer(settings, client_id="fraud-tests")
    await producer.start()
    yield producer
    await producer.stop()


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
