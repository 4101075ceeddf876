"""Stopping and starting the real servers, idempotent starts, existing servers.

Runs against a private PostgreSQL and Kafka (see the `private` fixture) so the
shared instance other tests use is never stopped.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from types import ModuleType

import pytest

from .conftest import ROOT, platform_env, run_cli

pytestmark = pytest.mark.integration


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def catalog_psql(ep: ModuleType, sql: str) -> str:
    s = ep.settings()
    url = ep.service_env("catalog")["DATABASE_URL"]
    return ep.postgres.psql(s, sql, libpq_env=ep.postgres.libpq_env(url))


def test_start_twice_changes_nothing(ep: ModuleType, private: dict[str, str]) -> None:
    with platform_env(**private):
        pg_pid = ep.postgres.server_pid(ep.settings())
        kafka_pid = ep.kafka.server_pid(ep.settings())
        result = run_cli("start", env=private)
        assert result.returncode == 0, result.stderr
        assert "postgres: already running" in result.stderr
        assert "kafka: already running" in result.stderr
        assert ep.postgres.server_pid(ep.settings()) == pg_pid
        assert ep.kafka.server_pid(ep.settings()) == kafka_pid
        status = run_cli("status", env=private).stdout
        assert f"running    pid {pg_pid}" in status
        assert f"running    pid {kafka_pid}" in status


def test_stop_and_start_kafka(ep: ModuleType, private: dict[str, str]) -> None:
    with platform_env(**private):
        s = ep.settings()
        pid = ep.kafka.server_pid(s)
        assert pid is not None
        result = run_cli("stop-kafka", env=private)
        assert result.returncode == 0, result.stderr
        assert not ep.kafka_running()
        assert not ep.progress.pid_alive(pid)
        assert refused(s.kafka_port)
        assert refused(s.kafka_controller_port)
        with pytest.raises(ConnectionError):
            ep.kafka.metadata(s.kafka_bootstrap, timeout=1)

        result = run_cli("start-kafka", env=private)
        assert result.returncode == 0, result.stderr
        assert ep.kafka.server_pid(s) not in (None, pid)
        # The data survived: topics are still there with their partitions.
        topics = ep.kafka_topics()
        assert {t: topics.get(t) for t in ep.TOPICS} == ep.TOPICS


def test_stop_and_start_postgres(ep: ModuleType, private: dict[str, str]) -> None:
    with platform_env(**private):
        s = ep.settings()
        ep.provision()  # another test may have changed the private logins
        marker = uuid.uuid4().hex
        catalog_psql(
            ep,
            "CREATE TABLE IF NOT EXISTS survives (v text); "
            f"INSERT INTO survives VALUES ('{marker}');",
        )
        pid = ep.postgres.server_pid(s)
        result = run_cli("stop-postgres", env=private)
        assert result.returncode == 0, result.stderr
        assert not ep.postgres_running()
        assert not ep.progress.pid_alive(pid)
        assert refused(s.pg_port)
        with pytest.raises(subprocess.CalledProcessError):
            catalog_psql(ep, "SELECT 1")

        result = run_cli("start-postgres", env=private)
        assert result.returncode == 0, result.stderr
        assert ep.postgres.server_pid(s) not in (None, pid)
        assert marker in catalog_psql(ep, "SELECT v FROM survives").split()


def test_existing_servers_are_used_not_started(ep: ModuleType, private: dict[str, str]) -> None:
    """EMPORIUM_POSTGRES_ADMIN_URL / EMPORIUM_KAFKA_BOOTSTRAP: provision there, start nothing."""
    with platform_env(**private):
        admin = ep.admin_url()
        bootstrap = ep.kafka_bootstrap()
        s = ep.settings()
        # Remove one topic so provisioning has something to create.
        ep.kafka.tool(
            s,
            "org.apache.kafka.tools.TopicCommand",
            "--bootstrap-server",
            bootstrap,
            "--delete",
            "--topic",
            "fraud.decision-made.v1.dlq",
        )
        deadline = time.monotonic() + 30
        while "fraud.decision-made.v1.dlq" in ep.kafka_topics():
            assert time.monotonic() < deadline, "topic deletion did not finish"
            time.sleep(0.5)
    other_state = ROOT / ".run" / f"test-external-{uuid.uuid4().hex[:8]}"
    external = {
        "EMPORIUM_STATE_DIR": str(other_state),
        "EMPORIUM_POSTGRES_ADMIN_URL": admin,
        "EMPORIUM_KAFKA_BOOTSTRAP": bootstrap,
        # Ports that nothing listens on: nothing may be started there.
        "EMPORIUM_PG_PORT": "25452",
        "EMPORIUM_KAFKA_PORT": "29112",
        "EMPORIUM_KAFKA_CONTROLLER_PORT": "29113",
    }
    try:
        for command in ("start", "provision"):
            result = run_cli(command, env=external)
            assert result.returncode == 0, result.stderr
        assert not (other_state / "postgres").exists()
        assert not (other_state / "kafka").exists()
        assert refused(55452)
        assert refused(59112)
        with platform_env(**external):
            assert ep.kafka_topics().get("fraud.decision-made.v1.dlq") == 1
            env = ep.service_env("catalog")
            assert env["KAFKA_BOOTSTRAP_SERVERS"] == bootstrap
            assert f"@127.0.0.1:{private['EMPORIUM_PG_PORT']}/catalog" in env["DATABASE_URL"]
            # The login provisioned there (with this state's password) works.
            assert catalog_psql(ep, "SELECT current_user") == "catalog"
            stopped = run_cli("stop-kafka", env=external)
            assert stopped.returncode != 0
            assert "not ours to stop" in stopped.stderr
    finally:
        shutil.rmtree(other_state, ignore_errors=True)
