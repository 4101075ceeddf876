"""The shared instance: servers answer, logins are confined, topics are right."""

from __future__ import annotations

import subprocess
import uuid
from types import ModuleType

import pytest

from emporium.contracts import manifest

pytestmark = pytest.mark.integration


def psql(ep: ModuleType, url: str, sql: str, database: str | None = None) -> str:
    s = ep.settings()
    return ep.postgres.psql(s, sql, database=database, libpq_env=ep.postgres.libpq_env(url))


def test_servers_answer(shared: ModuleType) -> None:
    s = shared.settings()
    version = psql(shared, shared.admin_url(), "SHOW server_version_num")
    assert int(version) >= 150000
    md = shared.kafka.metadata(shared.kafka_bootstrap())
    assert md.brokers == [(1, "127.0.0.1", s.kafka_port)]
    assert md.controller_id == 1
    assert shared.postgres_running()
    assert shared.kafka_running()


@pytest.mark.parametrize("service", manifest.system().data_services)
def test_login_reaches_only_its_own_database(shared: ModuleType, service: str) -> None:
    url = shared.service_env(service)["DATABASE_URL"]
    assert psql(shared, url, "SELECT current_user || '/' || current_database()") == (
        f"{service}/{service}"
    )
    # It owns its database: it can create and drop tables in it.
    table = f"probe_{uuid.uuid4().hex[:8]}"
    psql(
        shared,
        url,
        f"CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1); DROP TABLE {table};",
    )
    for other in shared.DATA_SERVICES:
        if other == service:
            continue
        with pytest.raises(subprocess.CalledProcessError) as refused:
            psql(shared, url, "SELECT 1", database=other)
        assert f'permission denied for database "{other}"' in refused.value.stderr
    # And it is no superuser and cannot create roles or databases.
    flags = psql(
        shared,
        url,
        "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user",
    )
    assert flags == "f|f|f"


def test_topics_have_their_partitions(shared: ModuleType) -> None:
    topics = shared.kafka_topics()
    for name, partitions in shared.TOPICS.items():
        assert topics.get(name) == partitions, name
    assert len([t for t in shared.TOPICS if t.endswith(".dlq")]) == len(manifest.system().topics)
    # Kafka's own tool agrees with the protocol-level view.
    s = shared.settings()
    described = shared.kafka.tool(
        s,
        "org.apache.kafka.tools.TopicCommand",
        "--bootstrap-server",
        s.kafka_bootstrap,
        "--describe",
        "--topic",
        "orders.order-placed.v1",
    ).stdout
    assert "PartitionCount: 3" in described
    assert "ReplicationFactor: 1" in described


def test_provision_is_idempotent(shared: ModuleType) -> None:
    before = shared.kafka_topics()
    shared.provision()
    shared.provision()
    assert shared.kafka_topics() == before
    url = shared.service_env("orders")["DATABASE_URL"]
    assert psql(shared, url, "SELECT current_database()") == "orders"
