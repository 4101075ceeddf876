"""Fixtures for the local platform runner's own tests.

The root conftest.py puts `scripts/` on sys.path, so `emporium_platform` is
the package `python3 scripts/platformctl.py` runs; the fixtures every other
test folder uses (`platform`, throwaway databases and topics) are in its
pytest plugin, testing/src/emporium/testing/pytest_plugin.py.

Two instances are used:

- `shared`: the instance the environment names (by default ports 25432 /
  29092, state in .run/) that every other test uses; these tests only start
  it if needed and never stop it.
- `private`: a second PostgreSQL and Kafka with their own state directory and
  ports, for the tests that stop and restart servers, so they never disturb
  the shared ones. It is stopped and removed at the end of the module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import emporium_platform
import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "scripts" / "platformctl.py"
PLATFORM_VARIABLES = (
    "EMPORIUM_STATE_DIR",
    "EMPORIUM_PG_PORT",
    "EMPORIUM_KAFKA_PORT",
    "EMPORIUM_KAFKA_CONTROLLER_PORT",
    "EMPORIUM_POSTGRES_ADMIN_URL",
    "EMPORIUM_KAFKA_BOOTSTRAP",
)


@contextmanager
def platform_env(**values: str | None) -> Iterator[None]:
    """Sets (or with None removes) EMPORIUM_* variables for the block."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Runs `python3 scripts/platformctl.py ...` with the system interpreter's stdlib only."""
    return subprocess.run(
        [sys.executable, "-I", str(RUNNER), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def ep() -> ModuleType:
    """The runner's package, nothing started (the fixtures below choose the instance)."""
    return emporium_platform


@pytest.fixture(scope="session")
def shared(ep: ModuleType) -> ModuleType:
    """The instance the EMPORIUM_* variables name, started and provisioned (never stopped here)."""
    ep.ensure_started()
    ep.provision()
    return ep


@pytest.fixture(scope="module")
def private(ep: ModuleType) -> Iterator[dict[str, str]]:
    """A second PostgreSQL + Kafka on their own ports; yields their EMPORIUM_* variables."""
    # Under the repository's .run/: the PostgreSQL server user must be able to
    # reach the directory (pytest's own temporary folders are private to root).
    state = ROOT / ".run" / f"test-{uuid.uuid4().hex[:8]}"
    values = {
        "EMPORIUM_STATE_DIR": str(state),
        "EMPORIUM_PG_PORT": "25442",
        "EMPORIUM_KAFKA_PORT": "29102",
        "EMPORIUM_KAFKA_CONTROLLER_PORT": "29103",
        "EMPORIUM_POSTGRES_ADMIN_URL": None,
        "EMPORIUM_KAFKA_BOOTSTRAP": None,
    }
    with platform_env(**values):
        try:
            ep.ensure_started()
            ep.provision()
            yield {k: v for k, v in values.items() if v is not None}
        finally:
            ep.down()
            shutil.rmtree(state, ignore_errors=True)
