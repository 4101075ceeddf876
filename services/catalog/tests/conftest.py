"""Fixtures of the catalog's integration tests: a throwaway database on the real
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

from emporium.catalog.domain import Catalog
from emporium.catalog.grpc_api import SERVICE_NAME, CatalogServicer
from emporium.catalog.main import MIGRATIONS_DIR
from emporium.catalog.repository import PostgresCatalogRepository
from emporium.catalog.v1 import catalog_pb2_grpc
from emporium.kit.grpc import build_server
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
async def stub(pool: Any) -> AsyncIterator[catalog_pb2_grpc.CatalogServiceStub]:
    """The servicer behind the kit's server (interceptors and all) on a loopback port."""
    servicer = CatalogServicer(Catalog(PostgresCatalogRepository(pool)))
    built = build_server(
        host="127.0.0.1",
        port=0,
        servicers=[(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, servicer)],
        service_names=[SERVICE_NAME],
    )
    await built.server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{built.port}")
    yield catalog_pb2_grpc.CatalogServiceStub(channel)
    await channel.close()
    await built.server.stop(1)


@pytest.fixture
async def kafka_topic(topic_factory: Callable[..., Awaitable[str]]) -> str:
    """A one-partition topic of this test alone (and its ``.dlq`` twin), deleted afterwards."""
    return await topic_factory("catalog", partitions=1)
