"""What handlers see: a consumed event, the poison-message signal, the header names."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from confluent_kafka import Message as KafkaMessage
from google.protobuf.message import DecodeError, Message

from emporium.kit.db import UnitOfWork

EVENT_ID_HEADER = "event-id"
EVENT_TYPE_HEADER = "event-type"
CONTENT_TYPE_HEADER = "content-type"
PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
DLQ_SUFFIX = ".dlq"

M = TypeVar("M", bound=Message)


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


def messaging_attributes(topic: str, operation: str) -> dict[str, Any]:
    """OpenTelemetry messaging semantic-convention attributes common to all spans."""
    return {
        "messaging.system": "kafka",
        "messaging.operation.name": operation,
        "messaging.operation.type": operation,
        "messaging.destination.name": topic,
    }


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
    def from_message(cls, message: KafkaMessage) -> ConsumedEvent:
        """The event in a message librdkafka delivered (one without an error)."""
        raw_headers = message.headers() or []
        pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
        headers = {
            name: raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw or ""
            for name, raw in pairs
        }
        raw_key = message.key()
        _, timestamp = message.timestamp()
        return cls(
            topic=message.topic() or "",
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            key=raw_key.decode("utf-8", errors="replace") if raw_key is not None else None,
            value=message.value() or b"",
            headers=headers,
            timestamp_ms=timestamp if timestamp > 0 else None,
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

#: What :func:`batch_handler` wraps: the effects of several events of one topic at once.
BatchApply = Callable[[Sequence[ConsumedEvent], UnitOfWork], Awaitable[None]]


class BatchHandler:
    """A :data:`Handler` that can also apply many events of its topic at once.

    Made by :func:`batch_handler`. The consumer gives ``apply`` every new event
    of a poll on the handler's topic (redeliveries already left out by the
    ledger), in partition order, in the poll's transaction; called as a
    plain handler it applies one event (``apply([event], uow)``), which is
    what the consumer does to set a failing event apart.
    """

    def __init__(self, apply: BatchApply) -> None:
        self.apply = apply
        functools.update_wrapper(self, apply)

    async def __call__(self, event: ConsumedEvent, uow: UnitOfWork) -> None:
        await self.apply((event,), uow)


def batch_handler(apply: BatchApply) -> BatchHandler:
    """Registers ``apply(events, uow)`` as a topic's handler; see :class:`BatchHandler`.

    For a hot topic whose effects can be written set-based (one statement for
    a poll's events instead of one per event)::

        @batch_handler
        async def order_placed(events: Sequence[ConsumedEvent], uow: UnitOfWork) -> None:
            orders = [decode_order_placed(event.value) for event in events]
            await domain.decide_all(PostgresDecisionStore(uow, topics), orders)

    ``apply`` must give every event the effect it would get alone, in order:
    two events of one key in the same call are applied in their order. If it
    raises, nothing of the call is kept, and the consumer applies the poll's
    events one by one, so a poison message goes to the dead-letter topic
    without holding back the others.
    """
    return BatchHandler(apply)
