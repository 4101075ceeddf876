"""Fixtures of the kit's data tests, on top of the local platform's plugin
(testing/src/emporium/testing/pytest_plugin.py: throwaway databases and topics,
producer, topic readers, spans).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from emporium.kit.db import Database
from emporium.testing.pytest_plugin import open_database


@pytest.fixture
async def database_url(database_factory: Callable[..., Awaitable[str]]) -> str:
    """A fresh database with the kit's tables (outbox, processed_events)."""
    return await database_factory()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Database]:
    pool = await open_database(database_url, max_size=5)
    yield pool
    await pool.close()


#: What the consumer tests' handlers write: one row per effect, in the order applied.
EFFECTS_TABLE = """
CREATE TABLE IF NOT EXISTS effects (
    event_id text NOT NULL,  -- deliberately not unique: a double effect must be visible
    payload  text NOT NULL,
    call     integer,        -- which call of a batch handler wrote it
    n        bigserial
)
"""


@pytest.fixture
async def effects_pool(pool: Database) -> Database:
    """The test's database with the ``effects`` table."""
    await pool.execute(EFFECTS_TABLE)
    return pool
