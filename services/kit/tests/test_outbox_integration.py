"""The outbox and its relay on the real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from emporium.events.v1.order_events_pb2 import OrderPlaced
from emporium.kit.config import KafkaSettings, parse_settings
from emporium.kit.db import Database, DatabaseUnavailable, UnitOfWork
from emporium.kit.health import HealthRegistry
from emporium.kit.kafka import ConsumedEvent, EventProducer, IdempotentConsumer
from emporium.kit.outbox import OutboxRelay, enqueue
from emporium.testing.pytest_plugin import TopicReader, eventually, refuse_connections

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

STATE_TABLE = "CREATE TABLE IF NOT EXISTS demo_orders (id text PRIMARY KEY, status text NOT NULL)"

tracer = trace.get_tracer("emporium.kit.tests")


@pytest.fixture
async def state_pool(pool: Database) -> Database:
    await pool.execute(STATE_TABLE)
    return pool


async def place(pool: Database, topic: str, order_id: str, seq: int = 0) -> str:
    """A state change and its event in one transaction, as a service does it."""
    async with pool.unit_of_work() as conn:
        await conn.execute(
            "INSERT INTO demo_orders (id, status) VALUES ($1, 'pending')"
            " ON CONFLICT (id) DO UPDATE SET status = 'updated'",
            order_id,
        )
        return await enqueue(
            conn,
            topic=topic,
            key=order_id,
            message=OrderPlaced(order_id=order_id, customer_id=f"seq-{seq}"),
        )


async def answers(db: Database) -> bool:
    try:
        return bool(await db.fetchval("SELECT 1"))
    except DatabaseUnavailable:
        return False


async def unpublished(pool: Database) -> int:
    value: int = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    return value


async def all_published(pool: Database) -> bool:
    return await unpublished(pool) == 0


class Tail:
    """A plain consumer at the end of a topic, noting when each record arrives."""

    def __init__(self, bootstrap: str, partitions: list[TopicPartition]) -> None:
        self._bootstrap = bootstrap
        self._partitions = partitions
        self.records: list[Any] = []
        self.arrived: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._reader = TopicReader(bootstrap, partitions)

    async def __aenter__(self) -> Tail:
        await self._reader.__aenter__()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            records = await self._reader.read(0.2)
            now = time.monotonic()
            for record in records:
                self.records.append(record)
                event_id = dict(record.headers)["event-id"].decode()
                self.arrived.setdefault(event_id, now)

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._reader.__aexit__()


async def test_the_event_row_commits_or_rolls_back_with_the_state_change(
    state_pool: Database,
) -> None:
    async def fail_after_writing() -> None:
        async with state_pool.unit_of_work() as conn:
            await conn.execute("INSERT INTO demo_orders (id, status) VALUES ('o-1', 'pending')")
            await enqueue(conn, topic="t", key="o-1", message=OrderPlaced(order_id="o-1"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_after_writing()

    assert await state_pool.fetchval("SELECT count(*) FROM demo_orders") == 0
    assert await state_pool.fetchval("SELECT count(*) FROM outbox") == 0

    event_id = await place(state_pool, "t", "o-2")

    row = await state_pool.fetchrow("SELECT * FROM outbox")
    assert await state_pool.fetchval("SELECT count(*) FROM demo_orders") == 1
    assert row["event_id"] == event_id
    assert row["key"] == "o-2"
    assert OrderPlaced.FromString(row["payload"]).event_id == event_id
    assert row["published_at"] is None


async def test_enqueue_refuses_to_run_outside_a_transaction(state_pool: Database) -> None:
    async with state_pool.connection() as conn:
        with pytest.raises(RuntimeError, match="inside the transaction"):
            await enqueue(conn, topic="t", key="k", message=OrderPlaced(order_id="k"))


async def test_relay_publishes_in_order_per_key_within_a_few_hundred_milliseconds(
    state_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
    kafka_bootstrap: str,
    partitions_of: Callable[[str], Awaitable[list[TopicPartition]]],
) -> None:
    topic = await topic_factory("relay-order")
    health = HealthRegistry()
    relay = OutboxRelay(state_pool, producer, health=health)
    task = asyncio.create_task(relay.run())
    try:
        async with Tail(kafka_bootstrap, await partitions_of(topic)) as tail:
            await eventually(lambda: _is(relay, "publishing"), within=20)
            # Latency: one event at a time, from the commit to its arrival in Kafka.
            latencies = []
            for i in range(30):
                event_id = await place(state_pool, topic, f"solo-{i}")
                committed = time.monotonic()
                await eventually(lambda e=event_id: _arrived(tail, e), within=5)
                latencies.append(tail.arrived[event_id] - committed)
            # Order: a burst of interleaved keys, each event its own transaction.
            expected: dict[str, list[str]] = {}
            for seq in range(100):
                key = f"order-{seq % 4}"
                await place(state_pool, topic, key, seq)
                expected.setdefault(key, []).append(f"seq-{seq}")
            await eventually(lambda: _count(tail, 130), within=20)
            await eventually(lambda: all_published(state_pool), within=20)
            await asyncio.sleep(1.2)  # one backlog measurement after the burst
            info = health.report()[1]["outbox"]
    finally:
        await relay.stop()
        await task

    received: dict[str, list[str]] = {}
    for record in tail.records:
        message = OrderPlaced.FromString(record.value)
        if message.order_id.startswith("order-"):
            received.setdefault(record.key.decode(), []).append(message.customer_id)
    assert received == expected
    assert len(tail.records) == 130  # nothing published twice
    latencies.sort()
    median, worst = statistics.median(latencies), latencies[-1]
    print(
        f"\noutbox commit -> Kafka: median {median * 1000:.1f} ms,"
        f" p90 {latencies[26] * 1000:.1f} ms, max {worst * 1000:.1f} ms over 30 events"
    )
    assert median < 0.3
    assert worst < 1.0
    assert info["state"] == "publishing"
    assert info["backlog"] == 0
    assert info["published_total"] == 130


async def _is(relay: OutboxRelay, state: str) -> bool:
    return relay.state == state


async def _arrived(tail: Tail, event_id: str) -> bool:
    return event_id in tail.arrived


async def _count(tail: Tail, n: int) -> bool:
    return len(tail.records) >= n


async def test_relay_keeps_events_while_kafka_is_stopped_and_publishes_all_after(
    platform: ModuleType,
    state_pool: Database,
    producer: EventProducer,
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., Awaitable[str]],
    read_topic: Callable[..., Awaitable[list[Any]]],
) -> None:
    """Kafka is stopped for real (the runner's broker), for as short a time as possible."""
    if not platform.settings().local_kafka:
        pytest.skip("Kafka is an external server here; the runner cannot stop it")
    topic = await topic_factory("kafka-down")
    await state_pool.execute(
        "CREATE TABLE effects (event_id text NOT NULL, key text NOT NULL, seq text NOT NULL)"
    )

    async def record_effect(event: ConsumedEvent, conn: UnitOfWork) -> None:
        message = OrderPlaced.FromString(event.value)
        await conn.execute(
            "INSERT INTO effects VALUES ($1, $2, $3)",
            event.event_id,
            event.key,
            message.customer_id,
        )

    relay = OutboxRelay(state_pool, producer, max_backoff_seconds=2.0)
    consumer = IdempotentConsumer(
        kafka_settings, state_pool, {topic: record_effect}, producer, group_id=f"{topic}-group"
    )
    tasks = [asyncio.create_task(relay.run()), asyncio.create_task(consumer.run())]
    try:
        await place(state_pool, topic, "order-0", 0)
        await eventually(lambda: _effects(state_pool, 1), within=20)

        started = time.monotonic()
        try:
            await asyncio.to_thread(platform.stop_kafka)
            stopped = time.monotonic()
            # Checkout goes on: the events are accepted into the outbox.
            for seq in range(1, 21):
                await place(state_pool, topic, f"order-{seq % 3}", seq)
            await asyncio.sleep(2)
            backlog_while_down = await unpublished(state_pool)
            relay_info = relay.info()
        finally:
            await asyncio.to_thread(platform.start_kafka)
        window = time.monotonic() - started
        restarted = time.monotonic()
        print(
            f"\nKafka stopped in {stopped - started:.1f}s; down for {window:.1f}s in all;"
            f" backlog while down {backlog_while_down}"
        )
        await eventually(lambda: all_published(state_pool), within=60)
        published_after = time.monotonic() - restarted
        await eventually(lambda: _effects(state_pool, 21), within=60)
        applied_after = time.monotonic() - restarted
        print(
            f"after the restart: all published in {published_after:.1f}s,"
            f" all applied by the consumer in {applied_after:.1f}s"
        )
    finally:
        await relay.stop()
        await consumer.stop()
        await asyncio.gather(*tasks)

    assert backlog_while_down == 20
    assert relay_info["backlog"] == 20
    assert relay_info["oldest_unpublished_age_seconds"] > 1
    records = await read_topic(topic, expected=21)
    ids = [dict(r.headers)["event-id"].decode() for r in records]
    assert len(set(ids)) == 21  # none lost
    # In Kafka, per key, the first copy of each event is in enqueue order.
    firsts: dict[str, list[str]] = {}
    seen: set[str] = set()
    for record, event_id in zip(records, ids, strict=True):
        if event_id not in seen:
            seen.add(event_id)
            firsts.setdefault(record.key.decode(), []).append(
                OrderPlaced.FromString(record.value).customer_id
            )
    for key, seqs in firsts.items():
        assert seqs == sorted(seqs, key=lambda s: int(s.removeprefix("seq-"))), key
    # The consumer applied each event exactly once, whatever Kafka held.
    rows = await state_pool.fetch("SELECT event_id FROM effects")
    assert sorted(r["event_id"] for r in rows) == sorted(set(ids))


async def _effects(pool: Database, n: int) -> bool:
    value: int = await pool.fetchval("SELECT count(*) FROM effects")
    return value >= n


async def test_a_commit_wakes_the_relay_of_its_own_process(
    state_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
) -> None:
    topic = await topic_factory("wake")
    # A poll so rare that only the commit's wake-up can publish within the test.
    relay = OutboxRelay(state_pool, producer, poll_interval=600)
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: _is(relay, "publishing"), within=20)
        for seq in range(3):
            await place(state_pool, topic, "order-1", seq)
            await eventually(lambda: all_published(state_pool), within=10)
        # A rolled-back transaction wakes nothing and leaves nothing behind.
        with pytest.raises(RuntimeError, match="boom"):
            await _enqueue_then_fail(state_pool, topic)
    finally:
        await relay.stop()
        await task
    assert relay.published_total == 3
    assert await state_pool.fetchval("SELECT count(*) FROM outbox") == 3


async def _enqueue_then_fail(pool: Database, topic: str) -> None:
    async with pool.unit_of_work() as uow:
        await enqueue(uow, topic=topic, key="order-2", message=OrderPlaced())
        raise RuntimeError("boom")


async def test_the_poll_publishes_rows_that_another_process_wrote(
    state_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
) -> None:
    topic = await topic_factory("poll")
    relay = OutboxRelay(state_pool, producer, poll_interval=0.2)
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: _is(relay, "publishing"), within=20)
        delays = []
        for seq in range(5):
            # Written with plain SQL, as a replica that is not the publisher
            # does: no wake-up reaches this process's relay.
            await state_pool.execute(
                "INSERT INTO outbox (event_id, topic, key, payload) VALUES ($1, $2, 'k', $3)",
                f"other-{seq}",
                topic,
                OrderPlaced(order_id="k", event_id=f"other-{seq}").SerializeToString(),
            )
            committed = time.monotonic()
            await eventually(lambda: all_published(state_pool), within=5)
            delays.append(time.monotonic() - committed)
    finally:
        await relay.stop()
        await task
    print(f"\npolling only: published within {max(delays) * 1000:.0f} ms at worst")
    assert relay.published_total == 5


async def test_only_one_relay_publishes_and_a_standby_takes_over(
    state_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
    read_topic: Callable[..., Awaitable[list[Any]]],
) -> None:
    topic = await topic_factory("relay-ha")
    first = OutboxRelay(state_pool, producer, leader_retry_seconds=0.3)
    first_task = asyncio.create_task(first.run())
    await eventually(lambda: _is(first, "publishing"), within=20)
    second = OutboxRelay(state_pool, producer, leader_retry_seconds=0.3)
    second_task = asyncio.create_task(second.run())
    try:
        await eventually(lambda: _is(second, "standby"), within=20)
        for seq in range(20):
            await place(state_pool, topic, f"order-{seq % 2}", seq)
        await eventually(lambda: all_published(state_pool), within=20)
        assert first.published_total == 20
        assert second.published_total == 0

        await first.stop()
        await first_task
        await eventually(lambda: _is(second, "publishing"), within=5)
        for seq in range(20, 30):
            await place(state_pool, topic, f"order-{seq % 2}", seq)
        await eventually(lambda: all_published(state_pool), within=20)
    finally:
        await first.stop()
        await second.stop()
        await asyncio.gather(first_task, second_task)

    assert second.published_total == 10
    records = await read_topic(topic, expected=30)
    assert len(records) == 30  # every event once: never two publishers at a time


async def _backlog_is_not_stale(relay: OutboxRelay) -> bool:
    return relay.info()["backlog"] in (None, 0)


async def test_relay_reconnects_after_losing_its_database(
    state_pool: Database,
    database_url: str,
    admin_dsn: str,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
    read_topic: Callable[..., Awaitable[list[Any]]],
) -> None:
    topic = await topic_factory("relay-db")
    name = database_url.rsplit("/", 1)[1]
    relay = OutboxRelay(state_pool, producer, max_backoff_seconds=1.0)
    task = asyncio.create_task(relay.run())
    try:
        await place(state_pool, topic, "before")
        await eventually(lambda: all_published(state_pool), within=20)
        await refuse_connections(admin_dsn, name)
        await eventually(lambda: _is(relay, "database_unavailable"), within=5)
        # The backlog is measured every second apart from publishing: once it is
        # measured again it says "unknown" (None) or 0, never a stale count.
        await eventually(lambda: _backlog_is_not_stale(relay), within=3)
        await refuse_connections(admin_dsn, name, refuse=False)
        # The pool reconnects in the background (about once a second); until
        # it has, the test's own write would be refused like any caller's.
        await eventually(lambda: answers(state_pool), within=10)
        await place(state_pool, topic, "after")
        await eventually(lambda: all_published(state_pool), within=20)
    finally:
        await refuse_connections(admin_dsn, name, refuse=False)
        await relay.stop()
        await task

    records = await read_topic(topic, expected=2)
    assert sorted(r.key.decode() for r in records) == ["after", "before"]


async def test_published_rows_are_deleted_after_the_retention(
    state_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
) -> None:
    topic = await topic_factory("retention")
    for seq in range(7):
        await place(state_pool, topic, f"order-{seq}", seq)
    relay = OutboxRelay(
        state_pool,
        producer,
        retention_seconds=0.5,
        cleanup_interval_seconds=0.2,
        cleanup_batch_size=3,  # several small batches
    )
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: all_published(state_pool), within=20)
        await eventually(lambda: _outbox_empty(state_pool), within=10)
    finally:
        await relay.stop()
        await task
    assert relay.published_total == 7


async def _outbox_empty(pool: Database) -> bool:
    value: int = await pool.fetchval("SELECT count(*) FROM outbox")
    return value == 0


async def test_trace_context_crosses_outbox_kafka_and_consumer(
    spans: InMemorySpanExporter,
    state_pool: Database,
    producer: EventProducer,
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., Awaitable[str]],
) -> None:
    topic = await topic_factory("trace")
    handled: list[str] = []

    async def handler(event: ConsumedEvent, conn: UnitOfWork) -> None:
        # The handler runs inside the consumer's span: its own work joins the trace.
        with tracer.start_as_current_span("score order"):
            handled.append(format(trace.get_current_span().get_span_context().trace_id, "032x"))

    relay = OutboxRelay(state_pool, producer)
    consumer = IdempotentConsumer(
        kafka_settings, state_pool, {topic: handler}, producer, group_id=f"{topic}-group"
    )
    tasks = [asyncio.create_task(relay.run()), asyncio.create_task(consumer.run())]
    try:
        with tracer.start_as_current_span("POST /api/checkout", kind=SpanKind.SERVER) as request:
            await place(state_pool, topic, "order-traced")
        await eventually(lambda: _handled(handled), within=20)
    finally:
        await relay.stop()
        await consumer.stop()
        await asyncio.gather(*tasks)

    finished = {span.name: span for span in spans.get_finished_spans()}
    publish = finished[f"send {topic}"]
    process = finished[f"process {topic}"]
    work = finished["score order"]
    trace_id = request.get_span_context().trace_id
    assert publish.context.trace_id == trace_id
    assert process.context.trace_id == trace_id
    assert work.context.trace_id == trace_id
    assert handled == [format(trace_id, "032x")]
    # request -> relay publish (PRODUCER) -> consumer process (CONSUMER) -> handler work
    assert publish.parent is not None
    assert publish.parent.span_id == request.get_span_context().span_id
    assert publish.kind == SpanKind.PRODUCER
    assert process.parent is not None
    assert process.parent.span_id == publish.context.span_id
    assert process.kind == SpanKind.CONSUMER
    assert work.parent is not None
    assert work.parent.span_id == process.context.span_id
    assert process.attributes is not None
    assert process.attributes["messaging.system"] == "kafka"
    assert process.attributes["messaging.destination.name"] == topic
    assert process.attributes["messaging.consumer.group.name"] == f"{topic}-group"
    assert process.attributes["emporium.consumer.outcome"] == "processed"


async def _handled(handled: list[str]) -> bool:
    return bool(handled)


def closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def tcp_relay(port: int, target: str) -> asyncio.Server:
    """Listens on ``port`` and pipes every connection to ``target`` (host:port)."""
    host, target_port = target.rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(target_port))
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    return await asyncio.start_server(connect, "127.0.0.1", port)


async def test_relay_keeps_rows_with_capped_backoff_while_kafka_is_unreachable(
    state_pool: Database,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Awaitable[str]],
    read_topic: Callable[..., Awaitable[list[Any]]],
) -> None:
    """A longer outage than the stop test's, without stopping the shared broker.

    The producer points at a port where nothing listens (as when a service
    starts while Kafka is down), then the broker's address becomes reachable:
    a plain TCP relay to the broker starts listening on that port.
    """
    topic = await topic_factory("unreachable")
    port = closed_port()
    unreachable = parse_settings(
        KafkaSettings, env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"}
    )
    # A message not acknowledged within 1 s fails its publish attempt.
    producer = EventProducer(unreachable, request_timeout_ms=1000)
    await producer.start()  # does not fail the service
    relay = OutboxRelay(state_pool, producer, max_backoff_seconds=1.0, stats_interval_seconds=0.2)
    task = asyncio.create_task(relay.run())
    try:
        for seq in range(5):
            await place(state_pool, topic, f"order-{seq % 2}", seq)
        # An attempt takes the 1 s delivery timeout (librdkafka checks it about
        # once a second) plus the backoff: at least two within 6 s.
        await asyncio.sleep(6)
        info = relay.info()
        attempts = await state_pool.fetchval("SELECT max(attempts) FROM outbox")
        assert await unpublished(state_pool) == 5
        # The broker becomes reachable (as DNS or the network comes back).
        bridge = await tcp_relay(port, kafka_bootstrap)
        await eventually(lambda: all_published(state_pool), within=20)
    finally:
        await relay.stop()
        await task
        await producer.stop()
    bridge.close()

    assert info["state"] == "kafka_unavailable"
    assert info["backlog"] == 5
    assert info["oldest_unpublished_age_seconds"] >= 3
    assert "Kafka unavailable" in info["last_error"]
    # Retried about once a second (capped backoff), not in a busy loop.
    assert 2 <= attempts <= 12
    records = await read_topic(topic, expected=5)
    assert sorted(r.key.decode() for r in records) == ["order-0"] * 3 + ["order-1"] * 2
