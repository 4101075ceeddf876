"""Kafka handlers of orders: decode the event, hand it to the domain.

Each handler runs inside the kit consumer's transaction (the ``conn`` it is
given), together with the insert of the event id into ``processed_events``:
the status change, its outbox event and "this event was handled" commit or
roll back as one.
"""

from __future__ import annotations

import asyncpg
from google.protobuf.message import DecodeError

from emporium.events.v1 import fraud_events_pb2
from emporium.kit.kafka import ConsumedEvent, Handler, PoisonMessage
from emporium.orders import domain, messages
from emporium.orders.repository import PostgresOrderStatusStore
from emporium.orders.topics import Topics


def decode_fraud_decision(payload: bytes) -> domain.FraudDecision:
    """The decision in a ``fraud.decision-made.v1`` payload, or PoisonMessage."""
    try:
        message = fraud_events_pb2.FraudDecisionMade.FromString(payload)
    except DecodeError as error:
        raise PoisonMessage(f"undecodable FraudDecisionMade: {error}") from error
    try:
        return messages.fraud_decision_from_wire(message)
    except messages.InvalidDecision as error:
        raise PoisonMessage(f"invalid FraudDecisionMade: {error}") from error


def handlers(topics: Topics) -> dict[str, Handler]:
    """The consumer's handlers, by topic."""

    async def fraud_decision_made(event: ConsumedEvent, conn: asyncpg.Connection) -> None:
        decision = decode_fraud_decision(event.value)
        await domain.apply_fraud_decision(PostgresOrderStatusStore(conn, topics), decision)

    return {topics.fraud_decision_made: fraud_decision_made}
