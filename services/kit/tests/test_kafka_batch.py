"""Batch handlers on the real Kafka and PostgreSQL: a poll's new events in one call.

Run as a script (``python test_kafka_batch.py child ...``), this file is also
the consumer process that one test lets crash between a batch's database
commit and its offset commit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from emporium.events.v1.order_events_pb2 import OrderPlaced
from emporium.kit.config import KafkaSettings, parse_settings
from emporium.kit.db import Database, UnitOfWork
from emporium.kit.kafka import (
    BatchHandler,
    ConsumedEvent,
    EventProducer,
    IdempotentConsumer,
    PoisonMessage,
    batch_handler,
    traced,
)
from emporium.kit.outbox import enqueue
from emporium.testing.pytest_plugin import (
    committed_offsets,
    eventually,
    kit_consumer,
    open_database,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def insert_effects(uow: UnitOfWork, events: Sequence[ConsumedEvent], call: int) -> None:
    """The set-based write of a batch handler: one statement for all ``events``, in order."""
    await uow.execute(
        "INSERT INTO effects (event_id, payload, call)"
        " SELECT e.event_id, e.payload, $3"
        " FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS e(event_id, payload, i)"
        " ORDER BY e.i",
        [event.event_id for event in events],
        [event.value.decode() for event in events],
        call,
    )


class Recorder:
    """A batch handler that writes its events' effects with one statement and logs its calls."""

    def __init__(self, poison: bytes | None = None) -> None:
        self.calls: list[list[str]] = []
        self.poison = poison
        self.handler: BatchHandler = batch_handler(self.apply)

    async def apply(self, events: Sequence[ConsumedEvent], uow: UnitOfWork) -> None:
        self.calls.append([event.event_id for event in events])
        for event in events:  # "decode all" first, as a real handler does
            if event.value == self.poison:
                raise PoisonMessage(f"undecodable payload {event.value!r}")
        await insert_effects(uow, events, len(self.calls))


async def counted(consumer: IdempotentConsumer, **expected: int) -> bool:
    return all(consumer.counts[name] == value for name, value in expected.items())


async def applied(pool: Database) -> list[dict[str, Any]]:
    return await pool.fetch("SELECT event_id, payload, call FROM effects ORDER BY n")


def assert_per_key_order(rows: list[dict[str, Any]], keys: Sequence[str]) -> None:
    for key in keys:
        mine = [int(row["payload"].split("-")[1]) for row in rows if row["payload"][0] == key]
        assert mine == sorted(mine), (key, mine)


async def publish(
    producer: EventProducer, topic: str, count: int, poison_at: int | None = None
) -> None:
    keys = "abc"
    futures = []
    for i in range(count):
        value = b"poison" if i == poison_at else f"{keys[i % 3]}-{i}".encode()
        futures.append(await producer.submit(topic, keys[i % 3], value, {"event-id": f"ev-{i}"}))
    await asyncio.gather(*futures)


async def test_a_batch_handler_gets_a_polls_new_events_at_once_and_applies_each_once(
    kafka_settings: KafkaSettings,
    effects_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
) -> None:
    topic = await topic_factory("batch-handler", partitions=3)
    await publish(producer, topic, 60)
    # Redeliveries of two of them (a producer's retry, a relay that crashed
    # before marking its rows): the ledger leaves them out of the call.
    await producer.send(topic, "a", b"a-0", {"event-id": "ev-0"})
    await producer.send(topic, "b", b"b-1", {"event-id": "ev-1"})
    recorder = Recorder()
    consumer = kit_consumer(kafka_settings, effects_pool, producer, {topic: recorder.handler})
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: counted(consumer, processed=60, duplicate=2), within=30)
    finally:
        await consumer.stop()
        await task

    rows = await applied(effects_pool)
    assert sorted(row["event_id"] for row in rows) == sorted(f"ev-{i}" for i in range(60))
    assert_per_key_order(rows, "abc")
    # Far fewer calls than events, each event in exactly one call.
    handed = [event_id for call in recorder.calls for event_id in call]
    assert sorted(handed) == sorted(f"ev-{i}" for i in range(60))
    assert len(recorder.calls) < 20, recorder.calls
    assert max(len(call) for call in recorder.calls) > 1


async def test_a_poison_message_in_the_middle_of_a_batch_goes_to_the_dlq_and_the_rest_apply(
    kafka_settings: KafkaSettings,
    effects_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
    read_topic: Callable[..., Awaitable[list[Any]]],
) -> None:
    topic = await topic_factory("batch-poison", partitions=1)
    await publish(producer, topic, 40, poison_at=20)
    recorder = Recorder(poison=b"poison")
    consumer = kit_consumer(kafka_settings, effects_pool, producer, {topic: recorder.handler})
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: counted(consumer, processed=39, dead_lettered=1), within=30)
    finally:
        await consumer.stop()
        await task

    dead = await read_topic(f"{topic}.dlq", expected=1)
    assert len(dead) == 1
    assert dead[0].value == b"poison"
    headers = {name: value.decode() for name, value in dead[0].headers}
    assert headers["event-id"] == "ev-20"
    assert headers["dlq-error"] == "PoisonMessage: undecodable payload b'poison'"
    assert headers["dlq-attempts"] == "1"
    rows = await applied(effects_pool)
    assert sorted(row["event_id"] for row in rows) == sorted(
        f"ev-{i}" for i in range(40) if i != 20
    )
    assert_per_key_order(rows, "abc")
    # The batch holding the poison message failed once, then its events were
    # applied one by one (the batch handler called with one event each).
    poisoned = [call for call in recorder.calls if "ev-20" in call]
    assert len(poisoned[0]) > 1
    assert [call for call in poisoned[1:] if len(call) > 1] == []
    assert sum(1 for call in recorder.calls if call == ["ev-20"]) == 1  # no retries for poison


async def test_a_batch_handlers_outbox_rows_continue_each_events_trace(
    kafka_settings: KafkaSettings,
    effects_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
    spans: InMemorySpanExporter,
) -> None:
    topic = await topic_factory("batch-traced", partitions=1)
    for i in range(10):
        await producer.send(topic, "k", f"k-{i}".encode(), {"event-id": f"t-{i}"})

    @batch_handler
    async def emit(events: Sequence[ConsumedEvent], uow: UnitOfWork) -> None:
        await insert_effects(uow, events, 0)
        for event in events:
            with traced(event):
                await enqueue(
                    uow,
                    topic="downstream",
                    key=event.key or "",
                    message=OrderPlaced(order_id=event.event_id),
                    event_id=f"out-{event.event_id}",
                )

    consumer = kit_consumer(kafka_settings, effects_pool, producer, {topic: emit})
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: counted(consumer, processed=10), within=30)
    finally:
        await consumer.stop()
        await task

    process = {
        span.attributes["messaging.message.id"]: span
        for span in spans.get_finished_spans()
        if span.name == f"process {topic}"
    }
    rows = await effects_pool.fetch("SELECT event_id, headers FROM outbox ORDER BY id")
    assert [row["event_id"] for row in rows] == [f"out-t-{i}" for i in range(10)]
    for row in rows:
        headers = row["headers"]
        span = process[row["event_id"].removeprefix("out-")]
        context = span.get_span_context()
        assert headers["traceparent"].split("-")[1:3] == [
            f"{context.trace_id:032x}",
            f"{context.span_id:016x}",
        ]


async def test_a_crash_between_a_batchs_commit_and_its_offsets_redelivers_it_and_nothing_twice(
    kafka_settings: KafkaSettings,
    effects_pool: Database,
    database_url: str,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
    kafka_bootstrap: str,
) -> None:
    topic = await topic_factory("batch-crash", partitions=1)
    group = f"kit-batch-crash-{uuid.uuid4().hex[:8]}"
    total = 40
    await publish(producer, topic, total)

    # A separate process applies batches of up to 10 and dies (SIGKILL, no
    # clean-up) right after its second batch's database commit, before that
    # batch's offsets reach Kafka.
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "child",
        database_url,
        kafka_bootstrap,
        topic,
        group,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert await asyncio.wait_for(child.wait(), 60) == -signal.SIGKILL
    applied_before = len(await applied(effects_pool))
    committed = sum((await committed_offsets(kafka_bootstrap, group, topic)).values())
    assert 0 < committed < applied_before < total, (committed, applied_before)

    recorder = Recorder()
    consumer = kit_consumer(
        kafka_settings, effects_pool, producer, {topic: recorder.handler}, group_id=group
    )
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: counted(consumer, processed=total - applied_before), within=30)
        await eventually(lambda: counted(consumer, duplicate=applied_before - committed), within=30)
    finally:
        await consumer.stop()
        await task

    rows = await applied(effects_pool)
    assert sorted(row["event_id"] for row in rows) == sorted(f"ev-{i}" for i in range(total))
    assert_per_key_order(rows, "abc")
    # The redelivered batch was left out of the handler's calls by the ledger.
    handed = [event_id for call in recorder.calls for event_id in call]
    assert len(handed) == total - applied_before
    assert sum((await committed_offsets(kafka_bootstrap, group, topic)).values()) == total


async def _child(database_url: str, bootstrap: str, topic: str, group: str) -> None:
    """The crashing consumer: a batch handler, and death at its second offset commit."""
    settings = parse_settings(KafkaSettings, env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    pool = await open_database(database_url, max_size=2)
    producer = EventProducer(settings)
    await producer.start()
    recorder = Recorder()
    # Offsets after every poll (no interval), so the second commit is the second batch's.
    consumer = IdempotentConsumer(
        settings,
        pool,
        {topic: recorder.handler},
        producer,
        group_id=group,
        batch_size=10,
        commit_interval_seconds=0,
    )
    commit = consumer._commit
    commits = 0

    async def commit_or_die() -> None:
        nonlocal commits
        commits += 1
        if commits == 2:  # the second batch is in the database, its offsets nowhere
            os.kill(os.getpid(), signal.SIGKILL)
        await commit()

    consumer._commit = commit_or_die  # type: ignore[method-assign]
    await consumer.run()


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    asyncio.run(_child(*sys.argv[2:6]))
