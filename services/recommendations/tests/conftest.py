"""Fixtures of the recommendations' integration tests: a throwaway database on the real
PostgreSQL of the local runner, migrated, and the servicer on a loopback gRPC port.

Databases and topics come from the local platform's plugin
(testing/src/emporium/testing/pytest_plugin.py), which starts PostgreSQL and Kafka
if they are not running.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from emporium.kit.grpc import build_server
from emporium.recommendations.domain import Recommendations
from emporium.recommendations.grpc_api import SERVICE_NAME, RecommendationServicer
from emporium.recommendations.main import MIGRATIONS_DIR
from emporium.recommendations.repository import PostgresRecommendationRepository
from emporium.recommendations.v1 import recommendations_pb2_grpc
from emporium.testing.pytest_plugin import open_database


@pytest.fixture(scope="session")
async def database_dsn(session_database_factory: Callable[..., Awaitable[str]]) -> str:
    """A fresh, migrated database for this test session, dropped afterwards."""
    return await session_database_factory(MIGRATIONS_DIR)


@pytest.fixture(scope="session")
async def pool(database_dsn: str) -> AsyncIterator[Any]:
    pool = await open_database(database_dsn, max_size=10)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def stub(
    pool: Any,
) -> AsyncIterator[recommendations_pb2_grpc.RecommendationServiceStub]:
    """The servicer behind the kit's server (interceptors and all) on a loopback port."""
    servicer = RecommendationServicer(Recommendations(PostgresRecommendationRepository(pool)))
    built = build_server(
        host="127.0.0.1",
        port=0,
        servicers=[
            (recommendations_pb2_grpc.add_RecommendationServiceServicer_to_server, servicer)
        ],
        service_names=[SERVICE_NAME],
    )
    await built.server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{built.port}")
    yield recommendations_pb2_grpc.RecommendationServiceStub(channel)
    await channel.close()
    await built.server.stop(1)


@pytest.fixture
async def kafka_topic(topic_factory: Callable[..., Awaitable[str]]) -> str:
    """A one-partition topic of this test alone (and its ``.dlq`` twin), deleted afterwards."""
    return await topic_factory("recommendations", partitions=1)
