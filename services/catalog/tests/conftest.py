"""Fixtures of the catalog's integration tests: a throwaway database on the real
PostgreSQL of the local runner, migrated, and the servicer on a loopback gRPC port.

The runner's servers are found through ``python3 scripts/platformctl.py``; when
they are not running the integration tests are skipped (``make test`` starts
them first).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from emporium.catalog.domain import Catalog
from emporium.catalog.grpc_api import SERVICE_NAME, CatalogServicer
from emporium.catalog.repository import MIGRATIONS_DIR, PostgresCatalogRepository
from emporium.catalog.v1 import catalog_pb2_grpc
from emporium.kit.db import migrate
from emporium.kit.grpc import build_server

ROOT = Path(__file__).resolve().parents[3]


def platform(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "platformctl.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"local platform not available ({' '.join(args)}): {result.stderr[-300:]}")
    return result.stdout.strip()


@pytest.fixture(scope="session")
def admin_dsn() -> str:
    return platform("admin-url")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    env = json.loads(platform("env", "catalog", "--format", "json"))
    return str(env["KAFKA_BOOTSTRAP_SERVERS"])


def _with_database(dsn: str, database: str) -> str:
    return dsn.rsplit("/", 1)[0] + "/" + database


@pytest.fixture(scope="session")
async def database_dsn(admin_dsn: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test session, dropped afterwards."""
    name = f"test_catalog_{uuid.uuid4().hex[:10]}"
    try:
        admin = await asyncpg.connect(admin_dsn, timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        pytest.skip(f"PostgreSQL not reachable: {error}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = _with_database(admin_dsn, name)
        await migrate(dsn, MIGRATIONS_DIR)
        yield dsn
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
async def pool(database_dsn: str) -> AsyncIterator[Any]:
    pool = await asyncpg.create_pool(database_dsn, min_size=1, max_size=10)
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
async def kafka_topic(kafka_bootstrap: str) -> AsyncIterator[str]:
    """A topic of this test alone (and its ``.dlq`` twin), deleted afterwards."""
    topic = f"test.catalog.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        await admin.start()
    except KafkaError as error:
        pytest.skip(f"Kafka not reachable: {error}")
    try:
        await admin.create_topics([NewTopic(topic, 1, 1), NewTopic(f"{topic}.dlq", 1, 1)])
        yield topic
    finally:
        await admin.delete_topics([topic, f"{topic}.dlq"])
        await admin.close()
