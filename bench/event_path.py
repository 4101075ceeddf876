"""Throughput of the event path: the outbox relay and an idempotent consumer, one process each.

    python3 scripts/platformctl.py start          # PostgreSQL and Kafka
    uv run python bench/event_path.py relay --events 20000
    uv run python bench/event_path.py consumer --events 20000

``relay``: commits ``--events`` outbox rows (order-placed events, 3 partitions,
keys spread over orders) in a throwaway database, then runs the kit's
``OutboxRelay`` until every row is published and marked; prints events/s.

``consumer``: publishes ``--events`` valid order-placed events to a
throwaway 3-partition topic first, then runs fraud's real handlers in the
kit's ``IdempotentConsumer`` (ledger row, decision and its outbox row in the
consumer's transaction, offsets after the commit) until every event is
processed; prints events/s, and the event loop's lag (how late a 10 ms
timer fires) while it consumed.

Both use their own database and topics (dropped afterwards), so a running
system is not disturbed; nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import emporium_platform  # noqa: E402

from emporium.common.v1 import money_pb2  # noqa: E402
from emporium.events.v1 import order_events_pb2  # noqa: E402
from emporium.fraud import consumers as fraud_consumers  # noqa: E402
from emporium.fraud.main import MIGRATIONS_DIR as FRAUD_MIGRATIONS  # noqa: E402
from emporium.fraud.topics import Topics  # noqa: E402
from emporium.kit.config import KafkaSettings, parse_settings  # noqa: E402
from emporium.kit.db import Database, migrate  # noqa: E402
from emporium.kit.kafka import EventProducer, IdempotentConsumer, client_config  # noqa: E402
from emporium.kit.outbox import OutboxRelay, enqueue  # noqa: E402
from emporium.orders.v1 import orders_pb2  # noqa: E402


def order_placed() -> order_events_pb2.OrderPlaced:
    return order_events_pb2.OrderPlaced(
        event_id=str(uuid.uuid4()),
        order_id=str(uuid.uuid4()),
        customer_id=f"bench-{uuid.uuid4().hex[:6]}",
        items=[
            orders_pb2.OrderItem(
                product_id="sku-1",
                quantity=2,
                unit_price=money_pb2.Money(currency_code="EUR", amount_minor=1_250),
            )
        ],
        total=money_pb2.Money(currency_code="EUR", amount_minor=2_500),
    )


class Scratch:
    """A throwaway database and topics on the local platform, removed on exit."""

    def __init__(self) -> None:
        emporium_platform.ensure_started()
        self.admin_dsn = emporium_platform.admin_url()
        self.bootstrap = emporium_platform.kafka_bootstrap()
        self.database = f"bench_{uuid.uuid4().hex[:10]}"
        self.topics: list[str] = []

    @property
    def url(self) -> str:
        return self.admin_dsn.rsplit("/", 1)[0] + "/" + self.database

    def _admin(self) -> AdminClient:
        settings = parse_settings(KafkaSettings, {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap})
        return AdminClient(client_config(settings))

    async def __aenter__(self) -> Scratch:
        async with await psycopg.AsyncConnection.connect(self.admin_dsn, autocommit=True) as a:
            await a.execute(f'CREATE DATABASE "{self.database}"')
        return self

    async def topic(self, name: str, partitions: int = 3) -> str:
        topic = f"bench.{name}.{uuid.uuid4().hex[:8]}"
        admin = self._admin()  # kept until the futures resolve
        created = admin.create_topics(
            [
                NewTopic(t, num_partitions=p, replication_factor=1)
                for t, p in ((topic, partitions), (topic + ".dlq", 1))
            ]
        )
        for future in created.values():
            await asyncio.wrap_future(future)
        self.topics += [topic, topic + ".dlq"]
        await asyncio.sleep(1.0)  # leaders elected
        return topic

    async def __aexit__(self, *_: Any) -> None:
        with contextlib.suppress(Exception):
            admin = self._admin()
            for future in admin.delete_topics(self.topics).values():
                await asyncio.wrap_future(future)
        async with await psycopg.AsyncConnection.connect(self.admin_dsn, autocommit=True) as a:
            await a.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


async def loop_lag(samples: list[float], stop: asyncio.Event) -> None:
    """How late a 10 ms sleep returns, in ms, while the work runs."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        samples.append((time.perf_counter() - started - 0.01) * 1000)


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


async def bench_relay(events: int, batch_size: int) -> None:
    async with Scratch() as scratch:
        await migrate(scratch.url, None)
        topic = await scratch.topic("relay")
        settings = parse_settings(KafkaSettings, {"KAFKA_BOOTSTRAP_SERVERS": scratch.bootstrap})
        database = Database(scratch.url, application_name="bench-relay", max_size=4)
        await database.open(wait=True)
        producer = EventProducer(settings, client_id="bench-relay")
        await producer.start()
        try:
            for start in range(0, events, 1000):
                async with database.unit_of_work() as uow:
                    for _ in range(min(1000, events - start)):
                        message = order_placed()
                        await enqueue(uow, topic=topic, key=message.order_id, message=message)
            relay = OutboxRelay(database, producer, batch_size=batch_size)
            started = time.perf_counter()
            task = asyncio.create_task(relay.run())
            while relay.published_total < events:  # noqa: ASYNC110 (a counter, polled)
                await asyncio.sleep(0.05)
            took = time.perf_counter() - started
            await relay.stop()
            await task
        finally:
            await producer.stop()
            await database.close()
    print(f"relay: {events} committed rows published and marked in {took:.2f} s")
    print(f"relay: {events / took:,.0f} events/s (batch size {batch_size})")


class _Discard:
    """A span exporter that drops what it is given (the cost measured is making spans)."""

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None: ...

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def trace_everything(queries: bool) -> None:
    """The services' tracing (SDK provider, batch processor, every trace sampled).

    Spans are made and handed to the batch processor as in a service whose
    exporter is configured; the exporter here drops them.
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from emporium.kit.db import set_query_tracing

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Discard()))  # type: ignore[arg-type]
    trace.set_tracer_provider(provider)
    set_query_tracing(queries)


async def bench_consumer(events: int, batch_size: int) -> None:
    async with Scratch() as scratch:
        await migrate(scratch.url, FRAUD_MIGRATIONS)
        placed_topic = await scratch.topic("order-placed")
        decision_topic = await scratch.topic("decisions")
        settings = parse_settings(KafkaSettings, {"KAFKA_BOOTSTRAP_SERVERS": scratch.bootstrap})
        producer = EventProducer(settings, client_id="bench-consumer")
        await producer.start()
        database = Database(scratch.url, application_name="bench-consumer", max_size=4)
        await database.open(wait=True)
        try:
            futures = []
            for _ in range(events):
                message = order_placed()
                futures.append(
                    await producer.submit(
                        placed_topic,
                        message.order_id,
                        message.SerializeToString(),
                        {"event-id": message.event_id},
                    )
                )
            await asyncio.gather(*futures)
            handlers = fraud_consumers.handlers(
                Topics(order_placed=placed_topic, fraud_decision_made=decision_topic)
            )
            consumer = IdempotentConsumer(
                settings,
                database,
                handlers,
                producer,
                group_id=f"bench-{uuid.uuid4().hex[:8]}",
                batch_size=batch_size,
            )
            lag: list[float] = []
            stop = asyncio.Event()
            watcher = asyncio.create_task(loop_lag(lag, stop))
            started = time.perf_counter()
            task = asyncio.create_task(consumer.run())
            while consumer.counts["processed"] + consumer.counts["duplicate"] < events:
                if task.done():
                    raise RuntimeError("the consumer stopped") from task.exception()
                await asyncio.sleep(0.05)
            took = time.perf_counter() - started
            stop.set()
            await watcher
            await consumer.stop()
            await task
            decisions = await database.fetchval("SELECT count(*) FROM decisions")
        finally:
            await producer.stop()
            await database.close()
    print(f"consumer: {events} queued order-placed events decided in {took:.2f} s")
    print(
        f"consumer: {events / took:,.0f} events/s per process ({decisions} decisions stored,"
        f" up to {batch_size} events a poll)"
    )
    print(
        f"consumer: event-loop lag median {statistics.median(lag):.1f} ms,"
        f" p99 {percentile(lag, 0.99):.1f} ms, max {max(lag):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["relay", "consumer"])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=500, help="relay batch size")
    parser.add_argument(
        "--consumer-batch", type=int, default=500, help="consumer: events per poll at most"
    )
    parser.add_argument(
        "--trace",
        choices=["off", "spans", "spans+queries"],
        default="off",
        help="record spans as a traced service does (spans+queries: DATABASE_TRACE_QUERIES=true)",
    )
    args = parser.parse_args()
    if args.trace != "off":
        trace_everything(queries=args.trace == "spans+queries")
    print("$ uv run python bench/event_path.py " + shlex.join(sys.argv[1:]))
    if args.what == "relay":
        asyncio.run(bench_relay(args.events, args.batch_size))
    else:
        asyncio.run(bench_consumer(args.events, args.consumer_batch))


if __name__ == "__main__":
    main()
