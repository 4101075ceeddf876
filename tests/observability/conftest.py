"""Fixtures of the observability tests.

* ``system``: the whole system, started by the local runner; the fixture of
  tests/e2e/conftest.py, loaded from its file (tests/ is not a package).
* ``traces``: the span file the local collector (scripts/otlp_sink.py)
  writes; the runner starts the collector and points every service at it.
* ``prometheus``: a real Prometheus server (Debian's package, installed by
  `make setup`) on a private port, scraping every service's admin port each
  second (tests/observability/prometheus.py).

The real-server fixtures (throwaway databases, ``spans``...) come from the
repository's pytest plugin (testing/src/emporium/testing/pytest_plugin.py).
"""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def load(name: str, path: Path) -> ModuleType:
    """A module loaded from its file, once (neither tests/ nor scripts/ go on sys.path)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# The helpers are registered under these names, so test modules import them
# plainly (``import observability_tools as tools``).
e2e = load("e2e_system", ROOT / "tests" / "e2e" / "conftest.py")
prometheus_server = load("observability_prometheus", HERE / "prometheus.py")
tools = load("observability_tools", HERE / "tools.py")
journey = load("journey", HERE / "journey.py")
trace_tree = load("trace_tree", ROOT / "scripts" / "trace_tree.py")

# Re-exported: the same session fixture the end-to-end tests use.
system = e2e.system


@pytest.fixture(scope="session")
def traces(system: object) -> Path:
    """The local collector's span file; fails clearly when nothing can arrive in it."""
    env = json.loads(e2e.platform("env", "gateway", "--format", "json"))
    if env.get("OTEL_TRACES_EXPORTER") != "otlp":
        pytest.fail(
            "the local runner starts the services with OTEL_TRACES_EXPORTER="
            f"{env.get('OTEL_TRACES_EXPORTER')!r}; the trace tests need otlp and the runner's "
            "local collector (scripts/otlp_sink.py)"
        )
    endpoint = urlsplit(env.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""))
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 4317), timeout=2).close()
    except (OSError, TypeError) as error:
        pytest.fail(f"no collector listening at {endpoint.geturl()!r}: {error}")
    return tools.state_dir() / "traces.jsonl"


@pytest.fixture(scope="session")
def prometheus(system: object) -> Iterator[Any]:
    """A Prometheus server scraping the running services; its API in ``.api``."""
    server = prometheus_server.PrometheusServer(tools.state_dir() / "prometheus-test")
    server.start()
    try:
        yield server
    finally:
        server.stop()
