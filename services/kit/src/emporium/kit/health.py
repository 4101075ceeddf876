"""Dependency checks that run in the background, and the verdicts built on them.

Probes never run checks themselves: ``/readyz`` and ``/healthz`` read the
last results, so they are cheap and a hung dependency cannot hang a probe.
Readiness uses hysteresis: a critical dependency must fail ``fail_threshold``
rounds in a row to make the service unready, and pass ``pass_threshold`` rounds
in a row to make it ready again, so one slow ping does not flap the pod.

A check may come with ``evidence``: asked when the check fails, it may answer
that the dependency is up anyway (a health check of a busy downstream timed
out while that downstream keeps answering real calls). Overloaded is not
down: a busy system must not report itself, or its dependencies, as an outage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from emporium.kit import metrics

log = logging.getLogger(__name__)

#: A check returns a short detail on success and raises on failure.
Check = Callable[[], Awaitable[str | None]]
#: Extra information for /healthz (breaker states, consumer lag...).
Info = Callable[[], dict[str, Any]]
#: Asked when a check failed: a detail when other signs say the dependency is up, else None.
Evidence = Callable[[BaseException], str | None]


@dataclass
class DependencyStatus:
    name: str
    critical: bool
    up: bool | None = None  # None until the first check has run
    latency_ms: float | None = None
    detail: str = "not checked yet"
    checked_at: float | None = None
    consecutive_failures: int = 0
    consecutive_successes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "unknown" if self.up is None else ("up" if self.up else "down"),
            "critical": self.critical,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 2),
            "detail": self.detail,
            "checked_at": self.checked_at,
        }


@dataclass
class _Registered:
    check: Check
    status: DependencyStatus
    evidence: Evidence | None = None


@dataclass
class HealthRegistry:
    interval_seconds: float = 1.0
    check_timeout_seconds: float = 1.0
    fail_threshold: int = 2
    pass_threshold: int = 2
    _checks: dict[str, _Registered] = field(default_factory=dict)
    _infos: dict[str, Info] = field(default_factory=dict)
    _ready: bool = False
    _had_verdict: bool = False
    _draining: bool = False
    _started: bool = False
    _listeners: list[Callable[[bool], None]] = field(default_factory=list)

    def add_check(
        self, name: str, check: Check, *, critical: bool, evidence: Evidence | None = None
    ) -> None:
        """Registers a check; ``evidence`` may overrule its failures (see the module doc)."""
        self._checks[name] = _Registered(check, DependencyStatus(name, critical), evidence)

    def add_info(self, name: str, info: Info) -> None:
        self._infos[name] = info

    def on_readiness_change(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    @property
    def ready(self) -> bool:
        return self._ready and not self._draining

    def start_draining(self) -> None:
        """SIGTERM: report unready at once so the load balancer stops sending work."""
        self._draining = True
        self._publish()

    async def run_once(self) -> None:
        await asyncio.gather(*(self._run_check(r) for r in self._checks.values()))
        self._started = True
        self._update_readiness()

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.run_once()
            except Exception:  # a bug in a check must not stop health reporting
                log.exception("health check round failed")
            await asyncio.sleep(max(0.0, self.interval_seconds - (time.monotonic() - started)))

    async def _run_check(self, registered: _Registered) -> None:
        status = registered.status
        started = time.perf_counter()
        try:
            try:
                detail = await asyncio.wait_for(registered.check(), self.check_timeout_seconds)
            except Exception as error:
                overruled = registered.evidence(error) if registered.evidence else None
                if overruled is None:
                    raise
                detail = overruled
        except Exception as error:
            status.up = False
            status.consecutive_failures += 1
            status.consecutive_successes = 0
            reason = "timed out" if isinstance(error, TimeoutError) else str(error) or repr(error)
            status.detail = f"{type(error).__name__}: {reason}"[:300]
        else:
            status.up = True
            status.consecutive_successes += 1
            status.consecutive_failures = 0
            status.detail = detail or "ok"
        status.latency_ms = (time.perf_counter() - started) * 1000
        status.checked_at = time.time()
        critical = "true" if status.critical else "false"
        metrics.DEPENDENCY_UP.labels(status.name, critical).set(1 if status.up else 0)
        metrics.DEPENDENCY_CHECK_DURATION.labels(status.name).set(status.latency_ms / 1000)

    def _update_readiness(self) -> None:
        critical = [r.status for r in self._checks.values() if r.status.critical]
        if self._ready:
            if any(s.consecutive_failures >= self.fail_threshold for s in critical):
                self._ready = False
                log.warning("service is no longer ready", extra={"down": self._down_names()})
        # The first verdict needs only one passing round; later ones need
        # pass_threshold rounds in a row.
        elif all(
            s.up and (s.consecutive_successes >= self.pass_threshold or not self._had_verdict)
            for s in critical
        ):
            self._ready = True
            log.info("service is ready")
        self._had_verdict = True
        self._publish()

    def _publish(self) -> None:
        metrics.READY.set(1 if self.ready else 0)
        for listener in self._listeners:
            listener(self.ready)

    def _down_names(self) -> list[str]:
        return [r.status.name for r in self._checks.values() if r.status.up is False]

    def unready_reasons(self) -> list[str]:
        """Why the service is not ready: the critical dependencies that are down, by name."""
        if self._draining:
            return ["draining"]
        reasons = [
            f"{r.status.name} {'down' if r.status.up is False else 'not checked yet'}: "
            f"{r.status.detail}"
            for r in self._checks.values()
            if r.status.critical and not r.status.up
        ]
        return reasons or ([] if self.ready else ["waiting for consecutive passing checks"])

    def report(self) -> tuple[bool, dict[str, Any]]:
        """The /healthz document and whether every critical dependency is up."""
        dependencies = {name: r.status.as_dict() for name, r in self._checks.items()}
        healthy = self._started and all(
            r.status.up for r in self._checks.values() if r.status.critical
        )
        body: dict[str, Any] = {
            "status": "draining" if self._draining else ("ok" if healthy else "unhealthy"),
            "ready": self.ready,
            "dependencies": dependencies,
        }
        for name, info in self._infos.items():
            try:
                body[name] = info()
            except Exception as error:
                body[name] = {"error": str(error)}
        return healthy and not self._draining, body
