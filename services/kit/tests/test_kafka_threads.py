"""The event loop never waits on librdkafka: consumer calls stay on the client's thread.

confluent-kafka lets one thread at a time into a ``Consumer``; any other
caller waits until the current call (a ``consume``, a metadata request)
returns. These tests hold the consumer's thread inside a long ``consume`` and
show that what the loop asks meanwhile (the lag for /healthz) does not wait
for it, and that health checks do not pile up threads while Kafka is away.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest

from emporium.kit.config import KafkaSettings
from emporium.kit.db import Database, UnitOfWork
from emporium.kit.kafka import ConsumedEvent, EventProducer, IdempotentConsumer, KafkaUnavailable
from emporium.kit.kafka.bridge import ClientThread


@pytest.mark.unit
async def test_a_probe_in_flight_is_shared_and_a_caller_stops_waiting_on_time() -> None:
    thread = ClientThread("probe-test")
    calls: list[float] = []
    release = threading.Event()

    def metadata() -> str:
        calls.append(time.monotonic())
        release.wait(5)
        return "answer"

    try:
        waiting = [asyncio.ensure_future(thread.probe(5, metadata)) for _ in range(5)]
        with pytest.raises(TimeoutError):
            await thread.probe(0.05, metadata)  # gives up; the probe goes on
        release.set()
        assert await asyncio.gather(*waiting) == ["answer"] * 5
        assert len(calls) == 1  # six callers, one request

        release.clear()
        release.set()
        assert await thread.probe(5, metadata) == "answer"
        assert len(calls) == 2  # the next probe after the first ended is a new one
    finally:
        release.set()
        thread.close()


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_the_lag_is_read_without_waiting_for_the_consumers_thread(
    kafka_settings: KafkaSettings,
    pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
) -> None:
    topic = await topic_factory("threads", partitions=1)

    async def ignore(event: ConsumedEvent, conn: UnitOfWork) -> None:
        return None

    consumer = IdempotentConsumer(
        kafka_settings, pool, {topic: ignore}, producer, group_id=f"kit-{uuid.uuid4().hex[:8]}"
    )
    running = asyncio.create_task(consumer.run())
    finished = threading.Event()
    try:
        await producer.send(topic, "key", b"x", {"event-id": f"threads-{uuid.uuid4()}"})
        deadline = time.monotonic() + 30
        while consumer.counts["processed"] < 1:  # the partition has a position now
            assert time.monotonic() < deadline, "the event was not processed"
            await asyncio.sleep(0.05)
        client, thread = consumer._consumer, consumer._thread
        assert client is not None
        assert thread is not None

        def hold() -> None:
            client.consume(1, 3.0)  # nothing more to read: holds the consumer for 3 s
            finished.set()

        holding = asyncio.ensure_future(thread.call(hold))
        await asyncio.sleep(0.8)  # the consume in progress (0.2 s at most) ended; hold() runs
        info = consumer.info()
        # The loop got its answer while hold() still had the client.
        assert not finished.is_set()
        assert info["assigned_partitions"] == [f"{topic}/0"]
        assert info["total_lag"] == 0
        await holding
    finally:
        await consumer.stop()
        await running


@pytest.mark.unit
@pytest.mark.timeout(60)
async def test_producer_health_checks_while_kafka_is_away_use_one_thread() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nothing listens there once the socket closes
    producer = EventProducer(KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{closed}"))
    await producer.start()
    try:
        threads_before = threading.active_count()
        for _ in range(8):
            with pytest.raises(KafkaUnavailable):
                await producer.check()
        assert threading.active_count() <= threads_before + 1
    finally:
        await producer.stop()
