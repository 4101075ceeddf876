"""Service processes: start with exactly `env`, stop gracefully, freeze and thaw;
the pid `status` shows is the service's own.

Uses the recommendations service on the shared instance (the service nothing
else depends on for correctness) and leaves it as it found it.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import run_cli

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("emporium.recommendations.main") is None,
        reason="the recommendations service is not installed in this environment",
    ),
]
SERVICE = "recommendations"


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def service(shared: ModuleType) -> Iterator[ModuleType]:
    was_running = shared.service_running(SERVICE)
    yield shared
    if shared.service_running(SERVICE):
        s = shared.settings()
        pid = shared.services.service_pid(s, SERVICE)
        if shared.services._frozen(pid):
            shared.thaw_service(SERVICE)
    if was_running:
        shared.start_service(SERVICE)
    else:
        shared.stop_service(SERVICE)


def test_stop_start_freeze_thaw(service: ModuleType) -> None:
    ep = service
    s = ep.settings()
    ports = ep.services.SERVICE_PORTS[SERVICE]
    ep.start_service(SERVICE)
    assert ep.service_ready(SERVICE)
    pid = ep.services.service_pid(s, SERVICE)
    # The process has exactly the variables `env` prints (none inherited).
    seen = environ_of(pid)
    expected = ep.service_env(SERVICE)
    assert {k: seen.get(k) for k in expected} == expected
    contract = {k for k in seen if ep.environment.is_contract_variable(k)}
    assert contract == set(expected)

    log_path = ep.services.log_path(s, SERVICE)
    log_size = log_path.stat().st_size
    result = run_cli("stop-service", SERVICE)
    assert result.returncode == 0, result.stderr
    assert not ep.progress.pid_alive(pid)
    assert not ep.service_running(SERVICE)
    assert refused(ports["ADMIN_PORT"])
    assert refused(ports["GRPC_PORT"])
    # It drained (SIGTERM reached the service) rather than being killed.
    with log_path.open() as f:
        f.seek(log_size)
        written_while_stopping = f.read()
    assert "still running after" not in result.stderr
    assert "draining" in written_while_stopping

    result = run_cli("start-service", SERVICE)
    assert result.returncode == 0, result.stderr
    assert ep.service_ready(SERVICE)
    new_pid = ep.services.service_pid(s, SERVICE)
    assert new_pid not in (None, pid)

    assert run_cli("freeze-service", SERVICE).returncode == 0
    assert not ep.services.ready(SERVICE, timeout=1.0)  # hangs: no answer in time
    assert "frozen" in run_cli("status").stdout
    assert run_cli("thaw-service", SERVICE).returncode == 0
    assert ep.progress.wait_until(lambda: ep.service_ready(SERVICE), 10)


def status_pid(service: str) -> tuple[str, int | None]:
    """The state and pid `platformctl status` prints for one service."""
    result = run_cli("status")
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.split()[0] == service]
    fields = line.split()
    pid = fields[-1]
    return fields[-3], None if pid == "-" else int(pid)


def test_status_shows_the_service_process_and_kill_9_of_it_stops_the_service(
    service: ModuleType,
) -> None:
    ep = service
    ports = ep.services.SERVICE_PORTS[SERVICE]
    ep.start_service(SERVICE)
    state, pid = status_pid(SERVICE)
    assert state == "ready"
    assert pid is not None
    # No wrapper: the shown process is the workspace's Python running the
    # service's console script, and it has no child that could be the service.
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert Path(argv[1].decode()).name == f"emporium-{SERVICE}", argv
    assert Path(os.readlink(f"/proc/{pid}/exe")).name.startswith("python"), argv
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert children == [], f"the service process has children {children}"

    os.kill(pid, signal.SIGKILL)
    assert ep.progress.wait_until(lambda: not ep.progress.pid_alive(pid), 10)
    assert ep.progress.wait_until(lambda: refused(ports["ADMIN_PORT"]), 10)
    assert refused(ports["GRPC_PORT"])
    assert status_pid(SERVICE) == ("stopped", None)
    assert not ep.service_running(SERVICE)
