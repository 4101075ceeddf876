"""pytest fixtures for tests against the local platform's real PostgreSQL and Kafka.

Registered once for the whole repository by the root ``conftest.py``, so every
test folder gets the same fixtures; a folder's own conftest keeps only what is
specific to it (its migrations, its topics, its servicer). Unlike the rest of
this package it needs the workspace's packages (pytest, psycopg, confluent-kafka,
the kit), so only pytest imports it.

Each test gets its own database (created with the runner's superuser, dropped
afterwards) and its own uniquely named topics, so tests never see each
other's data, nor that of a running system.

When PostgreSQL or Kafka cannot be reached the test is skipped with the
reason, unless ``EMPORIUM_REQUIRE_PLATFORM=1`` (``scripts/test.sh`` sets it):
then it fails, so a run can never pass with its integration tests silently
skipped.

Fixtures:

* ``platform``: this package, with PostgreSQL and Kafka started if they were not.
* ``admin_dsn``, ``kafka_bootstrap``: where they are.
* ``database_factory`` / ``session_database_factory``: ``await
  factory(migrations_dir)`` is the DSN of a new database with the kit's
  migrations and the given folder's (``factory(empty=True)``: nothing
  applied); dropped after the test / the session.
* ``topic_factory``: ``await topic_factory("order-placed")`` creates a
  uniquely named topic and its ``.dlq`` twin; deleted afterwards.
* ``read_topic``, ``partitions_of``, ``topic_size``: read what a topic holds
  (records as :class:`Record`).
* ``kafka_settings``, ``producer``: a started producer on the platform's Kafka.
* ``spans``: the spans this process finished during the test.
* ``run_service``: ``await run_service(service)`` runs a built kit ``Service``
  in the test's event loop until it is ready (:class:`RunningService`), and
  stops it after the test; :func:`service_env` is the environment to build
  its settings from.

Async tests and fixtures run on uvloop, the loop every service runs on
(:func:`emporium.kit.service.run_cli`), through pytest-asyncio's
``pytest_asyncio_loop_factories`` hook.

Helpers for test modules: :func:`free_port`, :func:`eventually`, :func:`service_env`,
:func:`refuse_connections`, :func:`open_database` (the kit's database on a URL, connected),
:class:`TopicReader` (a plain reader of partitions from their beginning),
:func:`read_partition`, :func:`committed_offsets`, :func:`create_topics`,
:func:`kit_consumer` (the kit's consumer in a group of its own, retrying quickly),
:func:`log_line_traces` (which trace each line of a logger was written in).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
import uvloop
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import emporium_platform
from emporium.kit.config import KafkaSettings, parse_settings
from emporium.kit.db import Database, migrate
from emporium.kit.kafka import EventProducer, IdempotentConsumer, client_config
from emporium.kit.service import Service

REQUIRE_PLATFORM = "EMPORIUM_REQUIRE_PLATFORM"


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Async tests run on the services' own event loop."""
    return {"uvloop": uvloop.new_event_loop}


def unavailable(reason: str) -> NoReturn:
    """Skips the test for ``reason``, or fails it when the platform is required."""
    if os.environ.get(REQUIRE_PLATFORM) == "1":
        pytest.fail(
            f"{reason} ({REQUIRE_PLATFORM}=1: the real servers are required)", pytrace=False
        )
    pytest.skip(reason)


#: Where test servers get their ports: below Linux's ephemeral range (32768 on),
#: clear of the platform's fixed ports (docs/configuration.md).
TEST_PORTS = range(30000, 32768)
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback TCP port nothing listens on right now, for a server a test starts.

    Taken below the kernel's ephemeral range: a port the kernel picked there
    (binding port 0) can be taken, between the pick and the server's bind, by
    any outgoing connection, which gets its local port from that range (a
    pool reconnecting to a stopped database makes many). Below it only a
    listener can take it. Each port is handed out once per test process.
    """
    ephemeral_start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = [port for port in TEST_PORTS if port < ephemeral_start and port not in _handed_out]
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {TEST_PORTS} below {ephemeral_start}")


async def eventually(
    condition: Callable[[], Awaitable[bool]],
    within: float = 15.0,
    what: str = "condition",
    interval: float = 0.05,
) -> float:
    """Polls ``condition`` until it holds; returns the seconds that took.

    Raises AssertionError naming ``what`` when ``within`` seconds pass first.
    """
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"{what} not met within {within}s")
        await asyncio.sleep(interval)
    return time.monotonic() - started


async def open_database(url: str, *, max_size: int = 5, **options: Any) -> Database:
    """The kit's database on ``url``, its pool connected; close it with ``await db.close()``."""
    database = Database(url, application_name="tests", min_size=1, max_size=max_size, **options)
    await database.open(wait=True, wait_seconds=10)
    return database


async def refuse_connections(admin_dsn: str, name: str, refuse: bool = True) -> None:
    """Takes one database away for real (or gives it back with ``refuse=False``).

    New connections are refused and the open ones terminated by the server;
    the other databases on the server are untouched.
    """
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as admin:
        allow = "false" if refuse else "true"
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {allow}')
        if refuse:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


# -- the servers ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def platform() -> ModuleType:
    """PostgreSQL and Kafka, started by the runner if they are not running yet."""
    try:
        emporium_platform.ensure_started()
    except emporium_platform.PlatformError as error:
        unavailable(f"PostgreSQL and Kafka could not be started: {error}")
    return emporium_platform


@pytest.fixture(scope="session")
def admin_dsn(platform: ModuleType) -> str:
    """A superuser DSN of the platform's PostgreSQL."""
    return str(platform.admin_url())


@pytest.fixture(scope="session")
def kafka_bootstrap(platform: ModuleType) -> str:
    return str(platform.kafka_bootstrap())


# -- throwaway databases ----------------------------------------------------------------


class ThrowawayDatabases:
    """Databases created for tests on the platform's PostgreSQL, dropped together."""

    def __init__(self, admin_dsn: str) -> None:
        self._admin_dsn = admin_dsn
        self._created: list[str] = []

    async def _admin(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await psycopg.AsyncConnection.connect(
                self._admin_dsn, connect_timeout=5, autocommit=True
            )
        except psycopg.OperationalError as error:
            unavailable(f"PostgreSQL not reachable: {type(error).__name__}: {error}")

    async def create(self, migrations_dir: Path | None = None, *, empty: bool = False) -> str:
        """The DSN of a new database with the kit's migrations and ``migrations_dir``'s.

        Named ``test_<service>_<random>`` after the migrations' package (``kit``
        without one). ``empty=True`` applies nothing.
        """
        owner = migrations_dir.parent.name if migrations_dir is not None else "kit"
        name = f"test_{owner}_{uuid.uuid4().hex[:12]}"
        admin = await self._admin()
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        self._created.append(name)
        parts = urlsplit(self._admin_dsn)
        dsn = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
        if not empty:
            await migrate(dsn, migrations_dir)
        return dsn

    async def drop_all(self) -> None:
        if not self._created:
            return
        admin = await self._admin()
        try:
            for name in self._created:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def database_factory(admin_dsn: str) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """``await database_factory(migrations_dir)``: a new database, dropped after the test."""
    databases = ThrowawayDatabases(admin_dsn)
    yield databases.create
    await databases.drop_all()


@pytest.fixture(scope="session")
async def session_database_factory(
    admin_dsn: str,
) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Like ``database_factory``, for databases shared by a session's tests."""
    databases = ThrowawayDatabases(admin_dsn)
    yield databases.create
    await databases.drop_all()


# -- throwaway topics -------------------------------------------------------------------


def _plain(bootstrap: str, **properties: Any) -> dict[str, Any]:
    settings = parse_settings(KafkaSettings, env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    return client_config(settings, **properties)


async def create_topics(bootstrap: str, partitions: Mapping[str, int]) -> None:
    """Creates topics (name: partitions) and waits until the broker lists them all."""
    admin = AdminClient(_plain(bootstrap))
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=n, replication_factor=1) for t, n in partitions.items()],
        operation_timeout=10,
    )
    try:
        for future in futures.values():
            await asyncio.wrap_future(future)
    except KafkaException as error:
        unavailable(f"Kafka not reachable: {error}")
    for _ in range(100):
        listed = await asyncio.to_thread(admin.list_topics, None, 5)
        if set(partitions) <= set(listed.topics):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"topics {sorted(partitions)} did not appear")


async def delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AdminClient(_plain(bootstrap))
    for future in admin.delete_topics(topics, operation_timeout=10).values():
        await asyncio.wrap_future(future)


@pytest.fixture
async def topic_factory(kafka_bootstrap: str) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """``await topic_factory(name, partitions=3)``: ``test.<name>.<random>`` and its ``.dlq``.

    Returns once the broker lists both; both are deleted after the test.
    """
    created: list[str] = []

    async def create(name: str = "events", partitions: int = 3) -> str:
        topic = f"test.{name}.{uuid.uuid4().hex[:10]}"
        await create_topics(kafka_bootstrap, {topic: partitions, f"{topic}.dlq": partitions})
        created.extend([topic, f"{topic}.dlq"])
        return topic

    yield create
    if created:
        with contextlib.suppress(Exception):  # a best-effort clean-up must not fail the test
            await delete_topics(kafka_bootstrap, created)


@dataclass(frozen=True)
class Record:
    """One record as a test reads it back."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    timestamp: int


def _record(message: Any) -> Record:
    return Record(
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        key=message.key(),
        value=message.value() or b"",
        headers=[(name, value or b"") for name, value in (message.headers() or [])],
        timestamp=message.timestamp()[1],
    )


class TopicReader:
    """A plain consumer (no group) of partitions from their beginning; its calls run off the loop.

    ``async with TopicReader(bootstrap, partitions) as reader: await reader.read(0.2)``.
    """

    def __init__(self, bootstrap: str, partitions: list[TopicPartition]) -> None:
        self._consumer = Consumer(
            _plain(
                bootstrap,
                **{
                    "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "fetch.wait.max.ms": 100,
                },
            )
        )
        self._partitions = [
            TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in partitions
        ]

    async def __aenter__(self) -> TopicReader:
        self._consumer.assign(self._partitions)
        return self

    async def read(self, seconds: float = 0.2) -> list[Record]:
        """What arrived within ``seconds`` (up to 1000 records)."""
        messages = await asyncio.to_thread(self._consumer.consume, 1000, seconds)
        return [_record(m) for m in messages if m.error() is None]

    async def __aexit__(self, *_: object) -> None:
        await asyncio.to_thread(self._consumer.close)


async def read_partition(
    bootstrap: str, partitions: list[TopicPartition], expected: int, within: float = 15.0
) -> list[Record]:
    """Records of ``partitions`` from the beginning, until ``expected`` or ``within`` seconds."""
    async with TopicReader(bootstrap, partitions) as reader:
        records: list[Record] = []
        deadline = time.monotonic() + within
        while len(records) < expected and time.monotonic() < deadline:
            records.extend(await reader.read(0.2))
        return records


async def _partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    admin = AdminClient(_plain(bootstrap))
    metadata = await asyncio.to_thread(admin.list_topics, topic, 10)
    return [TopicPartition(topic, p) for p in sorted(metadata.topics[topic].partitions)]


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The offsets ``group`` committed on ``topic``, by partition (absent: none committed)."""
    tps = await _partitions(bootstrap, topic)
    consumer = Consumer(_plain(bootstrap, **{"group.id": group, "enable.auto.commit": False}))
    try:
        committed = await asyncio.to_thread(consumer.committed, tps, 10)
    finally:
        await asyncio.to_thread(consumer.close)
    return {tp.partition: tp.offset for tp in committed if tp.offset >= 0}


@pytest.fixture
def read_topic(kafka_bootstrap: str) -> Callable[..., Awaitable[list[Record]]]:
    """``await read_topic(topic, expected, within=15.0)``: its records from the beginning.

    Reads until ``expected`` records arrived or ``within`` seconds passed.
    """

    async def read(topic: str, expected: int, within: float = 15.0) -> list[Record]:
        tps = await _partitions(kafka_bootstrap, topic)
        return await read_partition(kafka_bootstrap, tps, expected, within)

    return read


@pytest.fixture
def partitions_of(kafka_bootstrap: str) -> Callable[[str], Awaitable[list[TopicPartition]]]:
    """``await partitions_of(topic)``: the topic's partitions, as the broker reports them."""

    async def partitions(topic: str) -> list[TopicPartition]:
        return await _partitions(kafka_bootstrap, topic)

    return partitions


@pytest.fixture
def topic_size(kafka_bootstrap: str) -> Callable[[str], Awaitable[int]]:
    """``await topic_size(topic)``: how many records a topic holds (nothing is compacted)."""

    async def size(topic: str) -> int:
        tps = await _partitions(kafka_bootstrap, topic)
        consumer = Consumer(_plain(kafka_bootstrap, **{"group.id": "topic-size"}))
        try:
            total = 0
            for tp in tps:
                low, high = await asyncio.to_thread(consumer.get_watermark_offsets, tp, 10)
                total += high - low
            return total
        finally:
            await asyncio.to_thread(consumer.close)

    return size


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """The platform's Kafka, with 3 delivery attempts so dead-lettering tests stay short."""
    return parse_settings(
        KafkaSettings,
        env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_MAX_DELIVERY_ATTEMPTS": "3"},
    )


def kit_consumer(
    settings: KafkaSettings,
    database: Database,
    producer: EventProducer,
    handlers: dict[str, Any],
    **options: Any,
) -> IdempotentConsumer:
    """The kit's consumer in a group of its own, retrying quickly (0.05 s, at most 0.5 s).

    ``options`` go to :class:`IdempotentConsumer` and override those defaults.
    """
    return IdempotentConsumer(
        settings,
        database,
        handlers,
        producer,
        group_id=options.pop("group_id", f"tests-{uuid.uuid4().hex[:8]}"),
        retry_backoff_seconds=options.pop("retry_backoff_seconds", 0.05),
        max_backoff_seconds=options.pop("max_backoff_seconds", 0.5),
        **options,
    )


@pytest.fixture
async def producer(kafka_settings: KafkaSettings) -> AsyncIterator[EventProducer]:
    """A started producer (client id ``tests``), stopped after the test."""
    producer = EventProducer(kafka_settings, client_id="tests")
    await producer.start()
    yield producer
    await producer.stop()


# -- spans ------------------------------------------------------------------------------

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


class LogLineTraces(logging.Handler):
    """The lines of a logger with the trace current when each was written.

    ``lines``: ``(message, the record's order_id, trace id)``, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        current = trace.get_current_span().get_span_context()
        order_id = str(getattr(record, "order_id", ""))
        self.lines.append((record.getMessage(), order_id, current.trace_id))

    def trace_of(self, message: str) -> dict[str, int]:
        """The trace id of each order's line with ``message`` (the last one written)."""
        return {order_id: trace_id for text, order_id, trace_id in self.lines if text == message}


@contextlib.contextmanager
def log_line_traces(logger: str) -> Iterator[LogLineTraces]:
    """Within the block, records which trace each line of ``logger`` was written in."""
    handler = LogLineTraces()
    target = logging.getLogger(logger)
    target.addHandler(handler)
    try:
        yield handler
    finally:
        target.removeHandler(handler)


# -- kit services run by a test -----------------------------------------------------------


def service_env(name: str, **values: str) -> dict[str, str]:
    """The environment of a service that a test runs in its own process.

    Test mode on free loopback ports, health checked every 0.5 s, a 3 s drain,
    a consumer group of its own and 3 delivery attempts; ``values`` add to it
    or override it (``DATABASE_URL``, ``KAFKA_BOOTSTRAP_SERVERS``, downstreams...).
    """
    return {
        "ENVIRONMENT": "test",
        "BIND_HOST": "127.0.0.1",
        "GRPC_PORT": str(free_port()),
        "ADMIN_PORT": str(free_port()),
        "HEALTH_CHECK_INTERVAL_SECONDS": "0.5",
        "SHUTDOWN_GRACE_SECONDS": "3",
        "KAFKA_CONSUMER_GROUP": f"{name}-test-{uuid.uuid4().hex[:8]}",
        "KAFKA_MAX_DELIVERY_ATTEMPTS": "3",
        **values,
    }


@dataclass
class RunningService:
    """A kit ``Service`` running in the test's event loop, on loopback ports."""

    service: Service
    task: asyncio.Task[None]

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.service.settings.admin_port}"

    @property
    def grpc_addr(self) -> str:
        return f"127.0.0.1:{self.service.settings.grpc_port}"

    async def ready(self) -> bool:
        """Whether ``/readyz`` answers 200 (False while it does not answer at all)."""
        async with httpx.AsyncClient(timeout=1) as http:
            try:
                return (await http.get(self.admin_url + "/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

    async def healthz(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=2) as http:
            body: dict[str, Any] = (await http.get(self.admin_url + "/healthz")).json()
            return body


@pytest.fixture
async def run_service() -> AsyncIterator[Callable[..., Awaitable[RunningService]]]:
    """``await run_service(service, wait_ready=True)``: runs ``service.run()`` until the test ends.

    Waits up to 15 s for ``/readyz`` unless ``wait_ready=False``. Afterwards
    each service drains as on SIGTERM, and the signal handlers ``run()``
    installed on the test's event loop are removed.
    """
    started: list[RunningService] = []

    async def run(service: Service, *, wait_ready: bool = True) -> RunningService:
        running = RunningService(service, asyncio.create_task(service.run()))
        started.append(running)
        if wait_ready:
            await eventually(running.ready, within=15, what=f"{service.name} ready")
        return running

    yield run
    for running in started:
        running.service.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running.task, 15)
    if started:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
