"""Fixtures for the kit's data tests: a throwaway database and topics per test.

Integration tests run against the real PostgreSQL and Kafka of the local
platform runner (``scripts/platformctl.py``), or the external servers it is
pointed at. Each test gets its own database (created with the runner's
superuser, dropped afterwards) and its own uniquely named topics, so tests
never see each other's data or anyone else's.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from emporium.kit.config import KafkaSettings, parse_settings
from emporium.kit.db import migrate
from emporium.kit.kafka import EventProducer

REPO = Path(__file__).resolve().parents[3]


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
def runner() -> ModuleType:
    """PostgreSQL and Kafka, started by the runner if they are not running yet."""
    module = load_platform()
    try:
        module.ensure_started()
    except module.PlatformError as error:
        pytest.skip(f"PostgreSQL and Kafka could not be started: {error}")
    return module


@pytest.fixture(scope="session")
def admin_dsn(runner: ModuleType) -> str:
    dsn: str = runner.admin_url()
    return dsn


@pytest.fixture(scope="session")
def kafka_bootstrap(runner: ModuleType) -> str:
    bootstrap: str = runner.kafka_bootstrap()
    return bootstrap


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture
async def database_factory(admin_dsn: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Creates empty databases for this test; drops them afterwards."""
    created: list[str] = []

    async def create() -> str:
        name = f"kit_test_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        created.append(name)
        return _with_database(admin_dsn, name)

    yield create
    conn = await asyncpg.connect(admin_dsn)
    try:
        for name in created:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def database_url(database_factory: Callable[[], Awaitable[str]]) -> str:
    """A fresh database with the kit's tables (outbox, processed_events)."""
    dsn = await database_factory()
    await migrate(dsn, None)
    return dsn


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=5, command_timeout=10)
    yield pool
    await pool.close()


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    return parse_settings(
        KafkaSettings,
        env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_MAX_DELIVERY_ATTEMPTS": "3"},
    )


@pytest.fixture
async def producer(kafka_settings: KafkaSettings) -> AsyncIterator[EventProducer]:
    producer = EventProducer(kafka_settings, client_id="kit-tests")
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture
async def topic_factory(kafka_bootstrap: str) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Creates a uniquely named topic and its ``.dlq`` twin; deletes both afterwards."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    created: list[str] = []

    async def create(name: str = "events", partitions: int = 3) -> str:
        topic = f"kit-test.{name}.{uuid.uuid4().hex[:10]}"
        pair = [topic, f"{topic}.dlq"]
        await admin.create_topics(
            [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in pair]
        )
        created.extend(pair)
        await _wait_for_topics(admin, pair)
        return topic

    yield create
    with contextlib.suppress(Exception):  # a best-effort clean-up must not fail the test
        await admin.delete_topics(created)
    await admin.close()


async def _wait_for_topics(admin: AIOKafkaAdminClient, topics: list[str]) -> None:
    for _ in range(50):
        if set(topics) <= set(await admin.list_topics()):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"topics {topics} did not appear")


async def _partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return [TopicPartition(topic, p["partition"]) for p in described["partitions"]]


async def _read_topic(bootstrap: str, topic: str, expected: int, within: float) -> list[Any]:
    """Reads a topic from the beginning until ``expected`` records arrived (or ``within`` s)."""
    tps = await _partitions(bootstrap, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = asyncio.get_running_loop().time() + within
        while len(records) < expected and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for items in batch.values():
                records.extend(items)
        return records
    finally:
        await consumer.stop()


async def _topic_size(bootstrap: str, topic: str) -> int:
    """Number of records in a topic (sum of end offsets; nothing is compacted here)."""
    tps = await _partitions(bootstrap, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
        return sum(ends.values())
    finally:
        await consumer.stop()


@pytest.fixture
def read_topic(kafka_bootstrap: str) -> Callable[..., Awaitable[list[Any]]]:
    """``await read_topic(topic, expected, within=15.0)``: records from the beginning."""

    async def read(topic: str, expected: int, within: float = 15.0) -> list[Any]:
        return await _read_topic(kafka_bootstrap, topic, expected, within)

    return read


@pytest.fixture
def partitions_of(kafka_bootstrap: str) -> Callable[[str], Awaitable[list[TopicPartition]]]:
    """``await partitions_of(topic)``: the topic's partitions, as the broker reports them."""

    async def partitions(topic: str) -> list[TopicPartition]:
        return await _partitions(kafka_bootstrap, topic)

    return partitions


@pytest.fixture
def topic_size(kafka_bootstrap: str) -> Callable[[str], Awaitable[int]]:
    """``await topic_size(topic)``: how many records a topic holds."""

    async def size(topic: str) -> int:
        return await _topic_size(kafka_bootstrap, topic)

    return size


async def eventually(
    condition: Callable[[], Awaitable[bool]], within: float = 15.0, interval: float = 0.05
) -> bool:
    """Polls an async condition until it holds or ``within`` seconds pass."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if await condition():
            return True
        await asyncio.sleep(interval)
    return await condition()


_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session")
def _span_processor() -> None:
    """Adds an in-memory exporter to the SDK tracer provider (installing one if needed)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "another tracer provider is installed"
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))


@pytest.fixture
def spans(_span_processor: None) -> Iterator[InMemorySpanExporter]:
    """The spans finished during this test (a test harness for our own spans)."""
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()
