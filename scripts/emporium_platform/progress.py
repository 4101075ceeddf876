"""One line per step with its elapsed time, and small process helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

_T0 = time.monotonic()


class PlatformError(RuntimeError):
    """A step failed; the message says what and where the logs are."""


def _out(text: str, end: str = "\n") -> None:
    sys.stderr.write(text + end)
    sys.stderr.flush()


def note(message: str) -> None:
    _out(f"[{time.monotonic() - _T0:6.1f}s] {message}")


@contextmanager
def step(name: str) -> Iterator[None]:
    """Prints `name ... ok (1.2s)`; on a terminal the line is written as it starts."""
    tty = sys.stderr.isatty()
    start = time.monotonic()
    prefix = f"[{start - _T0:6.1f}s] {name}"
    if tty:
        _out(prefix + " ...", end="")
    try:
        yield
    except BaseException as exc:
        took = time.monotonic() - start
        if tty:
            _out(f" FAILED ({took:.1f}s)")
        else:
            _out(f"{prefix} ... FAILED ({took:.1f}s)")
        if isinstance(exc, subprocess.CalledProcessError):
            raise PlatformError(_describe(exc)) from exc
        raise
    took = time.monotonic() - start
    if tty:
        _out(f" ok ({took:.1f}s)")
    else:
        _out(f"{prefix} ... ok ({took:.1f}s)")


def _describe(exc: subprocess.CalledProcessError) -> str:
    cmd = exc.cmd if isinstance(exc.cmd, str) else " ".join(map(str, exc.cmd))
    detail = (exc.stderr or exc.stdout or "").strip() if isinstance(exc.stderr, str) else ""
    return f"command failed ({exc.returncode}): {cmd}" + (f"\n{detail}" if detail else "")


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    input: str | None = None,
    cwd: Path | None = None,
    timeout: float = 600,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Runs a command to completion and captures its output as text."""
    return subprocess.run(
        [str(c) for c in cmd],
        env=dict(env) if env is not None else None,
        user=user,
        group=user,
        input=input,
        cwd=cwd,
        timeout=timeout,
        check=check,
        capture_output=True,
        text=True,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def wait_until(predicate, timeout: float, interval: float = 0.25) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def spawn_detached(
    cmd: Sequence[str | os.PathLike[str]], *, log: Path, cwd: Path, env: Mapping[str, str]
) -> int:
    """Starts a long-running server in its own session, detached from us.

    A shell starts it in the background and exits, so the server is adopted by
    init and reaped there: callers that live long (a test session) do not
    collect zombies, and the server outlives the runner. Returns its pid.
    """
    shell = subprocess.run(
        [
            "/bin/sh",
            "-c",
            'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!',
            "sh",
            str(log),
            *[str(c) for c in cmd],
        ],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        start_new_session=True,
        check=True,
        text=True,
    )
    return int(shell.stdout.strip())
