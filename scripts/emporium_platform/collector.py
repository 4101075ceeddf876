"""The local trace collector (scripts/otlp_sink.py) as a background process.

Locally the services export their spans over OTLP/gRPC to this collector,
which appends them to ``.run/traces.jsonl``; `make demo` prints the checkout's
trace from there and the observability tests assert on it. In a cluster the
OpenTelemetry Collector takes this place.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from pathlib import Path

from .progress import PlatformError, pid_alive, spawn_detached, step, tail, wait_until
from .settings import Settings


def port() -> int:
    return int(os.environ.get("EMPORIUM_OTLP_PORT", "24317"))


def endpoint() -> str:
    return f"http://127.0.0.1:{port()}"


def traces_path(s: Settings) -> Path:
    return s.state_dir / "traces.jsonl"


def _pid_path(s: Settings) -> Path:
    return s.pids_dir / "otlp-sink.pid"


def _log_path(s: Settings) -> Path:
    return s.logs_dir / "otlp-sink.log"


def pid(s: Settings) -> int | None:
    path = _pid_path(s)
    with contextlib.suppress(FileNotFoundError, ValueError):
        value = int(path.read_text().strip())
        if pid_alive(value):
            return value
    return None


def _listening() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port()), 0.5):
        return True
    return False


def start(s: Settings, python: Path) -> None:
    """Starts the collector with the workspace's Python (no `uv run` wrapper)."""
    s.ensure_dirs()
    if pid(s) is not None:
        return
    with step(f"trace collector: start on :{port()}, spans to {traces_path(s)}"):
        if _listening():
            # Not ours (we have no pid file): another checkout's collector or a
            # stray one. The services' spans would go there, not to our file.
            raise PlatformError(
                f"port {port()} is in use by a process this checkout did not start"
                " (another checkout's trace collector?); stop it, or give this checkout"
                " another port with EMPORIUM_OTLP_PORT"
            )
        started = spawn_detached(
            [
                python,
                "scripts/otlp_sink.py",
                "--port",
                str(port()),
                "--out",
                str(traces_path(s)),
            ],
            log=_log_path(s),
            cwd=s.repo,
            env=os.environ,
        )
        _pid_path(s).write_text(f"{started}\n")
        # The collector exits at once (with the reason in its log) if it cannot bind.
        wait_until(lambda: _listening() or not pid_alive(started), 30)
        if not (pid_alive(started) and _listening()):
            _pid_path(s).unlink(missing_ok=True)
            raise PlatformError(f"trace collector did not listen; log:\n{tail(_log_path(s))}")


def stop(s: Settings) -> None:
    running = pid(s)
    if running is None:
        return
    with step("trace collector: stop"):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(running), signal.SIGTERM)
        wait_until(lambda: not pid_alive(running), 10)
        _pid_path(s).unlink(missing_ok=True)
