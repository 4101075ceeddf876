"""The consumer's ledger: which event ids a consumer group has applied (``processed_events``).

A ledger row and the event's effect commit in the same transaction, so an
event redelivered after a crash finds its row and is skipped: its effect
happens once. A whole poll's events are claimed with one statement.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from emporium.kit.db import Database, Session, UnitOfWork
from emporium.kit.kafka.events import ConsumedEvent

log = logging.getLogger(__name__)

_CLAIM_ONE = (
    "INSERT INTO processed_events"
    " (consumer_group, event_id, topic, kafka_partition, kafka_offset)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true"
)

# One statement for a whole batch: duplicates inside the batch or already in
# the ledger insert nothing and come back without their id.
_CLAIM_MANY = (
    "INSERT INTO processed_events"
    " (consumer_group, event_id, topic, kafka_partition, kafka_offset)"
    " SELECT $1, e.event_id, e.topic, e.kafka_partition, e.kafka_offset"
    " FROM unnest($2::text[], $3::text[], $4::int[], $5::bigint[])"
    " AS e(event_id, topic, kafka_partition, kafka_offset)"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)


class Ledger:
    """``processed_events`` rows of one consumer group."""

    def __init__(self, group_id: str) -> None:
        self.group_id = group_id

    async def claim(self, uow: UnitOfWork, event: ConsumedEvent) -> bool:
        """Records ``event`` in the caller's transaction; False if it was recorded before."""
        first_time = await uow.fetchval(
            _CLAIM_ONE, self.group_id, event.event_id, event.topic, event.partition, event.offset
        )
        return bool(first_time)

    async def claim_many(self, uow: UnitOfWork, events: Sequence[ConsumedEvent]) -> set[str]:
        """Records ``events`` in the caller's transaction with one statement.

        Returns the ids recorded now: an id absent from it was applied before
        (or appears earlier in the same batch).
        """
        rows = await uow.fetch(
            _CLAIM_MANY,
            self.group_id,
            [event.event_id for event in events],
            [event.topic for event in events],
            [event.partition for event in events],
            [event.offset for event in events],
        )
        return {row["event_id"] for row in rows}

    async def release(self, uow: UnitOfWork, event_ids: set[str]) -> None:
        """Withdraws claims of this transaction whose events will not be applied in it."""
        if event_ids:
            await uow.execute(
                "DELETE FROM processed_events WHERE consumer_group = $1"
                " AND event_id = ANY($2::text[])",
                self.group_id,
                list(event_ids),
            )

    async def record_dead_lettered(self, session: Session, event: ConsumedEvent) -> None:
        """Remembers a dead-lettered event, so its redelivery is not dead-lettered twice."""
        await session.execute(
            "INSERT INTO processed_events"
            " (consumer_group, event_id, topic, kafka_partition, kafka_offset, outcome)"
            " VALUES ($1, $2, $3, $4, $5, 'dead_lettered') ON CONFLICT DO NOTHING",
            self.group_id,
            event.event_id,
            event.topic,
            event.partition,
            event.offset,
        )

    async def prune(self, database: Database, retention_seconds: float, batch: int = 1000) -> int:
        """Deletes one batch of this group's rows older than the retention; returns how many."""
        return await database.execute(
            "DELETE FROM processed_events WHERE ctid IN ("
            " SELECT ctid FROM processed_events"
            " WHERE consumer_group = $1"
            " AND processed_at < now() - make_interval(secs => $2::float8)"
            " LIMIT $3::int)",
            self.group_id,
            retention_seconds,
            batch,
        )
