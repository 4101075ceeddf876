"""An idempotent producer on librdkafka whose acknowledgements are asyncio futures.

``produce`` only enqueues the message in librdkafka (it never waits on the
network), so it is called on the event loop; the producer's own thread
serves librdkafka's delivery reports (``poll``) and resolves the futures on
the loop, all the reports of one ``poll`` in one wake-up of the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka import Message as KafkaMessage
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from emporium.kit.config import KafkaSettings
from emporium.kit.kafka.bridge import ClientThread
from emporium.kit.kafka.config import client_config
from emporium.kit.kafka.events import messaging_attributes
from emporium.kit.telemetry import inject_headers

log = logging.getLogger(__name__)
tracer = trace.get_tracer("emporium.kit.kafka")

#: How long the producer's thread waits in one ``poll`` for delivery reports.
_POLL_SECONDS = 0.1
#: How long the health check's metadata request may take (the registry's timeout is 1 s).
_CHECK_SECONDS = 0.8
#: How long ``produce`` waits for room when librdkafka's queue is full.
_QUEUE_FULL_WAIT = 0.005


class KafkaUnavailable(Exception):
    """The producer could not reach Kafka (or the broker did not acknowledge)."""


@dataclass(frozen=True)
class Delivery:
    """Where the broker stored an acknowledged message."""

    topic: str
    partition: int
    offset: int


def _describe(error: KafkaError) -> str:
    return f"{error.name()}: {error.str()}"


def _settle_all(outcomes: list[tuple[asyncio.Future[Delivery], Any]]) -> None:
    for future, outcome in outcomes:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class EventProducer:
    """An idempotent producer (``enable.idempotence``, ``acks=all``) that survives Kafka restarts.

    ``start()`` never fails the service: librdkafka connects in the
    background and keeps reconnecting. A message not acknowledged within
    ``request_timeout_ms`` (Kafka down) fails its future with
    :class:`KafkaUnavailable`. Messages submitted in order keep their order
    within a partition (the idempotent producer keeps order across its own
    retries). A fatal producer error (librdkafka gave up on idempotence)
    replaces the client on the next submit.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        client_id: str = "emporium",
        request_timeout_ms: int = 10_000,
        linger_ms: int = 5,
    ) -> None:
        self._config = client_config(
            settings,
            **{
                "client.id": client_id,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": linger_ms,
                # The whole time a message may take, retries included.
                "message.timeout.ms": request_timeout_ms,
                "request.timeout.ms": min(request_timeout_ms, 30_000),
                "error_cb": self._on_error,
            },
        )
        self._producer: Producer | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._fatal = False
        self._stopped = False
        self._flush_timeout = request_timeout_ms / 1000
        # Delivery outcomes collected during one poll (on the client's thread),
        # handed to their loops after it.
        self._local = threading.local()
        # Health checks' metadata requests, one at a time (created on the first check).
        self._checks: ClientThread | None = None
        self.last_error: str | None = None

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Creates the client; it connects in the background."""
        self._ensure_started()

    def _ensure_started(self) -> Producer:
        if self._stopped:
            raise KafkaUnavailable("producer stopped")
        if self._producer is not None and not self._fatal:
            return self._producer
        if self._producer is not None:
            log.error(
                "Kafka producer failed fatally; replacing it", extra={"error": self.last_error}
            )
            self._retire()
        self._fatal = False
        self._closing = threading.Event()
        producer = Producer(self._config)
        thread = threading.Thread(
            target=self._serve,
            args=(producer, self._closing),
            name=f"kafka-producer-{self._config['client.id']}",
            daemon=True,
        )
        self._producer, self._thread = producer, thread
        thread.start()
        return producer

    def _retire(self) -> None:
        """Lets the current client's thread flush what it can and end."""
        self._closing.set()
        self._producer = None
        self._thread = None

    async def stop(self) -> None:
        """Delivers what is buffered (within the request timeout) and closes."""
        self._stopped = True
        thread = self._thread
        self._retire()
        if self._checks is not None:
            self._checks.close()
        if thread is not None:
            await asyncio.to_thread(thread.join, self._flush_timeout + 1)

    def _serve(self, producer: Producer, closing: threading.Event) -> None:
        """The producer's thread: serves delivery reports until closed, then flushes."""
        self._local.outcomes = []
        while not closing.is_set():
            producer.poll(_POLL_SECONDS)
            self._hand_over()
        remaining = producer.flush(self._flush_timeout)
        self._hand_over()
        if remaining:
            log.warning(
                "Kafka producer closed with messages undelivered", extra={"count": remaining}
            )

    def _hand_over(self) -> None:
        outcomes: list[tuple[asyncio.Future[Delivery], Any]] = self._local.outcomes
        if not outcomes:
            return
        self._local.outcomes = []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Delivery], Any]]] = {}
        for future, outcome in outcomes:
            by_loop.setdefault(future.get_loop(), []).append((future, outcome))
        for loop, items in by_loop.items():
            # RuntimeError: that loop is closed, nobody waits for these.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_all, items)

    def _on_delivery(
        self, future: asyncio.Future[Delivery], error: KafkaError | None, message: KafkaMessage
    ) -> None:
        # On the producer's thread (inside poll/flush).
        outcome: Any
        if error is not None:
            self.last_error = _describe(error)
            outcome = KafkaUnavailable(self.last_error)
        else:
            outcome = Delivery(
                message.topic() or "", message.partition() or 0, message.offset() or 0
            )
        self._local.outcomes.append((future, outcome))

    def _on_error(self, error: KafkaError) -> None:
        # Client-level errors: all brokers down, authentication, fatal idempotence errors.
        described = _describe(error)
        repeated, self.last_error = described == self.last_error, described
        if error.fatal():
            self._fatal = True
            log.error("Kafka producer fatal error", extra={"error": described})
        elif not repeated:  # librdkafka repeats them while the cause lasts
            log.warning("Kafka producer error", extra={"error": described})

    # -- producing ---------------------------------------------------------

    async def submit(
        self, topic: str, key: str, value: bytes, headers: Mapping[str, str]
    ) -> asyncio.Future[Delivery]:
        """Hands one message to the producer; the returned future resolves on the broker's ack.

        Use it to pipeline a batch (submit all, then await all) while keeping
        per-partition order. The future fails with :class:`KafkaUnavailable`
        when the message is not acknowledged within the request timeout.
        """
        future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        encoded_key = key.encode()
        header_list: list[tuple[str, str | bytes | None]] = list(headers.items())
        while True:
            producer = self._ensure_started()
            try:
                producer.produce(
                    topic,
                    value=value,
                    key=encoded_key,
                    headers=header_list,
                    on_delivery=lambda error, message: self._on_delivery(future, error, message),
                )
            except BufferError:
                # librdkafka's queue is full: its thread is sending; wait for room.
                await asyncio.sleep(_QUEUE_FULL_WAIT)
                continue
            except KafkaException as error:
                self.last_error = _describe(error.args[0])
                raise KafkaUnavailable(self.last_error) from error
            return future

    async def send(
        self, topic: str, key: str, value: bytes, headers: Mapping[str, str] | None = None
    ) -> Delivery:
        """Publishes one message and waits for the broker's acknowledgement.

        A PRODUCER span (child of the current span) is recorded and its
        context travels in the message's ``traceparent`` header.
        """
        with tracer.start_as_current_span(
            f"send {topic}", kind=SpanKind.PRODUCER, attributes=messaging_attributes(topic, "send")
        ) as span:
            span.set_attribute("messaging.kafka.message.key", key)
            outgoing = inject_headers(dict(headers or {}))
            delivery = await (await self.submit(topic, key, value, outgoing))
            span.set_attribute("messaging.destination.partition.id", str(delivery.partition))
            span.set_attribute("messaging.kafka.offset", delivery.offset)
            return delivery

    async def check(self) -> str:
        """A health check: one metadata round-trip to the cluster (off the event loop)."""
        producer = self._ensure_started()
        if self._checks is None:
            self._checks = ClientThread(f"kafka-producer-{self._config['client.id']}-checks")
        try:
            metadata = await self._checks.probe(
                _CHECK_SECONDS + 0.1, producer.list_topics, None, _CHECK_SECONDS
            )
        except TimeoutError as error:
            raise KafkaUnavailable("no metadata answer in time") from error
        except KafkaException as error:
            raise KafkaUnavailable(_describe(error.args[0])) from error
        return f"{len(metadata.brokers)} broker(s) reachable"
