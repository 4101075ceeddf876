"""The services as background processes: `up`, `down` and the fault commands.

Each service runs as the console script ``emporium-<service>`` of the
workspace's environment (``.venv/bin``, installed by `make setup`), started
directly, without a `uv run` wrapper: the pid in ``.run/pids/<service>.pid``
and in `status` is the service's own process, so a signal sent to it reaches
the service. It runs from the repository root with exactly the environment
of ``env <service>`` on top of the caller's (contract variables inherited
from the caller are dropped) and logs to ``.run/logs/<service>.log``.
SIGKILL, SIGSTOP and SIGCONT go to the whole process group.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from . import collector, environment, kafka, postgres
from .progress import PlatformError, note, pid_alive, spawn_detached, step, tail, wait_until
from .settings import SERVICE_PORTS, SERVICES, Settings

READY_TIMEOUT = 60.0
STOREFRONT_URL = "http://127.0.0.1:8080/"


def log_path(s: Settings, service: str) -> Path:
    return s.logs_dir / f"{service}.log"


def pid_path(s: Settings, service: str) -> Path:
    return s.pids_dir / f"{service}.pid"


def _check(service: str) -> None:
    if service not in SERVICES:
        raise PlatformError(f"unknown service {service!r}; one of: {', '.join(SERVICES)}")


def service_pid(s: Settings, service: str) -> int | None:
    """The pid of the service's process if it is alive and runs the service."""
    try:
        pid = int(pid_path(s, service).read_text().strip())
    except (OSError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    script = f"emporium-{service}".encode()
    return pid if any(os.path.basename(arg) == script for arg in cmdline) else None


def _frozen(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "Tt"
    except (OSError, IndexError):
        return False


def ready(service: str, timeout: float = 2.0) -> bool:
    """Whether the service's /readyz answers 200."""
    url = f"http://127.0.0.1:{SERVICE_PORTS[service]['ADMIN_PORT']}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def process_env(s: Settings, service: str) -> dict[str, str]:
    """The caller's environment without contract variables, plus the service's."""
    env = {k: v for k, v in os.environ.items() if not environment.is_contract_variable(k)}
    env.update(environment.service_env(s, service))
    return env


def venv_bin(s: Settings, name: str) -> Path:
    """A program of the workspace's environment: ``$UV_PROJECT_ENVIRONMENT`` or ``.venv``."""
    venv = Path(os.environ.get("UV_PROJECT_ENVIRONMENT") or ".venv")
    path = (s.repo / venv / "bin" / name).absolute()
    if not path.exists():
        raise PlatformError(f"{path} not found: run make setup (or make bootstrap)")
    return path


def _run_once(s: Settings, service: str, *args: str, timeout: float = 300) -> None:
    """`emporium-<service> <args>`, output appended to its log."""
    log = log_path(s, service)
    with log.open("ab") as out:
        out.write(
            f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} emporium-{service} "
            f"{' '.join(args)} ===\n".encode()
        )
        out.flush()
        res = subprocess.run(
            [venv_bin(s, f"emporium-{service}"), *args],
            cwd=s.repo,
            env=process_env(s, service),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            timeout=timeout,
            check=False,
        )
    if res.returncode != 0:
        raise PlatformError(
            f"emporium-{service} {' '.join(args)} failed (exit "
            f"{res.returncode}); log: {log}\n{tail(log)}"
        )


def start_service(s: Settings, service: str, timeout: float = READY_TIMEOUT) -> None:
    """Starts one service unless it runs, and waits until /readyz answers 200."""
    _check(service)
    s.ensure_dirs()
    pid = service_pid(s, service)
    if pid is not None and _frozen(pid):
        raise PlatformError(f"{service} is frozen (pid {pid}); `thaw-service {service}` first")
    log = log_path(s, service)
    admin = SERVICE_PORTS[service]["ADMIN_PORT"]
    with step(f"{service}: {'already running' if pid else 'start'}, wait for :{admin}/readyz"):
        if pid is None:
            with log.open("ab") as out:
                out.write(
                    f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} emporium-{service} ===\n".encode()
                )
            pid = spawn_detached(
                [venv_bin(s, f"emporium-{service}")],
                log=log,
                cwd=s.repo,
                env=process_env(s, service),
            )
            pid_path(s, service).write_text(f"{pid}\n")
            started = True
        else:
            started = False
        deadline = time.monotonic() + timeout
        while not ready(service, timeout=1.0):
            if service_pid(s, service) is None:
                pid_path(s, service).unlink(missing_ok=True)
                what = "exited during start" if started else "is no longer running"
                raise PlatformError(f"{service} {what}; log: {log}\n{tail(log)}")
            if time.monotonic() > deadline:
                raise PlatformError(
                    f"{service} not ready within {timeout:.0f}s (left "
                    f"running); log: {log}\n{tail(log)}"
                )
            time.sleep(0.5)


def stop_service(s: Settings, service: str, grace: float | None = None) -> bool:
    """SIGTERM, then SIGKILL to the process group after the grace period."""
    _check(service)
    pid = service_pid(s, service)
    if pid is None:
        pid_path(s, service).unlink(missing_ok=True)
        return False
    if grace is None:
        grace = environment.LOCAL_SHUTDOWN_GRACE_SECONDS + 10.0
    with step(f"{service}: stop (pid {pid})"):
        if _frozen(pid):  # a frozen process cannot handle SIGTERM
            os.killpg(os.getpgid(pid), signal.SIGCONT)
        group = os.getpgid(pid)
        os.kill(pid, signal.SIGTERM)
        if not wait_until(lambda: not pid_alive(pid), grace):
            note(f"{service}: still running after {grace:.0f}s, sending SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)  # also whatever the service left behind
        wait_until(lambda: not pid_alive(pid), 10)
        pid_path(s, service).unlink(missing_ok=True)
    return True


def _signal_group(s: Settings, service: str, sig: signal.Signals) -> None:
    _check(service)
    pid = service_pid(s, service)
    if pid is None:
        raise PlatformError(f"{service} is not running")
    group = os.getpgid(pid)
    os.killpg(group, sig)
    note(f"{service}: sent {sig.name} to process group {group} (pid {pid})")


def freeze_service(s: Settings, service: str) -> None:
    """SIGSTOP: the process keeps its ports but answers nothing (a hung service)."""
    _signal_group(s, service, signal.SIGSTOP)


def thaw_service(s: Settings, service: str) -> None:
    _signal_group(s, service, signal.SIGCONT)


def up(s: Settings) -> None:
    from . import ensure_started, provision

    ensure_started()
    provision()
    collector.start(s, venv_bin(s, "python"))
    if service_pid(s, "catalog") is None:
        with step("catalog: migrate"):
            _run_once(s, "catalog", "migrate")
        with step("catalog: seed"):
            _run_once(s, "catalog", "seed")
    for service in SERVICES:
        start_service(s, service)
    note(f"logs in {s.logs_dir}; `python3 scripts/platformctl.py down` stops everything")
    print(f"storefront: {STOREFRONT_URL}", flush=True)


def down(s: Settings) -> None:
    for service in reversed(SERVICES):
        stop_service(s, service)
    collector.stop(s)
    kafka.stop(s)
    postgres.stop(s)


def status_rows(s: Settings) -> list[tuple[str, str, str, str]]:
    rows = []
    for service in SERVICES:
        pid = service_pid(s, service)
        ports = SERVICE_PORTS[service]
        where = f"grpc :{ports['GRPC_PORT']} admin :{ports['ADMIN_PORT']}" + (
            f" http :{ports['HTTP_PORT']}" if "HTTP_PORT" in ports else ""
        )
        if pid is None:
            state = "stopped"
        elif _frozen(pid):
            state = "frozen"
        else:
            state = "ready" if ready(service, timeout=0.5) else "not-ready"
        rows.append((service, where, state, str(pid or "-")))
    return rows


# --- command line -------------------------------------------------------------


def add_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    add("up", lambda s, a: up(s), "start + provision, then every service; print the URL")
    add("down", lambda s, a: down(s), "stop the services, Kafka and PostgreSQL")

    def one(name: str, fn: Callable[[Settings, str], object], help: str) -> None:
        p = add(name, lambda s, a: fn(s, a.service), help)
        p.add_argument("service", choices=SERVICES)

    one("start-service", start_service, "start one service and wait until it is ready")
    one("stop-service", _stop_or_note, "SIGTERM one service, SIGKILL after the grace period")
    one("freeze-service", freeze_service, "SIGSTOP one service (it hangs, ports stay open)")
    one("thaw-service", thaw_service, "SIGCONT a frozen service")


def _stop_or_note(s: Settings, service: str) -> None:
    if not stop_service(s, service):
        note(f"{service}: not running")
