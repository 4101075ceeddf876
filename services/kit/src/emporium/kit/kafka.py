"""Kafka: an idempotent producer and an idempotent, at-least-once consumer.

Usage in a service's composition root (:meth:`Service.producer` and
:meth:`Service.add_consumer` of ``emporium.kit.service`` do the same)::

    producer = EventProducer(settings, client_id="fraud")
    await producer.start()
    consumer = IdempotentConsumer(
        settings,
        database,
        {"orders.order-placed.v1": handle_order_placed},
        producer,
        group_id=settings.kafka_consumer_group or "fraud",
        health=service.health,
    )
    service.add_component("order-placed-consumer", consumer)
    service.on_shutdown(producer.stop)

    async def handle_order_placed(event: ConsumedEvent, uow: UnitOfWork) -> None:
        placed = parse_event(OrderPlaced, event.value)  # PoisonMessage if undecodable
        await score_order(uow, placed)  # runs in the consumer's transaction

What the consumer guarantees, per message:

* the event id is inserted into ``processed_events`` and the handler runs in
  the same database transaction, so a redelivered event (same ``event-id``
  header) is skipped and its effect happens once;
* the Kafka offset is committed only after that transaction committed, so a
  crash at any point redelivers the message instead of losing it;
* a failing handler is retried with backoff up to ``max_attempts`` times, then
  the original message goes to ``<topic>.dlq`` with headers describing the
  failure, and consumption goes on; :class:`PoisonMessage` skips the retries;
* while the database is down nothing is dead-lettered: the consumer pauses its
  partitions and retries the same message until the database is back;
* while Kafka is down it keeps retrying (aiokafka reconnects by itself; a
  consumer that could not even start is re-created) and never crashes the
  service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    ConsumerStoppedError,
    IllegalStateError,
    KafkaError,
)
from aiokafka.helpers import create_ssl_context
from google.protobuf.message import DecodeError, Message
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from emporium.kit import metrics
from emporium.kit.config import KafkaSettings
from emporium.kit.db import Database, UnitOfWork, is_connection_error, is_retryable
from emporium.kit.health import HealthRegistry
from emporium.kit.telemetry import extract_context, inject_headers

log = logging.getLogger(__name__)
tracer = trace.get_tracer("emporium.kit.kafka")

EVENT_ID_HEADER = "event-id"
EVENT_TYPE_HEADER = "event-type"
CONTENT_TYPE_HEADER = "content-type"
PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
DLQ_SUFFIX = ".dlq"

M = TypeVar("M", bound=Message)


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """aiokafka keyword arguments for the connection and security settings."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(settings.kafka_ssl_ca_file)
    if settings.kafka_security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value()
            if settings.kafka_sasl_password
            else None
        )
    return options


def _ssl_context(ca_file: str | None) -> ssl.SSLContext:
    # Without a CA file the system trust store is used (a managed Kafka with a
    # public certificate); with one, only that CA (Strimzi's cluster CA).
    return create_ssl_context(cafile=ca_file) if ca_file else create_ssl_context()


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


def _encode_headers(headers: Mapping[str, str]) -> list[tuple[str, bytes]]:
    return [(name, value.encode()) for name, value in headers.items()]


def _messaging_attributes(topic: str, operation: str) -> dict[str, Any]:
    """OpenTelemetry messaging semantic-convention attributes common to all spans."""
    return {
        "messaging.system": "kafka",
        "messaging.operation.name": operation,
        "messaging.operation.type": operation,
        "messaging.destination.name": topic,
    }


class KafkaUnavailable(Exception):
    """The producer could not reach Kafka (or the broker did not acknowledge)."""


class EventProducer:
    """An idempotent producer (``enable_idempotence``, ``acks=all``) that survives Kafka restarts.

    ``start()`` never fails the service: when Kafka is down at start-up the
    producer is created on the first ``send`` that finds Kafka reachable.
    Messages submitted in order keep their order within a partition (the
    idempotent producer keeps order across its own retries).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        client_id: str = "emporium",
        request_timeout_ms: int = 10_000,
        linger_ms: int = 5,
    ) -> None:
        self._options = {
            **client_options(settings),
            "client_id": client_id,
            "enable_idempotence": True,
            "acks": "all",
            "request_timeout_ms": request_timeout_ms,
            "linger_ms": linger_ms,
        }
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._stopped = False
        self.last_error: str | None = None

    async def start(self) -> None:
        try:
            await self._ensure_started()
        except KafkaUnavailable as error:
            log.warning(
                "Kafka not reachable; the producer will connect on first use",
                extra={"error": str(error)},
            )

    async def _ensure_started(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        if self._stopped:
            raise KafkaUnavailable("producer stopped")
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(**self._options)
                try:
                    await producer.start()
                except (KafkaError, OSError) as error:
                    self.last_error = f"{type(error).__name__}: {error}"
                    await producer.stop()
                    raise KafkaUnavailable(self.last_error) from error
                self._producer = producer
                self.last_error = None
                log.info("Kafka producer connected")
            return self._producer

    async def stop(self) -> None:
        """Delivers what is buffered (within the request timeout) and closes."""
        self._stopped = True
        async with self._lock:
            if self._producer is not None:
                producer, self._producer = self._producer, None
                await producer.stop()

    async def submit(
        self, topic: str, key: str, value: bytes, headers: Mapping[str, str]
    ) -> asyncio.Future[Any]:
        """Hands one message to the producer; the returned future resolves on the broker's ack.

        Use it to pipeline a batch (submit all, then await all) while keeping
        per-partition order. Raises :class:`KafkaUnavailable` if Kafka cannot
        be reached at all.
        """
        producer = await self._ensure_started()
        try:
            future: asyncio.Future[Any] = await producer.send(
                topic, value=value, key=key.encode(), headers=_encode_headers(headers)
            )
        except KafkaError as error:
            self.last_error = f"{type(error).__name__}: {error}"
            raise KafkaUnavailable(self.last_error) from error
        return future

    async def send(
        self, topic: str, key: str, value: bytes, headers: Mapping[str, str] | None = None
    ) -> Any:
        """Publishes one message and waits for the broker's acknowledgement.

        A PRODUCER span (child of the current span) is recorded and its
        context travels in the message's ``traceparent`` header.
        """
        with tracer.start_as_current_span(
            f"send {topic}", kind=SpanKind.PRODUCER, attributes=_messaging_attributes(topic, "send")
        ) as span:
            span.set_attribute("messaging.kafka.message.key", key)
            outgoing = inject_headers(dict(headers or {}))
            future = await self.submit(topic, key, value, outgoing)
            try:
                metadata = await future
            except KafkaError as error:
                self.last_error = f"{type(error).__name__}: {error}"
                raise KafkaUnavailable(self.last_error) from error
            span.set_attribute("messaging.destination.partition.id", str(metadata.partition))
            span.set_attribute("messaging.kafka.offset", metadata.offset)
            return metadata

    async def check(self) -> str:
        """A health check: one metadata round-trip to the cluster."""
        producer = await self._ensure_started()
        cluster = await producer.client.fetch_all_metadata()
        return f"{len(cluster.brokers())} broker(s) reachable"


@dataclass(frozen=True)
class ConsumedEvent:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)
    timestamp_ms: int | None = None

    @property
    def event_id(self) -> str:
        """The producer's ``event-id`` header, else the message's coordinates.

        The fallback still deduplicates redeliveries of the same message,
        though not a producer's retry that wrote it twice.
        """
        return self.headers.get(EVENT_ID_HEADER) or f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def event_type(self) -> str | None:
        return self.headers.get(EVENT_TYPE_HEADER)

    @classmethod
    def from_record(cls, record: Any) -> ConsumedEvent:
        headers = {
            name: (raw or b"").decode("utf-8", errors="replace")
            for name, raw in (record.headers or ())
        }
        key = record.key.decode("utf-8", errors="replace") if record.key is not None else None
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=key,
            value=record.value or b"",
            headers=headers,
            timestamp_ms=record.timestamp,
        )


class PoisonMessage(Exception):
    """Raised by a handler for a message that can never succeed (undecodable, invalid).

    It goes to the dead-letter topic at once, without retries.
    """


def parse_event(message_type: type[M], payload: bytes) -> M:
    """The protobuf message in ``payload``, or :class:`PoisonMessage` if it does not decode."""
    try:
        return message_type.FromString(payload)
    except DecodeError as error:
        raise PoisonMessage(f"undecodable {message_type.DESCRIPTOR.name}: {error}") from error


#: A handler applies one event's effect in the consumer's unit of work (its transaction).
Handler = Callable[[ConsumedEvent, UnitOfWork], Awaitable[None]]


class _Abandon(Exception):
    """Stop was requested while a message could not be finished; it stays uncommitted."""


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: attempt 1 waits about ``base``."""
    return random.uniform(base / 2, min(cap, base * 2 ** (attempt - 1)))


class IdempotentConsumer:
    """At-least-once consumption with effects applied exactly once per event id.

    ``run()`` consumes until ``stop()``; ``stop()`` lets the in-flight message
    finish, commits offsets and closes the consumer.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        database: Database,
        handlers: Mapping[str, Handler],
        producer: EventProducer,
        *,
        group_id: str | None = None,
        max_attempts: int | None = None,
        health: HealthRegistry | None = None,
        retry_backoff_seconds: float = 0.2,
        max_backoff_seconds: float = 5.0,
        batch_size: int = 100,
        commit_timeout_seconds: float = 10.0,
        ledger_retention_seconds: float = 14 * 24 * 3600.0,
        ledger_prune_interval_seconds: float = 600.0,
        consumer_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not handlers:
            raise ValueError("IdempotentConsumer needs at least one topic handler")
        group = group_id or settings.kafka_consumer_group
        if not group:
            raise ValueError("a consumer group is required (KAFKA_CONSUMER_GROUP or group_id)")
        self.group_id: str = group
        self._db = database
        self._handlers = dict(handlers)
        self._producer = producer
        self.max_attempts = max_attempts or settings.kafka_max_delivery_attempts
        self._retry_backoff = retry_backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._batch_size = batch_size
        self._commit_timeout = commit_timeout_seconds
        # Ledger rows only matter while a redelivery is possible: keep them
        # longer than the topics' retention (7 days by default).
        self._ledger_retention = ledger_retention_seconds
        self._prune_interval = ledger_prune_interval_seconds
        self._last_prune = time.monotonic()
        self._consumer_options = {
            **client_options(settings),
            "group_id": self.group_id,
            "client_id": self.group_id,
            "enable_auto_commit": False,
            # A group that starts for the first time reads what was published
            # before it existed: events must not be skipped.
            "auto_offset_reset": "earliest",
            "max_poll_records": batch_size,
            **(consumer_options or {}),
        }
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._finished.set()
        self._running = False
        # Next offset to commit per partition: every message before it has its
        # effect committed in the database.
        self._pending: dict[TopicPartition, int] = {}
        # Offset of the next message to process per partition (for the lag).
        self._positions: dict[TopicPartition, int] = {}
        self.state = "idle"
        self.last_error: str | None = None
        self.counts: dict[str, int] = {
            "processed": 0,
            "duplicate": 0,
            "retried": 0,
            "dead_lettered": 0,
        }
        if health is not None:
            health.add_check("kafka", self.check, critical=False)
            health.add_info("kafka_consumer", self.info)

    @property
    def topics(self) -> list[str]:
        return list(self._handlers)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Connects and joins the group; retries until Kafka answers or stop() is called."""
        delay = 0.5
        while self._consumer is None and not self._stopping.is_set():
            consumer = AIOKafkaConsumer(**self._consumer_options)
            consumer.subscribe(self.topics, listener=_RebalanceListener(self))
            self.state = "connecting"
            try:
                await consumer.start()
            except (KafkaError, OSError) as error:
                self.last_error = f"{type(error).__name__}: {error}"
                log.warning(
                    "Kafka consumer cannot connect; retrying",
                    extra={"group": self.group_id, "error": self.last_error, "retry_in_s": delay},
                )
                await _quietly(consumer.stop())
                await self._sleep(delay)
                delay = min(delay * 2, self._max_backoff)
                continue
            self._consumer = consumer
            self.last_error = None
            self.state = "running"
            log.info(
                "Kafka consumer started", extra={"group": self.group_id, "topics": self.topics}
            )

    async def run(self) -> None:
        self._running = True
        self._finished.clear()
        try:
            await self.start()
            while not self._stopping.is_set():
                await self._poll_once()
        except _Abandon:
            log.info("stopping with a message unfinished; it will be redelivered")
        finally:
            await self._close()
            self._running = False
            self._finished.set()

    async def stop(self) -> None:
        """Finishes the in-flight message, commits offsets and closes; waits for run() to end."""
        self._stopping.set()
        if self._running:
            await self._finished.wait()
        else:
            await self._close()

    async def _close(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        await self._commit()
        self._consumer = None
        try:
            # Leaving the group hands our partitions over at once instead of
            # after the session timeout.
            await asyncio.wait_for(consumer.stop(), self._commit_timeout)
        except (TimeoutError, KafkaError) as error:
            log.warning("Kafka consumer did not close cleanly", extra={"error": str(error)})
        self.state = "stopped"
        log.info("Kafka consumer stopped", extra={"group": self.group_id})

    async def _sleep(self, seconds: float) -> bool:
        """Sleeps unless stop() is called first; returns True when stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    # -- the loop ----------------------------------------------------------

    async def _poll_once(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            batches = await consumer.getmany(timeout_ms=500, max_records=self._batch_size)
        except ConsumerStoppedError:
            return
        except KafkaError as error:
            self.last_error = f"{type(error).__name__}: {error}"
            log.warning("Kafka poll failed; retrying", extra={"error": self.last_error})
            await self._sleep(1.0)
            return
        try:
            events = [
                (tp, ConsumedEvent.from_record(record))
                for tp, records in batches.items()
                if tp in consumer.assignment()
                for record in records
            ]
            # The whole poll in one transaction; what it could not apply goes
            # one by one through the retrying path below, in order.
            later = (
                await self._apply_batch(events)
                if len(events) > 1
                else [(tp, event, None) for tp, event in events]
            )
            for tp, event, failed_before in later:
                if self._stopping.is_set():
                    return
                if tp not in consumer.assignment():
                    continue  # revoked meanwhile; the new owner gets the rest
                self._positions[tp] = event.offset
                await self._process(event, failed_before)
                self._pending[tp] = event.offset + 1
                self._positions[tp] = event.offset + 1
        finally:
            if batches:
                await self._commit()
            await self._update_lag()
        await self._prune_ledger()

    async def _commit(self, partitions: set[TopicPartition] | None = None) -> None:
        consumer = self._consumer
        if consumer is None or not self._pending:
            return
        assigned = consumer.assignment()
        offsets = {
            tp: offset
            for tp, offset in self._pending.items()
            if tp in assigned and (partitions is None or tp in partitions)
        }
        # Offsets of partitions we lost are dropped: their messages are
        # redelivered to the new owner and skipped there as duplicates.
        for tp in list(self._pending):
            if tp not in assigned:
                del self._pending[tp]
        if not offsets:
            return
        try:
            await asyncio.wait_for(consumer.commit(offsets), self._commit_timeout)
        except (CommitFailedError, IllegalStateError) as error:
            log.warning("offset commit refused after a rebalance", extra={"error": str(error)})
            for tp in offsets:
                self._pending.pop(tp, None)
        except (KafkaError, TimeoutError) as error:
            # Kept pending and retried after the next poll; meanwhile a crash
            # would only redeliver messages whose effects are already recorded.
            self.last_error = f"offset commit failed: {type(error).__name__}: {error}"
            log.warning("offset commit failed; will retry", extra={"error": self.last_error})
        else:
            for tp, offset in offsets.items():
                if self._pending.get(tp) == offset:
                    del self._pending[tp]

    # -- one message ---------------------------------------------------------

    async def _apply_batch(
        self, events: list[tuple[TopicPartition, ConsumedEvent]]
    ) -> list[tuple[TopicPartition, ConsumedEvent, BaseException | None]]:
        """Applies a poll's events in one transaction: ledger rows and effects, one commit.

        Each event runs in a savepoint of that transaction. An event whose
        handler fails is undone alone and left for the one-by-one path
        (retries, the dead-letter topic), and so is every later event of its
        partition, which keeps per-key order; the others commit together.
        If the transaction itself fails (the database went away, the commit
        failed), nothing of it happened and every event takes the one-by-one
        path, which waits for the database. Returns the events left over, in
        order, with the error of their attempt in the batch (it counts as their
        first attempt). Offsets move only after the commit.
        """
        applied: list[tuple[TopicPartition, ConsumedEvent, str, trace.Span, float]] = []
        later: list[tuple[TopicPartition, ConsumedEvent, BaseException | None]] = []
        held_back: set[TopicPartition] = set()
        try:
            async with self._db.unit_of_work() as uow:
                for tp, event in events:
                    if self._stopping.is_set():
                        break  # stop() finishes the event in hand; the rest is redelivered
                    handler = self._handlers.get(event.topic)
                    if tp in held_back or handler is None:
                        held_back.add(tp)
                        later.append((tp, event, None))
                        continue
                    started = time.perf_counter()
                    span = tracer.start_span(
                        f"process {event.topic}",
                        context=extract_context(event.headers),
                        kind=SpanKind.CONSUMER,
                        attributes=self._span_attributes(event),
                    )
                    try:
                        with trace.use_span(span, end_on_exit=False):
                            async with uow.savepoint():
                                outcome = await self._apply_in(uow, event, handler)
                    except Exception as error:
                        span.end()  # its retry gets a span of its own
                        if is_connection_error(error):
                            raise  # the transaction is gone: all of it one by one
                        held_back.add(tp)
                        later.append((tp, event, error))
                        continue
                    applied.append((tp, event, outcome, span, started))
        except Exception as error:
            for *_, span, _ in applied:
                span.record_exception(error)
                span.end()
            log.warning(
                "batch transaction failed; applying its events one by one",
                extra={"group": self.group_id, "error": f"{type(error).__name__}: {error}"},
            )
            return [(tp, event, None) for tp, event in events]
        for tp, event, outcome, span, started in applied:
            span.set_attribute("emporium.consumer.outcome", outcome)
            span.set_attribute("emporium.consumer.attempts", 1)
            span.set_attribute("emporium.consumer.batch_size", len(applied))
            span.end()
            metrics.KAFKA_MESSAGES.labels(event.topic, self.group_id, outcome).inc()
            metrics.KAFKA_PROCESSING_DURATION.labels(event.topic, self.group_id).observe(
                time.perf_counter() - started
            )
            self.counts[outcome] += 1
            if tp not in held_back:
                self._pending[tp] = event.offset + 1
                self._positions[tp] = event.offset + 1
        return later

    def _span_attributes(self, event: ConsumedEvent) -> dict[str, Any]:
        attributes = {
            **_messaging_attributes(event.topic, "process"),
            "messaging.consumer.group.name": self.group_id,
            "messaging.destination.partition.id": str(event.partition),
            "messaging.kafka.offset": event.offset,
            "messaging.message.id": event.event_id,
        }
        if event.key is not None:
            attributes["messaging.kafka.message.key"] = event.key
        return attributes

    async def _process(
        self, event: ConsumedEvent, failed_before: BaseException | None = None
    ) -> None:
        handler = self._handlers.get(event.topic)
        attributes = self._span_attributes(event)
        started = time.perf_counter()
        with tracer.start_as_current_span(
            f"process {event.topic}",
            context=extract_context(event.headers),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:
            outcome = await self._deliver(event, handler, span, failed_before)
            span.set_attribute("emporium.consumer.outcome", outcome)
        metrics.KAFKA_MESSAGES.labels(event.topic, self.group_id, outcome).inc()
        metrics.KAFKA_PROCESSING_DURATION.labels(event.topic, self.group_id).observe(
            time.perf_counter() - started
        )
        self.counts[outcome] += 1

    async def _deliver(
        self,
        event: ConsumedEvent,
        handler: Handler | None,
        span: trace.Span,
        failed_before: BaseException | None = None,
    ) -> str:
        attempt = 0
        transient_failures = 0
        while True:
            attempt += 1
            span.set_attribute("emporium.consumer.attempts", attempt)
            try:
                if failed_before is not None:
                    # The batch's attempt failed like this: it counts as the first.
                    error, failed_before = failed_before, None
                    raise error
                if handler is None:
                    raise PoisonMessage(f"no handler for topic {event.topic}")
                return await self._apply(event, handler)
            except PoisonMessage as error:
                span.record_exception(error)
                await self._dead_letter(event, error, attempt)
                span.set_status(Status(StatusCode.ERROR, "dead-lettered: poison message"))
                return "dead_lettered"
            except Exception as error:
                span.record_exception(error)
                database_up = await self._database_up()
                if not database_up or is_retryable(error):
                    # Not the message's fault: this attempt does not count.
                    attempt -= 1
                    transient_failures += 1
                    if not database_up:
                        await self._wait_for_database(error)
                    elif await self._sleep(
                        backoff_delay(transient_failures, self._retry_backoff, self._max_backoff)
                    ):
                        raise _Abandon() from error
                    continue
                if attempt >= self.max_attempts:
                    log.error(
                        "handler failed %d times; dead-lettering",
                        attempt,
                        extra=self._describe(event),
                        exc_info=True,
                    )
                    await self._dead_letter(event, error, attempt)
                    span.set_status(Status(StatusCode.ERROR, f"dead-lettered after {attempt}"))
                    return "dead_lettered"
                delay = backoff_delay(attempt, self._retry_backoff, self._max_backoff)
                log.warning(
                    "handler failed; retrying",
                    extra={
                        **self._describe(event),
                        "attempt": attempt,
                        "error": f"{type(error).__name__}: {error}",
                        "retry_in_s": round(delay, 3),
                    },
                )
                metrics.KAFKA_MESSAGES.labels(event.topic, self.group_id, "retried").inc()
                self.counts["retried"] += 1
                if await self._sleep(delay):
                    raise _Abandon() from error

    async def _apply(self, event: ConsumedEvent, handler: Handler) -> str:
        async with self._db.unit_of_work() as uow:
            return await self._apply_in(uow, event, handler)

    async def _apply_in(self, uow: UnitOfWork, event: ConsumedEvent, handler: Handler) -> str:
        """The ledger row and the handler's effect, in the caller's transaction."""
        first_time = await uow.fetchval(
            "INSERT INTO processed_events"
            " (consumer_group, event_id, topic, kafka_partition, kafka_offset)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
            self.group_id,
            event.event_id,
            event.topic,
            event.partition,
            event.offset,
        )
        if not first_time:
            return "duplicate"
        await handler(event, uow)
        return "processed"

    async def _database_up(self) -> bool:
        return await self._db.ping(within=2.0)

    async def _wait_for_database(self, error: BaseException) -> None:
        """Pauses consumption until the database answers again (or stop() is called).

        The partitions are paused and polled meanwhile so the group does not
        evict this member for being idle; the message in hand is retried after.
        """
        consumer = self._consumer
        self.state = "waiting_for_database"
        self.last_error = f"database unavailable: {type(error).__name__}: {error}"
        log.error("database unavailable; consumption paused", extra={"error": self.last_error})
        delay = 0.5
        try:
            while not await self._database_up():
                if self._stopping.is_set():
                    raise _Abandon()
                if consumer is None:
                    await self._sleep(delay)
                else:
                    await self._idle_poll(consumer, min(delay, 1.0))
                delay = min(delay * 2, self._max_backoff)
        finally:
            if consumer is not None:
                consumer.resume(*consumer.assignment())
            self.state = "running"
        log.info("database is back; consumption resumed")

    async def _idle_poll(self, consumer: AIOKafkaConsumer, seconds: float) -> None:
        """Polls with every partition paused: the member stays in the group, nothing is read.

        Partitions assigned by a rebalance meanwhile are paused too; if one
        returned records before that, the consumer seeks back to the first, so
        they are read again after the pause instead of being skipped.
        """
        consumer.pause(*consumer.assignment())
        try:
            stray = await consumer.getmany(timeout_ms=int(seconds * 1000))
        except KafkaError as poll_error:
            log.warning("Kafka poll failed while paused", extra={"error": str(poll_error)})
            await self._sleep(seconds)
            return
        for tp, records in stray.items():
            if records:
                consumer.seek(tp, records[0].offset)

    async def _dead_letter(self, event: ConsumedEvent, error: BaseException, attempts: int) -> None:
        headers = {
            **event.headers,
            "dlq-error": f"{type(error).__name__}: {error}"[:1000],
            "dlq-attempts": str(attempts),
            "dlq-original-topic": event.topic,
            "dlq-original-partition": str(event.partition),
            "dlq-original-offset": str(event.offset),
            "dlq-consumer-group": self.group_id,
            "dlq-failed-at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        delay = 0.5
        while True:
            try:
                await self._producer.send(
                    dlq_topic(event.topic), event.key or "", event.value, headers
                )
                break
            except KafkaUnavailable as send_error:
                log.warning(
                    "cannot publish to the dead-letter topic; retrying",
                    extra={**self._describe(event), "error": str(send_error)},
                )
                if await self._sleep(delay):
                    raise _Abandon() from send_error
                delay = min(delay * 2, self._max_backoff)
        log.error("message dead-lettered", extra={**self._describe(event), "attempts": attempts})
        # Remember it, so a redelivery (crash before the offset commit) is not
        # dead-lettered twice. Best effort: the DLQ copy already exists.
        try:
            async with self._db.connection(acquire_timeout=2.0) as conn:
                await conn.execute(
                    "INSERT INTO processed_events"
                    " (consumer_group, event_id, topic, kafka_partition, kafka_offset, outcome)"
                    " VALUES ($1, $2, $3, $4, $5, 'dead_lettered') ON CONFLICT DO NOTHING",
                    self.group_id,
                    event.event_id,
                    event.topic,
                    event.partition,
                    event.offset,
                )
        except Exception as record_error:
            log.warning(
                "could not record the dead-lettered event", extra={"error": str(record_error)}
            )

    async def _prune_ledger(self) -> None:
        """Deletes this group's ledger rows older than the retention, 1000 at a time."""
        if time.monotonic() - self._last_prune < self._prune_interval:
            return
        self._last_prune = time.monotonic()
        try:
            while not self._stopping.is_set():
                deleted = await self._db.execute(
                    "DELETE FROM processed_events WHERE ctid IN ("
                    " SELECT ctid FROM processed_events"
                    " WHERE consumer_group = $1"
                    " AND processed_at < now() - make_interval(secs => $2::float8)"
                    " LIMIT 1000)",
                    self.group_id,
                    self._ledger_retention,
                )
                if deleted < 1000:
                    break
        except Exception as error:  # housekeeping; the next round tries again
            log.warning("pruning processed_events failed", extra={"error": str(error)})

    def _describe(self, event: ConsumedEvent) -> dict[str, Any]:
        return {
            "topic": event.topic,
            "partition": event.partition,
            "offset": event.offset,
            "event_id": event.event_id,
            "group": self.group_id,
        }

    # -- observability -----------------------------------------------------

    async def _update_lag(self) -> None:
        """Refreshes the consumed position of every assigned partition, then the lag."""
        consumer = self._consumer
        if consumer is None:
            return
        for tp in consumer.assignment():
            try:
                self._positions[tp] = await asyncio.wait_for(consumer.position(tp), 0.2)
            except (TimeoutError, KafkaError):
                continue
        self._lag_snapshot()

    def _lag_snapshot(self) -> dict[TopicPartition, int]:
        """Messages not processed yet per partition (highwater minus the next to process).

        Computed from what the fetcher already knows, so it stays current while
        a message is stuck in its handler, which is when it matters.
        """
        consumer = self._consumer
        assigned = consumer.assignment() if consumer is not None else set()
        lag: dict[TopicPartition, int] = {}
        for tp in assigned:
            position = self._positions.get(tp)
            try:
                highwater = consumer.highwater(tp) if consumer is not None else None
            except AssertionError:  # unassigned meanwhile
                continue
            if highwater is None or position is None:
                continue  # nothing fetched from this partition yet
            lag[tp] = max(0, highwater - position)
            metrics.KAFKA_CONSUMER_LAG.labels(tp.topic, str(tp.partition), self.group_id).set(
                lag[tp]
            )
        for tp in set(self._positions) - set(assigned):
            del self._positions[tp]
            with contextlib.suppress(KeyError):
                metrics.KAFKA_CONSUMER_LAG.remove(tp.topic, str(tp.partition), self.group_id)
        return lag

    async def check(self) -> str:
        """Health check: a metadata round-trip through the consumer's connection."""
        consumer = self._consumer
        if consumer is None:
            raise ConnectionError(f"consumer not connected ({self.last_error or self.state})")
        await consumer.topics()
        lag = self._lag_snapshot()
        return f"{len(consumer.assignment())} partition(s) assigned, lag {sum(lag.values())}"

    def info(self) -> dict[str, Any]:
        """The /healthz section: state, assignment, lag per partition and counters."""
        consumer = self._consumer
        assigned = sorted(consumer.assignment()) if consumer is not None else []
        lag = self._lag_snapshot()
        return {
            "group": self.group_id,
            "state": self.state,
            "topics": self.topics,
            "assigned_partitions": [f"{tp.topic}/{tp.partition}" for tp in assigned],
            "lag": {f"{tp.topic}/{tp.partition}": n for tp, n in sorted(lag.items())},
            "total_lag": sum(lag.values()),
            "counts": dict(self.counts),
            "last_error": self.last_error,
        }


class _RebalanceListener(ConsumerRebalanceListener):
    def __init__(self, owner: IdempotentConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Hand over cleanly: the new owner starts after our last committed effect.
        if revoked and self._owner._consumer is not None:
            await self._owner._commit(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info(
            "partitions assigned",
            extra={
                "group": self._owner.group_id,
                "partitions": sorted(f"{tp.topic}/{tp.partition}" for tp in assigned),
            },
        )


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        log.debug("ignored error while closing", exc_info=True)
