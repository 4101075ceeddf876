"""Kafka for the services, on librdkafka (confluent-kafka): events, producer, consumer.

* :mod:`.events`: :class:`ConsumedEvent`, :class:`PoisonMessage`, :func:`parse_event`,
  the header names;
* :mod:`.producer`: the idempotent :class:`EventProducer`;
* :mod:`.consumer`: the batched, idempotent :class:`IdempotentConsumer`;
* :mod:`.ledger`: the ``processed_events`` ledger the consumer deduplicates with;
* :mod:`.config`: the one mapping from ``KAFKA_*`` settings to librdkafka's;
* :mod:`.retry`: the backoff shared with the outbox relay;
* :mod:`.bridge`: the thread that keeps librdkafka's waits off the event loop.
"""

from emporium.kit.kafka.config import client_config
from emporium.kit.kafka.consumer import IdempotentConsumer
from emporium.kit.kafka.events import (
    CONTENT_TYPE_HEADER,
    DLQ_SUFFIX,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    PROTOBUF_CONTENT_TYPE,
    ConsumedEvent,
    Handler,
    PoisonMessage,
    dlq_topic,
    parse_event,
)
from emporium.kit.kafka.producer import Delivery, EventProducer, KafkaUnavailable
from emporium.kit.kafka.retry import backoff_delay

__all__ = [
    "CONTENT_TYPE_HEADER",
    "DLQ_SUFFIX",
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
    "PROTOBUF_CONTENT_TYPE",
    "ConsumedEvent",
    "Delivery",
    "EventProducer",
    "Handler",
    "IdempotentConsumer",
    "KafkaUnavailable",
    "PoisonMessage",
    "backoff_delay",
    "client_config",
    "dlq_topic",
    "parse_event",
]
