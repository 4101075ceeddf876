"""The transactional outbox and its relay.

Write the event in the same transaction as the state change it describes::

    async with database.unit_of_work() as uow:
        await uow.execute("INSERT INTO orders ...")
        await outbox.enqueue(uow, topic="orders.order-placed.v1", key=order_id, message=placed)

and run one relay per service instance (only one of them publishes at a time)::

    relay = OutboxRelay(database, producer, health=service.health)
    service.add_component("outbox-relay", relay)

If the transaction rolls back, the event never existed; if it commits, the
relay publishes it, however long Kafka is down. The commit wakes the relays of
its own process at once; rows another process wrote (a replica that is not
the publisher, a script) are found by the relay's poll, every
``poll_interval`` (0.2 s). The kit once woke relays with a ``pg_notify``
trigger; PostgreSQL serializes the commits of all notifying transactions of a
cluster on one lock held through each WAL flush, which capped checkouts
(``docs/decisions/kafka.md``). Consumers deduplicate on the
``event-id`` header, so the occasional second copy (the relay crashed between
Kafka's ack and marking the row) has no second effect.

Why one leader and id order keep per-key order
----------------------------------------------
The relay that holds a session-level advisory lock on its own connection is
the only publisher; the others wait on standby and take over within
``leader_retry_seconds`` when it goes (the server drops the lock with the
connection). The leader reads unpublished rows in ``id`` order and hands them
to the idempotent producer in that order, which keeps order per partition,
and keys map to partitions. Two events with the same key come from
transactions that change the same entity row, so the second cannot insert its
outbox row (and draw its id) before the first has committed: id order is
commit order for a key. ``SELECT ... FOR UPDATE SKIP LOCKED`` was rejected
because two relays would publish neighbouring batches concurrently and could
reorder a key across them; ``FOR UPDATE`` without ``SKIP LOCKED`` would
serialize them anyway, only with more locking.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import psycopg
from google.protobuf.message import Message
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from emporium.kit import metrics
from emporium.kit.db import Database, Row, Session, UnitOfWork, database_retry
from emporium.kit.health import HealthRegistry
from emporium.kit.kafka.events import (
    CONTENT_TYPE_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    PROTOBUF_CONTENT_TYPE,
)
from emporium.kit.kafka.producer import Delivery, EventProducer, KafkaUnavailable
from emporium.kit.retry import retrying
from emporium.kit.telemetry import extract_context, inject_headers

log = logging.getLogger(__name__)
tracer = trace.get_tracer("emporium.kit.outbox")

RELAY_LOCK_NAME = "emporium.outbox-relay"

#: The wake-ups of this process's publishing relays, set when a unit of work
#: that wrote outbox rows commits.
_relay_wakes: set[asyncio.Event] = set()


def _wake_relays() -> None:
    for wake in _relay_wakes:
        wake.set()


async def enqueue(
    uow: UnitOfWork,
    *,
    topic: str,
    key: str,
    message: Message,
    event_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    """Stores one event in the caller's transaction; returns its event id.

    The event id is, in order: ``event_id``, the message's own ``event_id``
    field if set, or a new UUID (written into an empty ``event_id`` field so
    the payload and the header agree). The current trace context is stored
    with the row, so the relay's publish and the consumers' work join the
    trace of the request that wrote it.
    """
    if not uow.in_transaction:
        raise RuntimeError("outbox.enqueue must run inside the transaction of the state change")
    has_id_field = "event_id" in message.DESCRIPTOR.fields_by_name
    if event_id is None and has_id_field:
        event_id = getattr(message, "event_id", "") or None
    event_id = event_id or str(uuid.uuid4())
    if has_id_field and not getattr(message, "event_id", ""):
        setattr(message, "event_id", event_id)  # noqa: B010 (a generated field)
    stored = {
        **(headers or {}),
        EVENT_ID_HEADER: event_id,
        EVENT_TYPE_HEADER: message.DESCRIPTOR.full_name,
        CONTENT_TYPE_HEADER: PROTOBUF_CONTENT_TYPE,
    }
    inject_headers(stored)
    row = (event_id, topic, key, message.SerializeToString(), json.dumps(stored))
    uow.after_commit(_wake_relays)
    collected = _collected.get()
    if collected is not None and collected[0] is uow:
        collected[1].append(row)  # written by write_collected before the commit
        return event_id
    await uow.execute(
        "INSERT INTO outbox (event_id, topic, key, payload, headers)"
        " VALUES ($1, $2, $3, $4, $5::jsonb)",
        *row,
    )
    return event_id


#: Rows that ``enqueue`` keeps for one unit of work instead of inserting them at once.
OutboxRows = list[tuple[str, str, str, bytes, str]]
_collected: ContextVar[tuple[UnitOfWork, OutboxRows] | None] = ContextVar(
    "emporium_outbox_collected", default=None
)


@contextlib.contextmanager
def collecting(uow: UnitOfWork) -> Iterator[OutboxRows]:
    """Within the block, ``enqueue`` on ``uow`` keeps its rows in the yielded list.

    The caller must pass them to :func:`write_collected` in the same
    transaction before it commits: the kit's consumer does, so a batch of
    events writes its outbox rows with one statement instead of one each.
    Rows keep their order (the relay's id order).
    """
    rows: OutboxRows = []
    token = _collected.set((uow, rows))
    try:
        yield rows
    finally:
        _collected.reset(token)


async def write_collected(uow: UnitOfWork, rows: OutboxRows) -> None:
    """Inserts rows kept by :func:`collecting`, in order, with one statement."""
    if not rows:
        return
    uow.after_commit(_wake_relays)
    event_ids, topics, keys, payloads, headers = (
        list(column) for column in zip(*rows, strict=True)
    )
    await uow.execute(
        "INSERT INTO outbox (event_id, topic, key, payload, headers)"
        " SELECT r.event_id, r.topic, r.key, r.payload, r.headers"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::jsonb[])"
        " WITH ORDINALITY AS r(event_id, topic, key, payload, headers, n) ORDER BY r.n",
        event_ids,
        topics,
        keys,
        payloads,
        headers,
    )


@dataclass
class _Stats:
    backlog: int | None = None  # None: not measured (database unreachable)
    oldest_age_seconds: float | None = None


class OutboxRelay:
    """Publishes outbox rows to Kafka in id order; one active relay per database.

    ``run()`` works until ``stop()``: it survives Kafka being down (rows stay,
    retried with capped backoff) and the database being down (reconnects).
    """

    def __init__(
        self,
        database: Database,
        producer: EventProducer,
        *,
        poll_interval: float = 0.2,
        batch_size: int = 500,
        retention_seconds: float = 3600.0,
        cleanup_interval_seconds: float = 60.0,
        cleanup_batch_size: int = 500,
        leader_retry_seconds: float = 2.0,
        max_backoff_seconds: float = 5.0,
        ack_timeout_seconds: float = 15.0,
        stats_interval_seconds: float = 1.0,
        health: HealthRegistry | None = None,
    ) -> None:
        self._db = database
        self._producer = producer
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._retention = retention_seconds
        self._cleanup_interval = cleanup_interval_seconds
        self._cleanup_batch = cleanup_batch_size
        self._leader_retry = leader_retry_seconds
        self._max_backoff = max_backoff_seconds
        self._ack_timeout = ack_timeout_seconds
        self._stats_interval = stats_interval_seconds
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._finished = asyncio.Event()
        self._finished.set()
        self._running = False
        self._stats = _Stats()
        self._last_cleanup = time.monotonic()
        self.state = "idle"
        self.last_error: str | None = None
        self.published_total = 0
        if health is not None:
            health.add_info("outbox", self.info)

    async def start(self) -> None:
        """Nothing to connect up front; present for symmetry with the other components."""

    async def stop(self) -> None:
        """Finishes the batch in hand, releases leadership and waits for run() to end."""
        self._stopping.set()
        self._wake.set()
        if self._running:
            await self._finished.wait()

    async def run(self) -> None:
        self._running = True
        self._finished.clear()
        watcher = asyncio.create_task(self._watch_backlog(), name="outbox-backlog")
        try:
            # Database errors restart the loop after a jittered backoff (the
            # kit's retry policy); anything else crashes the component, which
            # the service restarts.
            async for attempt in database_retry(
                initial=0.5,
                maximum=self._max_backoff,
                on_retry=self._database_down,
                sleep=self._sleep,
            ):
                with attempt:
                    if self._stopping.is_set():
                        return
                    async with self._db.raw_connection() as conn:
                        await self._serve(conn)
                    return
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            self.state = "stopped"
            self._running = False
            self._finished.set()

    def _database_down(self, error: BaseException, _wait: float) -> None:
        self.last_error = f"database unavailable: {type(error).__name__}: {error}"
        if self.state != "database_unavailable":
            log.error(
                "outbox relay lost the database; reconnecting", extra={"error": self.last_error}
            )
        self.state = "database_unavailable"

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- leadership --------------------------------------------------------

    async def _serve(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Leads while this connection holds the relay lock, else stands by."""
        session = Session(conn)
        while not self._stopping.is_set():
            leader = await session.fetchval(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", RELAY_LOCK_NAME
            )
            if leader:
                break
            if self.state != "standby":
                log.info("another relay is publishing; standing by")
            self.state = "standby"
            await self._sleep(self._leader_retry)
        else:
            return
        log.info("outbox relay is the publisher")
        _relay_wakes.add(self._wake)
        try:
            await self._lead(session)
        finally:
            _relay_wakes.discard(self._wake)
            if not conn.closed:
                # The pool's reset would drop the lock with the connection otherwise.
                with contextlib.suppress(psycopg.Error):
                    await session.execute(
                        "SELECT pg_advisory_unlock(hashtextextended($1, 0))", RELAY_LOCK_NAME
                    )

    async def _wait_for_work(self) -> None:
        """Waits up to ``poll_interval`` for a local commit's wake-up (or stop).

        A wake-up that arrived while a batch was being published is kept (the
        event stays set), so the next wait returns at once and a commit is
        never missed; one wake-up stands for any number of commits.
        """
        if self._wake.is_set() or self._stopping.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._poll_interval)

    async def _lead(self, session: Session) -> None:
        self.state = "publishing"
        while not self._stopping.is_set():
            # Kafka being down keeps the rows and retries the batch (the kit's
            # retry policy); stop() ends the wait and the loop.
            async for attempt in retrying(
                KafkaUnavailable,
                initial=0.5,
                maximum=self._max_backoff,
                on_retry=self._kafka_down,
                sleep=self._sleep,
            ):
                with attempt:
                    if self._stopping.is_set():
                        return
                    # Cleared before reading: a commit that wakes the relay while
                    # this batch is in flight makes the next wait return at once.
                    self._wake.clear()
                    published = await self._publish_batch(session)
            if self.state == "kafka_unavailable":
                log.info("Kafka is back; outbox publishing resumed")
            self.state = "publishing"
            self.last_error = None
            await self._cleanup(session)
            if published < self._batch_size:
                await self._wait_for_work()

    def _kafka_down(self, error: BaseException, _wait: float) -> None:
        self.last_error = f"Kafka unavailable: {error}"
        if self.state != "kafka_unavailable":
            log.error("Kafka unavailable; outbox rows kept", extra={"error": str(error)})
        self.state = "kafka_unavailable"

    # -- publishing --------------------------------------------------------

    async def _publish_batch(self, conn: Session) -> int:
        rows = await conn.fetch(
            "SELECT id, event_id, topic, key, payload, headers FROM outbox"
            " WHERE published_at IS NULL ORDER BY id LIMIT $1",
            self._batch_size,
        )
        if not rows:
            return 0
        in_flight: list[tuple[Row, trace.Span, asyncio.Future[Delivery]]] = []
        failure: BaseException | None = None
        failed_row: Row | None = None
        for row in rows:
            stored: dict[str, str] = row["headers"]  # jsonb arrives decoded
            span = tracer.start_span(
                f"send {row['topic']}",
                context=extract_context(stored),
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.name": "send",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": row["topic"],
                    "messaging.kafka.message.key": row["key"],
                    "messaging.message.id": row["event_id"],
                },
            )
            # The message carries the publish span's context, so the consumer's
            # span is its child and the whole path is one trace.
            with trace.use_span(span, end_on_exit=False):
                outgoing = inject_headers(dict(stored))
            try:
                # Only enqueues in the producer (it waits only while its queue is full).
                future = await self._producer.submit(
                    row["topic"], row["key"], bytes(row["payload"]), outgoing
                )
            except KafkaUnavailable as error:
                _end_failed(span, error)
                failure, failed_row = error, row
                break
            in_flight.append((row, span, future))

        # The whole batch's acknowledgements, with one timeout for all of them.
        if in_flight:
            await asyncio.wait([future for *_, future in in_flight], timeout=self._ack_timeout)
        published: list[int] = []
        for row, span, future in in_flight:
            problem: BaseException | None
            if not future.done():
                future.cancel()  # librdkafka's own timeout still ends the message
                problem = TimeoutError(f"no acknowledgement within {self._ack_timeout:g} s")
            else:
                problem = future.exception()
            if problem is not None:
                _end_failed(span, problem)
                if failure is None:
                    failure, failed_row = problem, row
                continue
            record = future.result()
            span.set_attribute("messaging.destination.partition.id", str(record.partition))
            span.set_attribute("messaging.kafka.offset", record.offset)
            span.end()
            published.append(row["id"])

        if published:
            marked = await conn.fetch(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])"
                " RETURNING topic, extract(epoch FROM published_at - created_at)::float8 AS delay",
                published,
            )
            for item in marked:
                metrics.OUTBOX_PUBLISHED.labels(item["topic"]).inc()
                metrics.OUTBOX_PUBLISH_DELAY.observe(max(0.0, item["delay"]))
            self.published_total += len(marked)
        if failure is not None:
            assert failed_row is not None
            reason = f"{type(failure).__name__}: {failure}"[:1000]
            await conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
                failed_row["id"],
                reason,
            )
            raise KafkaUnavailable(reason)
        return len(published)

    async def _watch_backlog(self) -> None:
        """Measures the backlog every ``stats_interval`` seconds, leader or not.

        It runs beside the publishing loop, so the backlog stays visible while
        a publish is stuck waiting for Kafka.
        """
        while not self._stopping.is_set():
            try:
                async with asyncio.timeout(max(1.0, self._stats_interval) * 2):
                    row = await self._db.fetchrow(
                        "SELECT count(*) AS backlog,"
                        " extract(epoch FROM clock_timestamp() - min(created_at))::float8"
                        " AS oldest FROM outbox WHERE published_at IS NULL"
                    )
            except Exception as error:
                log.debug("outbox backlog query failed", extra={"error": str(error)})
                self._stats = _Stats()
            else:
                assert row is not None
                self._stats = _Stats(row["backlog"], row["oldest"])
                metrics.OUTBOX_BACKLOG.set(row["backlog"])
            await self._sleep(self._stats_interval)

    async def _cleanup(self, conn: Session) -> None:
        """Deletes published rows older than the retention, a small batch at a time."""
        if time.monotonic() - self._last_cleanup < self._cleanup_interval:
            return
        self._last_cleanup = time.monotonic()
        deleted_total = 0
        while not self._stopping.is_set():
            deleted = await conn.execute(
                "DELETE FROM outbox WHERE id IN ("
                " SELECT id FROM outbox"
                " WHERE published_at < now() - make_interval(secs => $1::float8)"
                " ORDER BY id LIMIT $2::int)",
                self._retention,
                self._cleanup_batch,
            )
            deleted_total += deleted
            if deleted < self._cleanup_batch:
                break
            # Give the other work on this database room between batches.
            await asyncio.sleep(0.05)
        if deleted_total:
            log.info("published outbox rows deleted", extra={"deleted": deleted_total})

    # -- observability -----------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The /healthz section: who publishes, how much is waiting and for how long."""
        oldest = self._stats.oldest_age_seconds
        return {
            "state": self.state,
            "backlog": self._stats.backlog,
            "oldest_unpublished_age_seconds": None if oldest is None else round(oldest, 3),
            "published_total": self.published_total,
            "last_error": self.last_error,
        }


def _end_failed(span: trace.Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.end()
