"""The idempotent, at-least-once consumer on librdkafka.

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

A hot topic whose effects can be written set-based registers a batch handler
instead (:func:`~emporium.kit.kafka.batch_handler`): it gets a poll's new
events of its topic at once, in the same transaction as their ledger rows,
and wraps each event's own work (an outbox row, a log line) in
:func:`traced` to keep it in that event's trace::

    @batch_handler
    async def handle_order_placed(events: Sequence[ConsumedEvent], uow: UnitOfWork) -> None:
        orders = [parse_event(OrderPlaced, event.value) for event in events]
        await score_orders(uow, orders)  # one INSERT for all of them

What the consumer guarantees, per message:

* the event id is inserted into ``processed_events`` and the handler runs in
  the same database transaction, so a redelivered event (same ``event-id``
  header) is skipped and its effect happens once;
* the Kafka offset is committed only after that transaction committed, so a
  crash at any point redelivers the message instead of losing it; offsets
  are committed at most once per ``KAFKA_COMMIT_INTERVAL_MS`` (1 s), not
  after every poll, and always on stop and on a rebalance: a crash
  redelivers up to that much more, which the ledger skips;
* a poll's messages are applied in one transaction (one ledger statement for
  all of them, then each handler, or one call of a topic's batch handler); if
  a handler fails the transaction is undone and the poll is applied again
  with a savepoint per message (a batch handler given one event), which
  isolates the failing one;
* a failing handler is retried with backoff up to ``max_attempts`` times, then
  the original message goes to ``<topic>.dlq`` with headers describing the
  failure, and consumption goes on; :class:`PoisonMessage` skips the retries;
* while the database is down nothing is dead-lettered: the consumer pauses its
  partitions and retries the same message until the database is back;
* while Kafka is down it keeps retrying (librdkafka reconnects by itself; a
  consumer that could not reach the cluster at start keeps trying) and never
  crashes the service.

librdkafka's waiting calls (``consume``, ``commit``, ``close``) run on the
consumer's own thread (:class:`~emporium.kit.kafka.bridge.ClientThread`); the
rebalance callbacks run there too, inside ``consume``, while the event loop
is not processing a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from tenacity import AsyncRetrying

from emporium.kit import metrics, outbox
from emporium.kit.config import KafkaSettings
from emporium.kit.db import Database, UnitOfWork, is_connection_error, is_retryable
from emporium.kit.health import HealthRegistry
from emporium.kit.kafka.bridge import ClientThread
from emporium.kit.kafka.config import client_config
from emporium.kit.kafka.events import (
    BatchHandler,
    ConsumedEvent,
    Handler,
    PoisonMessage,
    dlq_topic,
    messaging_attributes,
)
from emporium.kit.kafka.ledger import Ledger
from emporium.kit.kafka.producer import EventProducer, KafkaUnavailable
from emporium.kit.retry import Backoff, retrying
from emporium.kit.telemetry import extract_context

log = logging.getLogger(__name__)
tracer = trace.get_tracer("emporium.kit.kafka")

#: A partition: (topic, partition number).
Partition = tuple[str, int]

#: How long one consume waits for a first message on the consumer's thread;
#: short, because a health check or a commit waits behind it.
_POLL_SECONDS = 0.2
#: How long the health check's metadata request may take.
_CHECK_SECONDS = 0.5
#: How long the health check waits in all: the consume in progress, then the
#: metadata request, under the health registry's 1 s check timeout.
_CHECK_WAIT_SECONDS = 0.9

# Commit errors that mean the partitions are no longer ours (a rebalance).
_REBALANCED = {
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._ASSIGNMENT_LOST,
}


#: The consumer spans of the events a batch handler is applying, by (topic, partition, offset).
_batch_spans: ContextVar[Mapping[tuple[str, int, int], trace.Span] | None] = ContextVar(
    "emporium_kafka_batch_spans", default=None
)


@contextlib.contextmanager
def traced(event: ConsumedEvent | None) -> Iterator[None]:
    """Within the block, work belongs to ``event``'s consumer span (its trace).

    A batch handler runs under no single event's span; it wraps what it does
    for one event (an outbox row it enqueues, a log line) in this, so the
    row's trace context, and with it the relay's publish and the next
    consumer, continue that event's trace. Elsewhere (a per-event handler,
    or a batch handler applying one event) the event's span is current
    already and this does nothing; so it does for ``None``.
    """
    spans = _batch_spans.get()
    span = None
    if spans and event is not None:
        span = spans.get((event.topic, event.partition, event.offset))
    if span is None:
        yield
        return
    with trace.use_span(span, end_on_exit=False):
        yield


class Causes:
    """The event each key of a batch came from: the first of the batch's events naming it.

    A batch handler builds one from its events and the key each is about (an
    order id), gives it to the store that writes each key's outbox row, and
    passes :meth:`traced` to the domain for each key's log lines, so all a
    key's work continues its own event's trace::

        causes = Causes(events, [order.order_id for order in orders])
        with causes.traced(order_id):
            await enqueue(uow, ...)  # the row carries that event's trace context
    """

    def __init__(self, events: Sequence[ConsumedEvent] = (), keys: Sequence[str] = ()) -> None:
        self._first: dict[str, ConsumedEvent] = {}
        for event, key in zip(events, keys, strict=True):
            self._first.setdefault(key, event)

    def traced(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Within the block, work belongs to ``key``'s event (see :func:`traced`)."""
        return traced(self._first.get(key))


class _Abandon(Exception):
    """Stop was requested while a message could not be finished; it stays uncommitted."""


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
        batch_size: int = 500,
        commit_timeout_seconds: float = 10.0,
        commit_interval_seconds: float | None = None,
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
        self._ledger = Ledger(self.group_id)
        self.max_attempts = max_attempts or settings.kafka_max_delivery_attempts
        self._backoff = Backoff(retry_backoff_seconds, max_backoff_seconds)
        self._max_backoff = max_backoff_seconds
        self._batch_size = batch_size
        self._commit_timeout = commit_timeout_seconds
        # An offset commit is a broker request the consumer waits for: one per
        # poll was most of the broker's requests under checkout load.
        self._commit_interval = (
            settings.kafka_commit_interval_ms / 1000
            if commit_interval_seconds is None
            else commit_interval_seconds
        )
        self._last_commit = time.monotonic()
        # Ledger rows only matter while a redelivery is possible: keep them
        # longer than the topics' retention (7 days by default).
        self._ledger_retention = ledger_retention_seconds
        self._prune_interval = ledger_prune_interval_seconds
        self._last_prune = time.monotonic()
        self._config = client_config(
            settings,
            **{
                "group.id": self.group_id,
                "client.id": self.group_id,
                "enable.auto.commit": False,
                # A group that starts for the first time reads what was published
                # before it existed: events must not be skipped.
                "auto.offset.reset": "earliest",
                # A member that died is replaced within 10 s (librdkafka's default is 45 s).
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 3_000,
                "error_cb": self._on_error,
                **(consumer_options or {}),
            },
        )
        self._consumer: Consumer | None = None
        self._thread: ClientThread | None = None
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._finished.set()
        self._running = False
        # Partitions assigned now; replaced (never mutated) by the rebalance callbacks.
        self._assigned: frozenset[Partition] = frozenset()
        # Next offset to commit per partition: every message before it has its
        # effect committed in the database.
        self._pending: dict[Partition, int] = {}
        # Offset of the next message to process per partition (for the lag).
        self._positions: dict[Partition, int] = {}
        # The last highwater librdkafka fetched per assigned partition, read on
        # the consumer's thread after each consume (for the lag, off the loop).
        self._highwater: dict[Partition, int] = {}
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

    # -- librdkafka's callbacks (on the consumer's thread) ------------------

    def _on_error(self, error: KafkaError) -> None:
        described = f"{error.name()}: {error.str()}"
        repeated, self.last_error = described == self.last_error, described
        if not repeated:  # librdkafka repeats them while the cause lasts
            log.warning("Kafka consumer error", extra={"group": self.group_id, "error": described})

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assigned = {(tp.topic, tp.partition) for tp in partitions}
        self._assigned = frozenset(self._assigned | assigned)
        log.info(
            "partitions assigned",
            extra={
                "group": self.group_id,
                "partitions": sorted(f"{topic}/{partition}" for topic, partition in assigned),
            },
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Hand over cleanly: the new owner starts after our last committed effect.
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        pending = dict(self._pending)
        offsets = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in pending.items()
            if (topic, partition) in revoked
        ]
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as error:
                log.warning("offset commit on revoke failed", extra={"error": str(error)})
        self._assigned = frozenset(self._assigned - revoked)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}
        self._assigned = frozenset(self._assigned - lost)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Creates the client and joins the group once the cluster answers.

        Retries until Kafka answers or stop() is called.
        """
        if self._consumer is not None:
            return
        thread = ClientThread(f"kafka-consumer-{self.group_id}")
        consumer = Consumer(self._config)
        self._thread = thread
        self.state = "connecting"

        def cannot_connect(error: BaseException, wait: float) -> None:
            kafka_error = error.args[0] if error.args else error
            self.last_error = (
                f"{kafka_error.name()}: {kafka_error.str()}"
                if isinstance(kafka_error, KafkaError)
                else str(error)
            )
            log.warning(
                "Kafka consumer cannot connect; retrying",
                extra={
                    "group": self.group_id,
                    "error": self.last_error,
                    "retry_in_s": round(wait, 3),
                },
            )

        try:
            async for attempt in self._until_kafka_answers(KafkaException, cannot_connect):
                with attempt:
                    if self._stopping.is_set():
                        raise _Abandon()
                    await thread.call(consumer.list_topics, None, 1.0)
        except _Abandon:
            # Stopped before Kafka answered.
            await self._close_client(consumer, thread)
            return
        await thread.call(
            consumer.subscribe,
            self.topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._consumer = consumer
        self.last_error = None
        self.state = "running"
        log.info("Kafka consumer started", extra={"group": self.group_id, "topics": self.topics})

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
        consumer, thread = self._consumer, self._thread
        if consumer is None or thread is None:
            return
        await self._commit()
        self._consumer = None
        await self._close_client(consumer, thread)
        self._assigned = frozenset()
        self.state = "stopped"
        log.info("Kafka consumer stopped", extra={"group": self.group_id})

    async def _close_client(self, consumer: Consumer, thread: ClientThread) -> None:
        try:
            # Leaving the group hands our partitions over at once instead of
            # after the session timeout.
            await asyncio.wait_for(thread.call(consumer.close), self._commit_timeout)
        except (TimeoutError, KafkaException, RuntimeError) as error:
            log.warning("Kafka consumer did not close cleanly", extra={"error": str(error)})
        thread.close()
        self._thread = None

    async def _sleep(self, seconds: float) -> bool:
        """Sleeps unless stop() is called first; returns True when stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _sleep_or_abandon(self, seconds: float) -> None:
        """Sleeps unless stop() is called first, which abandons the message in hand."""
        if await self._sleep(seconds):
            raise _Abandon()

    def _until_kafka_answers(
        self, errors: type[BaseException], on_retry: Callable[[BaseException, float], None]
    ) -> AsyncRetrying:
        """The kit's retry policy for a Kafka call: until it succeeds, or stop() abandons it."""
        return retrying(
            errors,
            initial=0.5,
            maximum=self._max_backoff,
            on_retry=on_retry,
            sleep=self._sleep_or_abandon,
        )

    # -- the loop ----------------------------------------------------------

    def _consume_on_thread(
        self, consumer: Consumer, seconds: float
    ) -> tuple[list[ConsumedEvent], list[KafkaError]]:
        """On the consumer's thread: up to ``batch_size`` events, decoded there.

        ``consume(n, timeout)`` returns only when it has ``n`` messages or the
        timeout passed (measured with confluent-kafka 2.16: one message
        waiting, ``consume(500, 0.5)`` returned after 500 ms), which would add
        up to ``seconds`` to every event at low rates. So: what is queued
        already, without waiting; if nothing, wait for the first message
        only, then take what arrived with it.
        """
        events: list[ConsumedEvent] = []
        errors: list[KafkaError] = []
        messages = consumer.consume(self._batch_size, 0)
        if not messages:
            messages = consumer.consume(1, seconds)
            if messages and self._batch_size > 1:
                messages += consumer.consume(self._batch_size - 1, 0)
        for message in messages:
            error = message.error()
            if error is None:
                events.append(ConsumedEvent.from_message(message))
            elif error.code() != KafkaError._PARTITION_EOF:
                errors.append(error)
        self._highwater = self._read_highwater(consumer)
        return events, errors

    def _read_highwater(self, consumer: Consumer) -> dict[Partition, int]:
        """On the consumer's thread: the cached highwater of each assigned partition."""
        highwater: dict[Partition, int] = {}
        for tp in self._assigned:
            try:
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(*tp), timeout=0, cached=True
                )
            except KafkaException:
                continue
            if high is not None and high >= 0 and high != OFFSET_INVALID:
                highwater[tp] = high
        return highwater

    async def _consume(self, seconds: float) -> list[ConsumedEvent]:
        """One poll: up to ``batch_size`` events, in partition order (decoded off the loop)."""
        consumer, thread = self._consumer, self._thread
        assert consumer is not None
        assert thread is not None
        events, errors = await thread.call(self._consume_on_thread, consumer, seconds)
        for error in errors:
            self.last_error = f"{error.name()}: {error.str()}"
            if error.fatal():
                raise KafkaException(error)
            log.warning("Kafka poll reported an error", extra={"error": self.last_error})
        return events

    async def _poll_once(self) -> None:
        try:
            events = await self._consume(_POLL_SECONDS)
        except KafkaException as error:
            self.last_error = f"Kafka poll failed: {error}"
            log.warning("Kafka poll failed; retrying", extra={"error": self.last_error})
            await self._sleep(1.0)
            return
        try:
            # The whole poll in one transaction; what it could not apply goes
            # one by one through the retrying path below, in order.
            later = (
                await self._apply_batch(events)
                if len(events) > 1
                else [(event, None) for event in events]
            )
            for event, failed_before in later:
                if self._stopping.is_set():
                    return
                tp = (event.topic, event.partition)
                if tp not in self._assigned:
                    continue  # revoked meanwhile; the new owner gets the rest
                self._positions[tp] = event.offset
                await self._process(event, failed_before)
                self._pending[tp] = event.offset + 1
                self._positions[tp] = event.offset + 1
        finally:
            if self._pending and time.monotonic() - self._last_commit >= self._commit_interval:
                await self._commit()
            self._lag_snapshot()
        await self._prune_ledger()

    async def _commit(self) -> None:
        consumer, thread = self._consumer, self._thread
        if consumer is None or thread is None or not self._pending:
            return
        assigned = self._assigned
        # Offsets of partitions we lost are dropped: their messages are
        # redelivered to the new owner and skipped there as duplicates.
        for tp in list(self._pending):
            if tp not in assigned:
                del self._pending[tp]
        offsets = dict(self._pending)
        if not offsets:
            return
        self._last_commit = time.monotonic()
        try:
            await asyncio.wait_for(
                thread.call(
                    consumer.commit,
                    offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                    asynchronous=False,
                ),
                self._commit_timeout,
            )
        except KafkaException as error:
            code = error.args[0].code()
            if code in _REBALANCED:
                log.warning("offset commit refused after a rebalance", extra={"error": str(error)})
                for tp in offsets:
                    self._pending.pop(tp, None)
                return
            # Kept pending and retried after the next interval; meanwhile a crash
            # would only redeliver messages whose effects are already recorded.
            self.last_error = f"offset commit failed: {error}"
            log.warning("offset commit failed; will retry", extra={"error": self.last_error})
        except TimeoutError:
            self.last_error = "offset commit failed: timed out"
            log.warning("offset commit failed; will retry", extra={"error": self.last_error})
        else:
            for tp, offset in offsets.items():
                if self._pending.get(tp) == offset:
                    del self._pending[tp]

    # -- a poll's batch ----------------------------------------------------

    def _start_span(self, event: ConsumedEvent) -> trace.Span:
        return tracer.start_span(
            f"process {event.topic}",
            context=extract_context(event.headers),
            kind=SpanKind.CONSUMER,
            attributes=self._span_attributes(event),
        )

    def _finish(self, applied: list[tuple[ConsumedEvent, str, trace.Span]], started: float) -> None:
        """Ends the spans of a committed batch and counts it; offsets may move."""
        outcomes: Counter[tuple[str, str]] = Counter()
        duration = time.perf_counter() - started
        per_event = duration / max(1, len(applied))
        for event, outcome, span in applied:
            span.set_attribute("emporium.consumer.outcome", outcome)
            span.set_attribute("emporium.consumer.attempts", 1)
            span.set_attribute("emporium.consumer.batch_size", len(applied))
            span.end()
            outcomes[(event.topic, outcome)] += 1
            self.counts[outcome] += 1
            tp = (event.topic, event.partition)
            self._pending[tp] = event.offset + 1
            self._positions[tp] = event.offset + 1
        for (topic, outcome), n in outcomes.items():
            metrics.KAFKA_MESSAGES.labels(topic, self.group_id, outcome).inc(n)
            histogram = metrics.KAFKA_PROCESSING_DURATION.labels(topic, self.group_id)
            for _ in range(n):
                histogram.observe(per_event)

    async def _apply_batch(
        self, events: list[ConsumedEvent]
    ) -> list[tuple[ConsumedEvent, BaseException | None]]:
        """Applies a poll's events in one transaction: one ledger statement, handlers, a commit.

        Per-event handlers run in the poll's order; a topic's batch handler
        (:func:`~emporium.kit.kafka.batch_handler`) runs once, after them, with
        the topic's new events in order (per-partition order is what Kafka
        keeps; events of two topics are never on one partition). If a handler
        fails, the transaction is undone and the poll is applied again with a
        savepoint per event (:meth:`_apply_isolating`; a batch handler is then
        given one event at a time), which sets the failing event apart. If the
        transaction itself fails (the database went away, the commit failed)
        every event takes the one-by-one path, which waits for the database.
        Returns the events left over, in order, with the error of their
        attempt in the batch (a per-event handler's failure counts as that
        event's first attempt; a batch handler's failure counts for none of
        its events). Offsets move only after the commit.
        """
        if any(event.topic not in self._handlers for event in events):
            return await self._apply_isolating(events)
        started = time.perf_counter()
        applied: list[tuple[ConsumedEvent, str, trace.Span]] = []
        failed: tuple[int, BaseException] | None = None
        isolate = False
        try:
            async with self._db.unit_of_work() as uow:
                claimed = await self._ledger.claim_many(uow, events)
                # Outbox rows the handlers enqueue are written with one statement.
                with outbox.collecting(uow) as rows:
                    # New events of topics with a batch handler, for one call each.
                    batches: dict[str, list[ConsumedEvent]] = {}
                    spans: dict[tuple[str, int, int], trace.Span] = {}
                    for index, event in enumerate(events):
                        if self._stopping.is_set():
                            # stop() lets the event in hand finish; the rest is
                            # redelivered, so their claims are withdrawn.
                            await self._ledger.release(uow, claimed)
                            break
                        span = self._start_span(event)
                        applied.append((event, "duplicate", span))
                        if event.event_id not in claimed:
                            continue
                        claimed.discard(event.event_id)  # a second copy in this poll is one
                        handler = self._handlers[event.topic]
                        if isinstance(handler, BatchHandler):
                            batches.setdefault(event.topic, []).append(event)
                            spans[(event.topic, event.partition, event.offset)] = span
                            applied[-1] = (event, "processed", span)
                            continue
                        try:
                            with trace.use_span(span, end_on_exit=False):
                                await handler(event, uow)
                        except Exception as error:
                            if not is_connection_error(error):
                                failed = (index, error)
                            raise
                        applied[-1] = (event, "processed", span)
                    token = _batch_spans.set(spans)
                    try:
                        for topic, fresh in batches.items():
                            batch = self._handlers[topic]
                            assert isinstance(batch, BatchHandler)
                            await batch.apply(fresh, uow)
                    except Exception as error:
                        # Which event failed is not known: all of them are set apart.
                        isolate = not is_connection_error(error)
                        raise
                    finally:
                        _batch_spans.reset(token)
                try:
                    await outbox.write_collected(uow, rows)
                except Exception as error:
                    isolate = not is_connection_error(error)
                    raise
        except Exception as error:
            for _, _, span in applied:
                span.record_exception(error)
                span.end()
            if failed is not None:
                # The failing event's attempt counts; the others run again, isolated.
                return await self._apply_isolating(events, {failed[0]: failed[1]})
            if isolate:
                # A batch handler failed, or an outbox row was refused (a reused
                # event id): find the event, one savepoint each.
                log.info(
                    "batch failed; applying its events one by one to set the failing one apart",
                    extra={"group": self.group_id, "error": f"{type(error).__name__}: {error}"},
                )
                return await self._apply_isolating(events)
            log.warning(
                "batch transaction failed; applying its events one by one",
                extra={"group": self.group_id, "error": f"{type(error).__name__}: {error}"},
            )
            return [(event, None) for event in events]
        self._finish(applied, started)
        return []

    async def _apply_isolating(
        self, events: list[ConsumedEvent], failed: Mapping[int, BaseException] | None = None
    ) -> list[tuple[ConsumedEvent, BaseException | None]]:
        """Applies a poll's events in one transaction, each in a savepoint of it.

        An event whose handler fails is undone alone and left for the
        one-by-one path (retries, the dead-letter topic), and so is every
        later event of its partition, which keeps per-key order; the others
        commit together. ``failed``: events (by index) whose handler already
        failed in this poll, with the error; they are not run again here.
        """
        failed = failed or {}
        started = time.perf_counter()
        applied: list[tuple[ConsumedEvent, str, trace.Span]] = []
        later: list[tuple[ConsumedEvent, BaseException | None]] = []
        held_back: set[Partition] = set()
        try:
            async with self._db.unit_of_work() as uow:
                for index, event in enumerate(events):
                    if self._stopping.is_set():
                        break  # stop() finishes the event in hand; the rest is redelivered
                    tp = (event.topic, event.partition)
                    handler = self._handlers.get(event.topic)
                    if index in failed:
                        held_back.add(tp)
                        later.append((event, failed[index]))
                        continue
                    if tp in held_back or handler is None:
                        held_back.add(tp)
                        later.append((event, None))
                        continue
                    span = self._start_span(event)
                    try:
                        with trace.use_span(span, end_on_exit=False):
                            async with uow.savepoint():
                                outcome = await self._apply_in(uow, event, handler)
                    except Exception as error:
                        span.end()  # its retry gets a span of its own
                        if is_connection_error(error):
                            raise  # the transaction is gone: all of it one by one
                        held_back.add(tp)
                        later.append((event, error))
                        continue
                    applied.append((event, outcome, span))
        except Exception as error:
            for _, _, span in applied:
                span.record_exception(error)
                span.end()
            log.warning(
                "batch transaction failed; applying its events one by one",
                extra={"group": self.group_id, "error": f"{type(error).__name__}: {error}"},
            )
            return [(event, None) for event in events]
        self._finish(applied, started)
        return later

    # -- one message ---------------------------------------------------------

    def _span_attributes(self, event: ConsumedEvent) -> dict[str, Any]:
        attributes = {
            **messaging_attributes(event.topic, "process"),
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
        started = time.perf_counter()
        with tracer.start_as_current_span(
            f"process {event.topic}",
            context=extract_context(event.headers),
            kind=SpanKind.CONSUMER,
            attributes=self._span_attributes(event),
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
                    elif await self._sleep(self._backoff(transient_failures)):
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
                delay = self._backoff(attempt)
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
        if not await self._ledger.claim(uow, event):
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
        self.state = "waiting_for_database"
        self.last_error = f"database unavailable: {type(error).__name__}: {error}"
        log.error("database unavailable; consumption paused", extra={"error": self.last_error})
        # The kit's retry policy paces the pings; the wait itself is an idle
        # poll (at most 1 s, so the group hears from this member).
        wait = Backoff(0.5, self._max_backoff)
        attempt = 0
        try:
            while not await self._database_up():
                if self._stopping.is_set():
                    raise _Abandon()
                attempt += 1
                if self._consumer is None:
                    await self._sleep(wait(attempt))
                else:
                    await self._idle_poll(min(wait(attempt), 1.0))
        finally:
            if self._consumer is not None and self._thread is not None:
                with contextlib.suppress(KafkaException):
                    await self._thread.call(self._consumer.resume, self._partitions())
            self.state = "running"
        log.info("database is back; consumption resumed")

    def _partitions(self, offsets: Mapping[Partition, int] | None = None) -> list[TopicPartition]:
        if offsets is not None:
            return [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        return [TopicPartition(t, p) for t, p in sorted(self._assigned)]

    async def _idle_poll(self, seconds: float) -> None:
        """Polls with every partition paused: the member stays in the group, nothing is read.

        Partitions assigned by a rebalance meanwhile are paused too; if one
        returned records before that, the consumer seeks back to the first, so
        they are read again after the pause instead of being skipped.
        """
        consumer, thread = self._consumer, self._thread
        assert consumer is not None
        assert thread is not None
        try:
            await thread.call(consumer.pause, self._partitions())
            stray = await self._consume(seconds)
        except KafkaException as poll_error:
            log.warning("Kafka poll failed while paused", extra={"error": str(poll_error)})
            await self._sleep(seconds)
            return
        firsts: dict[Partition, int] = {}
        for event in stray:
            firsts.setdefault((event.topic, event.partition), event.offset)
        for (topic, partition), offset in firsts.items():
            with contextlib.suppress(KafkaException):
                await thread.call(consumer.seek, TopicPartition(topic, partition, offset))

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

        def cannot_publish(error: BaseException, wait: float) -> None:
            log.warning(
                "cannot publish to the dead-letter topic; retrying",
                extra={**self._describe(event), "error": str(error), "retry_in_s": round(wait, 3)},
            )

        async for attempt in self._until_kafka_answers(KafkaUnavailable, cannot_publish):
            with attempt:
                await self._producer.send(
                    dlq_topic(event.topic), event.key or "", event.value, headers
                )
        log.error("message dead-lettered", extra={**self._describe(event), "attempts": attempts})
        # Remember it, so a redelivery (crash before the offset commit) is not
        # dead-lettered twice. Best effort: the DLQ copy already exists.
        try:
            async with self._db.connection(acquire_timeout=2.0) as session:
                await self._ledger.record_dead_lettered(session, event)
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
                if await self._ledger.prune(self._db, self._ledger_retention) < 1000:
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

    def _lag_snapshot(self) -> dict[Partition, int]:
        """Messages not processed yet per partition (highwater minus the next to process).

        The highwater is the one librdkafka's last fetch response gave, read on
        the consumer's thread after each consume (no request), so it stays
        current while a message is stuck in its handler, which is when it matters.
        """
        assigned = self._assigned if self._consumer is not None else frozenset()
        highwater = self._highwater
        lag: dict[Partition, int] = {}
        for tp in assigned:
            position, high = self._positions.get(tp), highwater.get(tp)
            if position is None or high is None:
                continue  # nothing fetched from this partition yet
            lag[tp] = max(0, high - position)
            metrics.KAFKA_CONSUMER_LAG.labels(tp[0], str(tp[1]), self.group_id).set(lag[tp])
        for tp in set(self._positions) - set(assigned):
            del self._positions[tp]
            with contextlib.suppress(KeyError):
                metrics.KAFKA_CONSUMER_LAG.remove(tp[0], str(tp[1]), self.group_id)
        return lag

    async def check(self) -> str:
        """Health check: a metadata round-trip through the consumer's client, on its thread.

        It waits for the consume in progress (0.2 s at most) and then asks for
        metadata for up to ``_CHECK_SECONDS``; one at a time, however often it is asked.
        """
        consumer, thread = self._consumer, self._thread
        if consumer is None or thread is None:
            raise ConnectionError(f"consumer not connected ({self.last_error or self.state})")
        try:
            await thread.probe(
                _CHECK_WAIT_SECONDS, consumer.list_topics, self.topics[0], _CHECK_SECONDS
            )
        except TimeoutError as error:
            raise ConnectionError("Kafka not reachable: no metadata answer in time") from error
        except KafkaException as error:
            raise ConnectionError(f"Kafka not reachable: {error}") from error
        lag = self._lag_snapshot()
        return f"{len(self._assigned)} partition(s) assigned, lag {sum(lag.values())}"

    def info(self) -> dict[str, Any]:
        """The /healthz section: state, assignment, lag per partition and counters."""
        assigned = sorted(self._assigned) if self._consumer is not None else []
        lag = self._lag_snapshot()
        return {
            "group": self.group_id,
            "state": self.state,
            "topics": self.topics,
            "assigned_partitions": [f"{topic}/{partition}" for topic, partition in assigned],
            "lag": {f"{t}/{p}": n for (t, p), n in sorted(lag.items())},
            "total_lag": sum(lag.values()),
            "counts": dict(self.counts),
            "last_error": self.last_error,
        }
