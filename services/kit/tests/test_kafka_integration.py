"""The idempotent consumer and the producer on the real Kafka and PostgreSQL.

Run as a script (``python test_kafka_integration.py child ...``), this file is
also the consumer process that one test kills with SIGKILL half-way through.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest

from emporium.events.v1.order_events_pb2 import OrderPlaced
from emporium.kit.config import KafkaSettings, ServiceSettings, parse_settings
from emporium.kit.db import Database, UnitOfWork
from emporium.kit.health import HealthRegistry
from emporium.kit.kafka import (
    ConsumedEvent,
    EventProducer,
    IdempotentConsumer,
    PoisonMessage,
)
from emporium.kit.outbox import enqueue
from emporium.kit.service import Service
from emporium.testing.pytest_plugin import (
    RunningService,
    committed_offsets,
    eventually,
    kit_consumer,
    open_database,
    refuse_connections,
    service_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def record_effect(event: ConsumedEvent, conn: UnitOfWork) -> None:
    await conn.execute(
        "INSERT INTO effects (event_id, payload) VALUES ($1, $2)",
        event.event_id,
        event.value.decode(),
    )


async def effects(pool: Database) -> list[tuple[str, str]]:
    rows = await pool.fetch("SELECT event_id, payload FROM effects ORDER BY n")
    return [(row["event_id"], row["payload"]) for row in rows]


async def test_a_redelivered_event_has_its_effect_once(
    kafka_settings: KafkaSettings,
    effects_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
) -> None:
    topic = await topic_factory("dedup")
    # The same event twice (a producer retry, or an outbox relay that crashed
    # before marking the row) and one other event.
    await producer.send(topic, "order-1", b"first", {"event-id": "evt-1"})
    await producer.send(topic, "order-1", b"first again", {"event-id": "evt-1"})
    await producer.send(topic, "order-2", b"second", {"event-id": "evt-2"})
    consumer = kit_consumer(kafka_settings, effects_pool, producer, {topic: record_effect})
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: _counted(consumer, processed=2, duplicate=1), within=20)
    finally:
        await consumer.stop()
        await task

    # Different keys may land on different partitions: no order between them.
    assert sorted(await effects(effects_pool)) == [("evt-1", "first"), ("evt-2", "second")]
    ledger = await effects_pool.fetch(
        "SELECT event_id, outcome FROM processed_events"
        " WHERE consumer_group = $1 ORDER BY event_id",
        consumer.group_id,
    )
    assert [(r["event_id"], r["outcome"]) for r in ledger] == [
        ("evt-1", "processed"),
        ("evt-2", "processed"),
    ]


async def _counted(consumer: IdempotentConsumer, **expected: int) -> bool:
    return all(consumer.counts[name] == value for name, value in expected.items())


async def test_a_batch_commits_together_and_a_poison_message_does_not_hold_it_back(
    kafka_settings: KafkaSettings,
    effects_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
    read_topic: Callable[..., Awaitable[list[Any]]],
) -> None:
    topic = await topic_factory("batch", partitions=3)
    keys = ["a", "b", "c"]
    await effects_pool.execute("CREATE TABLE effect_transactions (txid bigint NOT NULL)")

    async def handler(event: ConsumedEvent, conn: UnitOfWork) -> None:
        if event.value == b"poison":
            raise PoisonMessage("not a valid OrderPlaced")
        await record_effect(event, conn)
        # The top-level transaction, savepoints or not.
        await conn.execute("INSERT INTO effect_transactions VALUES (txid_current())")

    futures = []
    for i in range(60):
        value = b"poison" if i == 7 else f"{keys[i % 3]}-{i}".encode()
        futures.append(await producer.submit(topic, keys[i % 3], value, {"event-id": f"batch-{i}"}))
    await asyncio.gather(*futures)
    consumer = kit_consumer(kafka_settings, effects_pool, producer, {topic: handler})
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: _counted(consumer, processed=59, dead_lettered=1), within=20)
    finally:
        await consumer.stop()
        await task

    assert len(await read_topic(f"{topic}.dlq", expected=1)) == 1
    applied = [payload for _, payload in await effects(effects_pool)]
    assert len(applied) == 59
    for key in keys:  # per-key order kept, around the poison message too
        mine = [int(p.split("-")[1]) for p in applied if p.startswith(f"{key}-")]
        assert mine == sorted(mine), (key, mine)
    # Many events per transaction: far fewer transactions than events.
    transactions = await effects_pool.fetchval(
        "SELECT count(DISTINCT txid) FROM effect_transactions"
    )
    assert transactions < 30, f"{transactions} transactions for 59 events"


async def test_outbox_rows_enqueued_by_a_batch_are_written_in_order_and_a_reused_id_is_set_apart(
    kafka_settings: KafkaSettings,
    effects_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
) -> None:
    """Handlers that enqueue events in a batch: one outbox statement, the order kept.

    The third event enqueues an event id the first one already used: the
    outbox refuses it, the batch is undone and applied again isolated; the
    other events and their outbox rows commit, the third goes to the DLQ.
    """
    topic = await topic_factory("outbox-batch", partitions=1)

    async def emit(event: ConsumedEvent, conn: UnitOfWork) -> None:
        await record_effect(event, conn)
        reused = event.value == b"reuse"
        await enqueue(
            conn,
            topic="downstream",
            key="k",
            message=OrderPlaced(order_id=event.event_id),
            event_id="out-b0" if reused else f"out-{event.event_id}",
        )

    for i in range(6):
        value = b"reuse" if i == 3 else b"x"
        await producer.send(topic, "k", value, {"event-id": f"b{i}"})
    consumer = kit_consumer(kafka_settings, effects_pool, producer, {topic: emit}, max_attempts=1)
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: _counted(consumer, processed=5, dead_lettered=1), within=20)
    finally:
        await consumer.stop()
        await task

    rows = await effects_pool.fetch("SELECT event_id FROM outbox ORDER BY id")
    assert [r["event_id"] for r in rows] == ["out-b0", "out-b1", "out-b2", "out-b4", "out-b5"]
    assert sorted(e for e, _ in await effects(effects_pool)) == ["b0", "b1", "b2", "b4", "b5"]


async def test_an_effect_that_rolls_back_is_retried_and_not_half_applied(
    kafka_settings: KafkaSettings,
    effects_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
) -> None:
    topic = await topic_factory("rollback")
    calls = 0

    async def flaky(event: ConsumedEvent, conn: UnitOfWork) -> None:
        nonlocal calls
        calls += 1
        await record_effect(event, conn)
        if calls < 3:
            raise RuntimeError("downstream hiccup after writing")

    await producer.send(topic, "k", b"payload", {"event-id": "evt-flaky"})
    consumer = kit_consumer(kafka_settings, effects_pool, producer, {topic: flaky})
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: _counted(consumer, processed=1), within=20)
    finally:
        await consumer.stop()
        await task

    assert calls == 3
    assert consumer.counts["retried"] == 2
    # The two failed attempts wrote their effect too, but rolled back with
    # the event id: exactly one effect remains.
    assert await effects(effects_pool) == [("evt-flaky", "payload")]


async def test_a_failing_message_goes_to_the_dlq_after_bounded_attempts_and_consumption_goes_on(
    kafka_settings: KafkaSettings,
    effects_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
    read_topic: Callable[..., Awaitable[list[Any]]],
) -> None:
    topic = await topic_factory("dlq", partitions=1)
    attempts: dict[str, int] = {}

    async def handler(event: ConsumedEvent, conn: UnitOfWork) -> None:
        attempts[event.event_id] = attempts.get(event.event_id, 0) + 1
        if event.value == b"bad":
            raise ValueError("cannot apply this one")
        if event.value == b"undecodable":
            raise PoisonMessage("not a valid OrderPlaced")
        await record_effect(event, conn)

    await producer.send(topic, "a", b"good-1", {"event-id": "e1"})
    await producer.send(topic, "a", b"bad", {"event-id": "e2", "traceparent-ish": "kept"})
    await producer.send(topic, "a", b"undecodable", {"event-id": "e3"})
    await producer.send(topic, "a", b"good-2", {"event-id": "e4"})
    consumer = kit_consumer(
        kafka_settings, effects_pool, producer, {topic: handler}, max_attempts=3
    )
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: _counted(consumer, processed=2, dead_lettered=2), within=20)
    finally:
        await consumer.stop()
        await task

    # The poll's batch ran e1 and e2 in one transaction; e2 failed, so e1 ran
    # again (isolated) after the rollback: its effect still happens once.
    assert attempts == {"e1": 2, "e2": 3, "e3": 1, "e4": 1}
    assert [e for e, _ in await effects(effects_pool)] == ["e1", "e4"]
    dead = await read_topic(f"{topic}.dlq", expected=2)
    assert len(dead) == 2
    by_id = {dict(r.headers)["event-id"].decode(): r for r in dead}
    bad = by_id["e2"]
    headers = {k: v.decode() for k, v in bad.headers}
    assert bad.value == b"bad"
    assert bad.key == b"a"
    assert headers["dlq-attempts"] == "3"
    assert headers["dlq-error"] == "ValueError: cannot apply this one"
    assert headers["dlq-original-topic"] == topic
    assert headers["dlq-original-partition"] == "0"
    assert headers["dlq-original-offset"] == "1"
    assert headers["dlq-consumer-group"] == consumer.group_id
    assert headers["traceparent-ish"] == "kept"  # original headers travel along
    poison = {k: v.decode() for k, v in by_id["e3"].headers}
    assert poison["dlq-attempts"] == "1"
    assert poison["dlq-error"] == "PoisonMessage: not a valid OrderPlaced"
    # Dead-lettered events are remembered, so a redelivery is not dead-lettered twice.
    outcomes = await effects_pool.fetch(
        "SELECT event_id, outcome FROM processed_events WHERE outcome = 'dead_lettered'"
        " ORDER BY event_id"
    )
    assert [r["event_id"] for r in outcomes] == ["e2", "e3"]


async def test_while_the_database_is_down_nothing_is_dead_lettered_and_all_is_applied_after(
    kafka_settings: KafkaSettings,
    effects_pool: Database,
    database_url: str,
    admin_dsn: str,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
    topic_size: Callable[[str], Awaitable[int]],
) -> None:
    topic = await topic_factory("db-down", partitions=1)
    name = database_url.rsplit("/", 1)[1]
    consumer = kit_consumer(
        kafka_settings, effects_pool, producer, {topic: record_effect}, max_attempts=2
    )
    task = asyncio.create_task(consumer.run())
    try:
        await producer.send(topic, "k", b"before", {"event-id": "before"})
        await eventually(lambda: _counted(consumer, processed=1), within=20)
        # This test's database goes away for real: new connections are refused
        # and the pool's connections are terminated by the server.
        await refuse_connections(admin_dsn, name)
        for i in range(5):
            await producer.send(topic, "k", f"during-{i}".encode(), {"event-id": f"during-{i}"})
        # Far longer than two attempts with backoff would take.
        await asyncio.sleep(4)
        assert consumer.state == "waiting_for_database"
        assert consumer.info()["state"] == "waiting_for_database"
        assert consumer.counts["dead_lettered"] == 0
        await refuse_connections(admin_dsn, name, refuse=False)
        await eventually(lambda: _counted(consumer, processed=6), within=20)
    finally:
        await refuse_connections(admin_dsn, name, refuse=False)
        await consumer.stop()
        await task

    assert [e for e, _ in await effects(effects_pool)] == [
        "before",
        *(f"during-{i}" for i in range(5)),
    ]
    assert await topic_size(f"{topic}.dlq") == 0


async def kit_consumer_reports_lag_and_kafka_health(
    kafka_settings: KafkaSettings,
    effects_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
) -> None:
    topic = await topic_factory("lag", partitions=2)
    release = asyncio.Event()

    async def slow(event: ConsumedEvent, conn: UnitOfWork) -> None:
        await release.wait()
        await record_effect(event, conn)

    for i in range(6):
        await producer.send(topic, f"key-{i}", b"x", {"event-id": f"lag-{i}"})
    health = HealthRegistry()
    consumer = kit_consumer(
        kafka_settings, effects_pool, producer, {topic: slow}, health=health, batch_size=1
    )
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: _has_lag(consumer), within=20)
        lagging = consumer.info()
        release.set()
        await eventually(lambda: _counted(consumer, processed=6), within=20)
        await eventually(lambda: _lag_is(consumer, 0), within=20)
        await health.run_once()
        _, report = health.report()
    finally:
        await consumer.stop()
        await task

    assert lagging["total_lag"] > 0
    assert report["dependencies"]["kafka"]["status"] == "up"
    assert report["dependencies"]["kafka"]["critical"] is False
    assert report["kafka_consumer"]["total_lag"] == 0
    assert report["kafka_consumer"]["counts"]["processed"] == 6
    assert sorted(report["kafka_consumer"]["assigned_partitions"]) == [
        f"{topic}/0",
        f"{topic}/1",
    ]


async def _has_lag(consumer: IdempotentConsumer) -> bool:
    return consumer.info()["total_lag"] > 0


async def _lag_is(consumer: IdempotentConsumer, value: int) -> bool:
    info = consumer.info()
    return len(info["lag"]) == 2 and info["total_lag"] == value


async def test_offsets_are_stored_only_after_effects_so_a_killed_consumer_loses_nothing(
    kafka_settings: KafkaSettings,
    effects_pool: Database,
    database_url: str,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
    kafka_bootstrap: str,
) -> None:
    topic = await topic_factory("kill", partitions=1)
    group = f"kit-test-kill-{uuid.uuid4().hex[:8]}"
    total = 30
    for i in range(total):
        await producer.send(topic, "order-1", f"m{i}".encode(), {"event-id": f"kill-{i}"})

    # A separate process consumes slowly; it is killed (no clean-up at all)
    # once some effects are committed.
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
    try:
        await eventually(lambda: _effect_count_at_least(effects_pool, 8), within=60)
    finally:
        child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(child.wait(), 10)
    await asyncio.sleep(1)  # the server notices the dropped connection; open transactions abort
    applied_before = await _effect_count(effects_pool)
    committed = await _committed_offset(kafka_bootstrap, group, topic)

    # The key invariant: Kafka never knew of a message whose effect was not committed.
    assert committed <= applied_before
    assert applied_before < total, "the child finished before it was killed"

    consumer = kit_consumer(
        kafka_settings, effects_pool, producer, {topic: record_effect}, group_id=group
    )
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: _effect_count_at_least(effects_pool, total), within=20)
        await eventually(lambda: _counted(consumer, processed=total - applied_before), within=20)
    finally:
        await consumer.stop()
        await task

    applied = [e for e, _ in await effects(effects_pool)]
    assert sorted(applied) == sorted(f"kill-{i}" for i in range(total))  # each exactly once
    # Messages whose effect was committed but whose offset was not came back
    # and were recognized as duplicates.
    assert consumer.counts["duplicate"] == applied_before - committed
    assert await _committed_offset(kafka_bootstrap, group, topic) == total
    print(
        f"\nkilled consumer: {applied_before} effects committed, offset {committed} committed;"
        f" {consumer.counts['duplicate']} redelivered and skipped, none lost"
    )


async def _interval_consumer(
    kafka_settings: KafkaSettings,
    effects_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
    interval_seconds: float,
) -> tuple[str, str, IdempotentConsumer]:
    """A topic, a group of its own and a consumer committing every ``interval_seconds``."""
    topic = await topic_factory("commit-interval", partitions=1)
    group = f"kit-test-interval-{uuid.uuid4().hex[:8]}"
    consumer = kit_consumer(
        kafka_settings,
        effects_pool,
        producer,
        {topic: record_effect},
        group_id=group,
        commit_interval_seconds=interval_seconds,
    )
    return topic, group, consumer


async def test_offsets_wait_for_the_commit_interval_and_are_committed_on_stop(
    kafka_settings: KafkaSettings,
    effects_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
    kafka_bootstrap: str,
) -> None:
    # An interval longer than the test: only stop() can commit.
    topic, group, consumer = await _interval_consumer(
        kafka_settings, effects_pool, producer, topic_factory, 3600
    )
    task = asyncio.create_task(consumer.run())
    try:
        for i in range(5):  # one at a time: five polls, each its own transaction
            await producer.send(topic, "k", f"m{i}".encode(), {"event-id": f"interval-{i}"})
            await eventually(lambda n=i + 1: _effect_count_at_least(effects_pool, n), within=20)
        # Every effect is in the database; Kafka was told of none of them.
        assert await _committed_offset(kafka_bootstrap, group, topic) == 0
    finally:
        await consumer.stop()
        await task
    assert await _committed_offset(kafka_bootstrap, group, topic) == 5


async def test_a_short_commit_interval_commits_while_running_with_no_event_after(
    kafka_settings: KafkaSettings,
    effects_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
    kafka_bootstrap: str,
) -> None:
    topic, group, consumer = await _interval_consumer(
        kafka_settings, effects_pool, producer, topic_factory, 0.3
    )
    task = asyncio.create_task(consumer.run())
    try:
        for i in range(3):
            await producer.send(topic, "k", f"m{i}".encode(), {"event-id": f"short-{i}"})

        async def all_committed() -> bool:
            return await _committed_offset(kafka_bootstrap, group, topic) == 3

        await eventually(all_committed, within=20)
        assert await _effect_count(effects_pool) == 3
    finally:
        await consumer.stop()
        await task


async def test_stop_finishes_the_message_in_flight_and_commits_its_offset(
    kafka_settings: KafkaSettings,
    effects_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
    kafka_bootstrap: str,
) -> None:
    topic = await topic_factory("drain", partitions=1)
    group = f"kit-test-drain-{uuid.uuid4().hex[:8]}"
    for i in range(10):
        await producer.send(topic, "k", f"m{i}".encode(), {"event-id": f"drain-{i}"})
    in_handler = asyncio.Event()

    async def slow(event: ConsumedEvent, conn: UnitOfWork) -> None:
        in_handler.set()
        await asyncio.sleep(0.3)
        await record_effect(event, conn)

    consumer = kit_consumer(kafka_settings, effects_pool, producer, {topic: slow}, group_id=group)
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(in_handler.wait(), 20)
    await consumer.stop()  # while the first message is in its handler
    await task
    applied = await _effect_count(effects_pool)
    committed = await _committed_offset(kafka_bootstrap, group, topic)

    assert applied == 1  # the message in flight was finished, nothing after it started
    assert committed == applied  # and its offset was committed on the way out
    successor = kit_consumer(
        kafka_settings, effects_pool, producer, {topic: record_effect}, group_id=group
    )
    task = asyncio.create_task(successor.run())
    try:
        await eventually(lambda: _counted(successor, processed=9), within=20)
    finally:
        await successor.stop()
        await task
    assert successor.counts["duplicate"] == 0  # a clean hand-over: nothing redelivered
    assert sorted(e for e, _ in await effects(effects_pool)) == sorted(
        f"drain-{i}" for i in range(10)
    )


async def test_ledger_rows_older_than_the_retention_are_pruned(
    kafka_settings: KafkaSettings,
    effects_pool: Database,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
) -> None:
    topic = await topic_factory("prune", partitions=1)
    await effects_pool.execute(
        "INSERT INTO processed_events"
        " (consumer_group, event_id, topic, kafka_partition, kafka_offset, processed_at)"
        " VALUES ('other-group', 'old', 't', 0, 0, now() - interval '30 days'),"
        "        ('prune-group', 'old', 't', 0, 0, now() - interval '30 days'),"
        "        ('prune-group', 'recent', 't', 0, 1, now() - interval '1 day')"
    )
    consumer = kit_consumer(
        kafka_settings,
        effects_pool,
        producer,
        {topic: record_effect},
        group_id="prune-group",
        ledger_retention_seconds=7 * 24 * 3600,
        ledger_prune_interval_seconds=0,
    )
    task = asyncio.create_task(consumer.run())
    try:
        await producer.send(topic, "k", b"new", {"event-id": "new"})
        await eventually(lambda: _counted(consumer, processed=1), within=20)
        await asyncio.sleep(1)  # at least one more poll, hence one more pruning round
    finally:
        await consumer.stop()
        await task

    rows = await effects_pool.fetch(
        "SELECT consumer_group, event_id FROM processed_events ORDER BY 1, 2"
    )
    assert [(r["consumer_group"], r["event_id"]) for r in rows] == [
        ("other-group", "old"),  # another group's rows are not ours to prune
        ("prune-group", "new"),
        ("prune-group", "recent"),
    ]


async def test_a_consumer_started_while_kafka_is_unreachable_keeps_trying_and_stops_cleanly(
    effects_pool: Database,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    unreachable = parse_settings(
        KafkaSettings, env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"}
    )
    producer = EventProducer(unreachable)
    await producer.start()
    health = HealthRegistry()
    consumer = IdempotentConsumer(
        unreachable, effects_pool, {"t": record_effect}, producer, group_id="g", health=health
    )
    task = asyncio.create_task(consumer.run())
    await asyncio.sleep(2)
    await health.run_once()
    _, report = health.report()
    started = time.monotonic()
    await consumer.stop()
    await task
    stop_took = time.monotonic() - started
    await producer.stop()

    assert report["dependencies"]["kafka"]["status"] == "down"
    assert "not connected" in report["dependencies"]["kafka"]["detail"]
    assert report["kafka_consumer"]["state"] == "connecting"
    assert report["kafka_consumer"]["last_error"]
    assert stop_took < 2


async def test_a_message_stuck_in_its_handler_does_not_hold_the_drain_past_the_grace_period(
    kafka_settings: KafkaSettings,
    effects_pool: Database,
    database_url: str,
    producer: EventProducer,
    topic_factory: Callable[..., Awaitable[str]],
    kafka_bootstrap: str,
    run_service: Callable[..., Awaitable[RunningService]],
) -> None:
    topic = await topic_factory("stuck", partitions=1)
    await effects_pool.execute("CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL)")
    await effects_pool.execute("INSERT INTO counter VALUES (1, 0)")
    in_handler = asyncio.Event()

    async def waits_for_a_row_lock(event: ConsumedEvent, conn: UnitOfWork) -> None:
        in_handler.set()
        await conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
        await record_effect(event, conn)

    settings = parse_settings(ServiceSettings, env=service_env("stuck", SHUTDOWN_GRACE_SECONDS="2"))
    service = Service("stuck", settings)
    group = f"kit-test-stuck-{uuid.uuid4().hex[:8]}"
    service.add_component(
        "consumer",
        kit_consumer(
            kafka_settings, effects_pool, producer, {topic: waits_for_a_row_lock}, group_id=group
        ),
    )
    # Another transaction holds the row the handler needs (for longer than the grace period).
    blocker = await psycopg.AsyncConnection.connect(database_url)
    try:
        # psycopg opens a transaction with the first statement; it holds the lock.
        await blocker.execute("SELECT * FROM counter WHERE id = 1 FOR UPDATE")
        running = await run_service(service)
        await producer.send(topic, "k", b"stuck", {"event-id": "stuck-1"})
        await asyncio.wait_for(in_handler.wait(), 20)
        started = time.monotonic()
        service.request_stop()
        await asyncio.wait_for(asyncio.shield(running.task), 15)
        drain_took = time.monotonic() - started
        await blocker.rollback()
    finally:
        await blocker.close()

    assert drain_took < 3.5, f"the drain took {drain_took:.1f}s with a 2s grace period"
    # The message was not finished: no effect, no offset; it will be redelivered.
    assert await _effect_count(effects_pool) == 0
    assert await _committed_offset(kafka_bootstrap, group, topic) == 0


async def _effect_count(pool: Database) -> int:
    value: int = await pool.fetchval("SELECT count(*) FROM effects")
    return value


async def _effect_count_at_least(pool: Database, n: int) -> bool:
    return await _effect_count(pool) >= n


async def _committed_offset(bootstrap: str, group: str, topic: str) -> int:
    return sum((await committed_offsets(bootstrap, group, topic)).values())


async def _child(database_url: str, bootstrap: str, topic: str, group: str) -> None:
    """The consumer process of the kill test: 100 ms per message, 5 per batch, until killed."""

    async def slow_effect(event: ConsumedEvent, conn: UnitOfWork) -> None:
        await record_effect(event, conn)
        await asyncio.sleep(0.1)

    settings = parse_settings(KafkaSettings, env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    pool = await open_database(database_url, max_size=2)
    producer = EventProducer(settings)
    await producer.start()
    # Small batches, so the kill lands with some batches committed and one in flight.
    consumer = IdempotentConsumer(
        settings, pool, {topic: slow_effect}, producer, group_id=group, batch_size=5
    )
    await consumer.run()


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    asyncio.run(_child(*sys.argv[2:6]))
