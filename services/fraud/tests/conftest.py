"""Fixtures of the fraud tests: a hand-written fake store for unit tests, real servers
for integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import pytest

from emporium.fraud import domain
from emporium.fraud.main import MIGRATIONS_DIR, build
from emporium.fraud.settings import FraudSettings
from emporium.fraud.topics import Topics
from emporium.kit.config import parse_settings
from emporium.kit.db import Database
from emporium.testing.pytest_plugin import RunningService, open_database, service_env


@dataclass
class FakeDecisionStore:
    decisions: dict[str, domain.Decision] = field(default_factory=dict)
    outbox: list[domain.Decision] = field(default_factory=list)

    async def add_decisions(
        self, decided: Sequence[tuple[domain.PlacedOrder, domain.Decision]]
    ) -> set[str]:
        stored: set[str] = set()
        for order, decision in decided:
            if order.order_id in self.decisions:
                continue
            self.decisions[order.order_id] = decision
            self.outbox.append(decision)
            stored.add(decision.event_id)
        return stored


@pytest.fixture
def decision_store() -> FakeDecisionStore:
    return FakeDecisionStore()


# --- integration: the real PostgreSQL and Kafka of the local runner -----------------
#
# Each test gets its own database and its own topics, so tests never see each
# other's data or that of a running system (the local platform's plugin,
# testing/src/emporium/testing/pytest_plugin.py, makes both). The fraud service is the
# real composition from main.py, started in this process on loopback ports.


@pytest.fixture
async def database(database_factory: Callable[..., Awaitable[str]]) -> str:
    """A fresh database with the fraud migrations; dropped afterwards."""
    return await database_factory(MIGRATIONS_DIR)


@pytest.fixture
async def db(database: str) -> AsyncIterator[Database]:
    """The test's own view of the fraud database, for assertions."""
    pool = await open_database(database, max_size=3)
    yield pool
    await pool.close()


@pytest.fixture
async def topics(topic_factory: Callable[..., Awaitable[str]]) -> Topics:
    """Uniquely named topics (and .dlq twins) for this test; deleted afterwards."""
    return Topics(
        order_placed=await topic_factory("fraud.order-placed"),
        fraud_decision_made=await topic_factory("fraud.fraud-decision-made"),
    )


@pytest.fixture
async def fraud(
    database: str,
    kafka_bootstrap: str,
    topics: Topics,
    run_service: Callable[..., Awaitable[RunningService]],
) -> RunningService:
    """The real fraud composition (main.build) in this process; stopped afterwards."""
    env = service_env("fraud", DATABASE_URL=database, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap)
    return await run_service(await build(parse_settings(FraudSettings, env), topics))
