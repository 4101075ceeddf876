"""Kafka settings and message parsing, without a broker."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from confluent_kafka import Message, Producer
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext

from emporium.events.v1.order_events_pb2 import OrderPlaced
from emporium.kit.config import KafkaSettings, parse_settings
from emporium.kit.db import UnitOfWork
from emporium.kit.kafka import (
    BatchHandler,
    Causes,
    ConsumedEvent,
    EventProducer,
    IdempotentConsumer,
    PoisonMessage,
    batch_handler,
    client_config,
    dlq_topic,
    parse_event,
    traced,
)
from emporium.kit.kafka.consumer import _batch_spans

pytestmark = pytest.mark.unit

SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def settings(**env: str) -> KafkaSettings:
    return parse_settings(KafkaSettings, env={"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092", **env})


def test_plaintext_needs_only_the_bootstrap_servers() -> None:
    config = client_config(settings())
    config.pop("logger")

    assert config == {"bootstrap.servers": "k1:9092,k2:9092", "security.protocol": "plaintext"}


def test_sasl_scram_over_tls_with_a_ca_file() -> None:
    if not SYSTEM_CA.exists():
        pytest.skip(f"no CA bundle at {SYSTEM_CA} to stand in for a cluster CA")
    config = client_config(
        settings(
            KAFKA_SECURITY_PROTOCOL="SASL_SSL",
            KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
            KAFKA_SASL_USERNAME="orders",
            KAFKA_SASL_PASSWORD="s3cret",
            KAFKA_SSL_CA_FILE=str(SYSTEM_CA),
        )
    )

    assert config["security.protocol"] == "sasl_ssl"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config["sasl.username"] == "orders"
    assert config["sasl.password"] == "s3cret"
    assert config["ssl.ca.location"] == str(SYSTEM_CA)
    # The broker's certificate must name the host it was reached at.
    assert config["ssl.endpoint.identification.algorithm"] == "https"
    # librdkafka accepts the whole configuration (it loads the CA file here).
    Producer(config)


def test_tls_without_a_ca_file_trusts_the_system_store() -> None:
    config = client_config(settings(KAFKA_SECURITY_PROTOCOL="SSL"))

    assert config["ssl.ca.location"] == "probe"
    assert config["ssl.endpoint.identification.algorithm"] == "https"
    assert "sasl.mechanism" not in config


def test_sasl_plaintext_has_no_tls_settings() -> None:
    config = client_config(
        settings(
            KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
            KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
            KAFKA_SASL_USERNAME="fraud",
            KAFKA_SASL_PASSWORD="pw",
        )
    )

    assert "ssl.ca.location" not in config
    assert config["sasl.mechanism"] == "SCRAM-SHA-256"
    Producer(config)


def test_a_missing_ca_file_fails_at_start_up_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^KAFKA_SSL_CA_FILE: no such file: "):
        client_config(
            settings(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CA_FILE=str(tmp_path / "ca.crt"))
        )


def test_producer_is_idempotent_and_waits_for_all_replicas() -> None:
    producer = EventProducer(settings(), client_id="orders")

    assert producer._config["enable.idempotence"] is True
    assert producer._config["acks"] == "all"


def test_consumer_commits_offsets_itself_and_reads_new_groups_from_the_start() -> None:
    async def handler(event: object, conn: object) -> None: ...

    consumer = IdempotentConsumer(
        settings(), None, {"t": handler}, EventProducer(settings()), group_id="g"
    )

    assert consumer._config["enable.auto.commit"] is False
    assert consumer._config["auto.offset.reset"] == "earliest"


def test_consumed_event_reads_the_event_id_and_headers() -> None:
    message = Message(
        topic="orders.order-placed.v1",
        partition=2,
        offset=41,
        key=b"order-7",
        value=b"\x0a\x01x",
        headers=[("event-id", b"e-1"), ("event-type", b"emporium.events.v1.OrderPlaced")],
        timestamp=(1, 1700000000000),
    )

    event = ConsumedEvent.from_message(message)

    assert event.event_id == "e-1"
    assert event.event_type == "emporium.events.v1.OrderPlaced"
    assert event.key == "order-7"
    assert event.value == b"\x0a\x01x"
    assert (event.topic, event.partition, event.offset) == ("orders.order-placed.v1", 2, 41)
    assert event.timestamp_ms == 1700000000000


def test_without_an_event_id_the_coordinates_identify_the_message() -> None:
    event = ConsumedEvent.from_message(Message(topic="t", partition=0, offset=5))

    assert event.event_id == "t:0:5"
    assert event.key is None
    assert event.value == b""
    assert event.headers == {}


def test_parse_event_decodes_or_says_the_message_is_poison() -> None:
    placed = OrderPlaced(order_id="o-1", customer_id="alice")

    assert parse_event(OrderPlaced, placed.SerializeToString()) == placed
    with pytest.raises(PoisonMessage, match=r"^undecodable OrderPlaced: "):
        parse_event(OrderPlaced, b"\xff\xfenot protobuf")


def test_dead_letter_topic_name() -> None:
    assert dlq_topic("fraud.decision-made.v1") == "fraud.decision-made.v1.dlq"


def test_consumer_needs_a_group_and_a_handler() -> None:
    producer = EventProducer(settings())

    async def handler(event: object, conn: object) -> None: ...

    with pytest.raises(ValueError, match="consumer group"):
        IdempotentConsumer(settings(), None, {"t": handler}, producer)
    with pytest.raises(ValueError, match="at least one"):
        IdempotentConsumer(settings(), None, {}, producer, group_id="g")
    consumer = IdempotentConsumer(
        settings(KAFKA_CONSUMER_GROUP="catalog", KAFKA_MAX_DELIVERY_ATTEMPTS="7"),
        None,
        {"t": handler},
        producer,
    )
    assert consumer.group_id == "catalog"
    assert consumer.max_attempts == 7


async def test_a_batch_handler_called_as_a_handler_applies_that_one_event() -> None:
    calls: list[tuple[list[str], object]] = []

    async def apply(events: Sequence[ConsumedEvent], uow: UnitOfWork) -> None:
        """Decides orders."""
        calls.append(([event.event_id for event in events], uow))

    handler = batch_handler(apply)
    uow = object()
    event = ConsumedEvent("t", 0, 5, "k", b"v", {"event-id": "e-1"})
    await handler(event, uow)  # type: ignore[arg-type]
    await handler.apply([event, event], uow)  # type: ignore[arg-type]

    assert isinstance(handler, BatchHandler)
    assert calls == [(["e-1"], uow), (["e-1", "e-1"], uow)]
    assert handler.__doc__ == "Decides orders."  # it reads like the function it wraps


def test_traced_outside_a_batch_leaves_the_current_span_alone() -> None:
    event = ConsumedEvent("t", 0, 5, "k", b"v", {"event-id": "e-1"})
    before = trace.get_current_span()
    with traced(event):
        assert trace.get_current_span() is before
    with traced(None):
        assert trace.get_current_span() is before


def test_causes_trace_each_key_in_its_first_events_span() -> None:
    first = ConsumedEvent("t", 0, 1, "o-1", b"", {"event-id": "a"})
    again = ConsumedEvent("t", 0, 2, "o-1", b"", {"event-id": "b"})
    other = ConsumedEvent("t", 1, 7, "o-2", b"", {"event-id": "c"})
    spans = {
        (event.topic, event.partition, event.offset): NonRecordingSpan(
            SpanContext(trace_id=n, span_id=n, is_remote=False)
        )
        for n, event in enumerate([first, again, other], start=1)
    }
    before = trace.get_current_span()
    token = _batch_spans.set(spans)  # what the consumer sets while a batch handler runs
    try:
        causes = Causes([first, again, other], ["o-1", "o-1", "o-2"])
        with causes.traced("o-1"):
            assert trace.get_current_span() is spans[("t", 0, 1)]  # the first, not the second
        with causes.traced("o-2"):
            assert trace.get_current_span() is spans[("t", 1, 7)]
        with causes.traced("o-3"):  # a key no event named: nothing changes
            assert trace.get_current_span() is before
    finally:
        _batch_spans.reset(token)
    with Causes().traced("o-1"):
        assert trace.get_current_span() is before
