"""What enqueue stores, with a small fake connection."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import trace

from emporium.events.v1.order_events_pb2 import OrderPlaced
from emporium.kit.outbox import enqueue

pytestmark = pytest.mark.unit


class FakeConnection:
    """Records the statements; the real one is exercised in the integration tests."""

    def __init__(self, in_transaction: bool = True) -> None:
        self.in_transaction = in_transaction
        self.executed: list[tuple[str, tuple[Any, ...]]] = []
        self.after_commit_callbacks: list[Callable[[], None]] = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        self.after_commit_callbacks.append(callback)

    def is_in_transaction(self) -> bool:
        return self.in_transaction

    async def execute(self, sql: str, *args: Any) -> str:
        self.executed.append((sql, args))
        return "INSERT 0 1"


def stored(conn: FakeConnection) -> dict[str, Any]:
    ((sql, args),) = conn.executed
    assert sql.startswith("INSERT INTO outbox")
    event_id, topic, key, payload, headers = args
    return {
        "event_id": event_id,
        "topic": topic,
        "key": key,
        "payload": payload,
        "headers": json.loads(headers),
    }


async def test_a_new_event_id_is_written_into_the_payload_and_the_headers() -> None:
    conn = FakeConnection()
    message = OrderPlaced(order_id="o-1")

    event_id = await enqueue(conn, topic="orders.order-placed.v1", key="o-1", message=message)

    row = stored(conn)
    assert row["event_id"] == event_id
    assert OrderPlaced.FromString(row["payload"]).event_id == event_id
    assert row["headers"]["event-id"] == event_id
    assert row["headers"]["event-type"] == "emporium.events.v1.OrderPlaced"
    assert row["headers"]["content-type"] == "application/x-protobuf"
    assert (row["topic"], row["key"]) == ("orders.order-placed.v1", "o-1")
    assert len(conn.after_commit_callbacks) == 1  # the commit wakes the relay


async def test_the_callers_event_id_wins_then_the_messages_own() -> None:
    explicit = FakeConnection()
    await enqueue(
        explicit, topic="t", key="k", message=OrderPlaced(event_id="in-msg"), event_id="given"
    )
    from_message = FakeConnection()
    await enqueue(from_message, topic="t", key="k", message=OrderPlaced(event_id="in-msg"))

    assert stored(explicit)["headers"]["event-id"] == "given"
    assert stored(from_message)["headers"]["event-id"] == "in-msg"


async def test_the_current_trace_context_is_stored_with_the_event(
    spans: object,
) -> None:
    conn = FakeConnection()
    tracer = trace.get_tracer("test")

    with tracer.start_as_current_span("checkout") as span:
        await enqueue(conn, topic="t", key="k", message=OrderPlaced())

    context = span.get_span_context()
    traceparent = stored(conn)["headers"]["traceparent"]
    # version-traceid-spanid-flags; the flags depend on the SDK's sampler and id generator
    assert traceparent.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")


async def test_enqueue_outside_a_transaction_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="inside the transaction"):
        await enqueue(
            FakeConnection(in_transaction=False), topic="t", key="k", message=OrderPlaced()
        )
