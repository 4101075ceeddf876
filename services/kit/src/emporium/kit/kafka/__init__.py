"""Kafka for the services, on librdkafka (confluent-kafka): events, producer, consumer.

* :mod:`.events`: :class:`ConsumedEvent`, :class:`PoisonMessage`, :func:`parse_event`,
  :func:`batch_handler` (a handler that takes a poll's events at once), the header names;
* :mod:`.producer`: the idempotent :class:`EventProducer`;
* :mod:`.consumer`: the batched, idempotent :class:`IdempotentConsumer`, and
  :func:`traced` (a batch handler's work for one event, in that event's trace) and
  :class:`Causes` (each key's first event in a batch, to trace that key's work in);
* :mod:`.ledger`: the ``processed_events`` ledger the consumer deduplicates with;
* :mod:`.config`: the one mapping from ``KAFKA_*`` settings to librdkafka's;
* :mod:`.bridge`: the thread that keeps librdkafka's waits off the event loop.
"""

from emporium.kit.kafka.config import client_config
from emporium.kit.kafka.consumer import Causes, IdempotentConsumer, traced
from emporium.kit.kafka.events import (
    CONTENT_TYPE_HEADER,
    DLQ_SUFFIX,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    PROTOBUF_CONTENT_TYPE,
    BatchApply,
    BatchHandler,
    ConsumedEvent,
    Handler,
    PoisonMessage,
    batch_handler,
    dlq_topic,
    parse_event,
)
from emporium.kit.kafka.producer import Delivery, EventProducer, KafkaUnavailable

__all__ = [
    "CONTENT_TYPE_HEADER",
    "DLQ_SUFFIX",
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
    "PROTOBUF_CONTENT_TYPE",
    "BatchApply",
    "BatchHandler",
    "Causes",
    "ConsumedEvent",
    "Delivery",
    "EventProducer",
    "Handler",
    "IdempotentConsumer",
    "KafkaUnavailable",
    "PoisonMessage",
    "batch_handler",
    "client_config",
    "dlq_topic",
    "parse_event",
    "traced",
]
