"""`env <service>` against the contract in docs/configuration.md."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.parse
from pathlib import Path
from types import ModuleType

import pytest

from emporium.contracts import manifest

from .conftest import ROOT, run_cli

pytestmark = pytest.mark.unit

SYSTEM = manifest.system()
DOC = (ROOT / "docs" / "configuration.md").read_text()


def section(title: str) -> str:
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ |\Z)", DOC, re.M | re.S)
    assert match, title
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|[-| ]+\|$", line):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows[1:] if rows else rows  # without the header


DOCUMENTED = {m for m in re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", DOC, re.M)}
PORTS = {r[0]: r[1:] for r in table_rows(section("Local ports (the runner in `scripts/`)"))}
ADDR_USERS = {
    re.sub(r"`", "", r[0]): {u.strip() for u in r[1].split(",")}
    for r in table_rows(section("Downstream gRPC services"))
    if r[0].endswith("_ADDR`")
}
DOC_TOPICS = set(re.findall(r"`([a-z]+\.[a-z-]+\.v\d)`", section("Kafka topics")))


def test_the_document_was_parsed() -> None:
    assert {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "BIND_HOST", "HTTP_PORT"} <= DOCUMENTED
    assert set(PORTS) == set(SYSTEM.names)
    called = {callee for s in SYSTEM.services.values() for callee in s.calls}
    assert set(ADDR_USERS) == {f"{callee.upper()}_ADDR" for callee in called}
    assert len(DOC_TOPICS) == len(SYSTEM.topics)


def test_topics_match_the_document(ep: ModuleType) -> None:
    assert set(ep.TOPICS) == DOC_TOPICS | {f"{t}.dlq" for t in DOC_TOPICS}


@pytest.mark.parametrize("service", SYSTEM.names)
def test_env_follows_the_contract(ep: ModuleType, service: str) -> None:
    env = ep.service_env(service)
    s = ep.settings()
    assert set(env) <= DOCUMENTED, set(env) - DOCUMENTED
    grpc, admin, http = PORTS[service]
    assert env["GRPC_PORT"] == grpc
    assert env["ADMIN_PORT"] == admin
    assert env.get("HTTP_PORT", "–") == http
    assert env["BIND_HOST"] == "127.0.0.1"
    assert env["ENVIRONMENT"] == "local"
    assert env["OTEL_SERVICE_NAME"] == service
    for var, users in ADDR_USERS.items():
        if service in users:
            target = var.removesuffix("_ADDR").lower()
            assert env[var] == f"127.0.0.1:{PORTS[target][0]}"
        else:
            assert var not in env
    if service in ep.DATA_SERVICES:
        url = urllib.parse.urlsplit(env["DATABASE_URL"])
        assert url.scheme == "postgresql"
        assert (url.username, url.path) == (service, f"/{service}")
        assert url.password
        assert len(url.password) >= 24
        if s.local_postgres:
            assert (url.hostname, url.port) == ("127.0.0.1", s.pg_port)
        assert env["DATABASE_MIGRATE_ON_START"] == "true"
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == s.kafka_bootstrap
        assert env["KAFKA_CONSUMER_GROUP"] == service
    else:
        assert not any(k.startswith(("DATABASE_", "KAFKA_")) for k in env)


@pytest.mark.parametrize("service", ["orders", "gateway"])
def test_cli_prints_the_same_environment(ep: ModuleType, service: str) -> None:
    as_json = run_cli("env", service, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == ep.service_env(service)
    as_shell = run_cli("env", service)
    assert as_shell.returncode == 0, as_shell.stderr
    dumped = subprocess.run(
        ["bash", "-c", 'eval "$1" && env -0', "_", as_shell.stdout],
        capture_output=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout
    got = dict(item.split("=", 1) for item in dumped.decode().split("\0") if "=" in item)
    assert {k: got[k] for k in ep.service_env(service)} == ep.service_env(service)


def test_passwords_are_kept(ep: ModuleType) -> None:
    first = ep.service_env("fraud")["DATABASE_URL"]
    assert ep.service_env("fraud")["DATABASE_URL"] == first
    secret = Path(ep.settings().secrets_dir) / "postgres-fraud.password"
    assert secret.stat().st_mode & 0o077 == 0
