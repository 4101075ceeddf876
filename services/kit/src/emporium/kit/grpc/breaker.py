"""pybreaker circuit breakers driven around ``await``, one per downstream.

Why not ``breaker.call(coroutine_function)``: pybreaker 1.4 holds the
breaker's ``threading.RLock`` for the whole guarded call and does not await
what the function returns. A coroutine function "succeeds" the moment it
returns its coroutine object (so an async failure never counts), and every
call would be serialized behind the lock if it did await.

:class:`AsyncCircuitBreaker` keeps pybreaker's state machine, storage,
listeners and ``exclude`` rules, and splits a call in three short steps, each
under the breaker's lock for bookkeeping only, never across an ``await``:

1. :meth:`AsyncCircuitBreaker.admit` checks the state. Closed admits; open
   raises :class:`BreakerOpen` until ``reset_timeout`` has elapsed, then moves
   to half-open; half-open admits exactly one trial call at a time and rejects
   the others while it is in flight.
2. The caller awaits the RPC with no lock held, so concurrent calls run
   concurrently.
3. :meth:`Admission.succeeded` / :meth:`Admission.failed` record the outcome
   through the current pybreaker state object's ``_handle_success`` and
   ``_handle_error`` (the same code ``CircuitBreaker.call`` runs), so failure
   counting, ``exclude`` (business errors count as answers, not failures),
   opening, closing after a successful trial and listener notifications are
   pybreaker's own. :meth:`Admission.release` records nothing (the caller gave
   up, or its own deadline cut the call short).

Recovery follows the downstream's readiness, not only the clock: when the
breaker opened because the downstream was unavailable (its last counted
failure was UNAVAILABLE: down, restarting, not ready) and the downstream's
own gRPC health service then answers SERVING over the same channel
(:meth:`AsyncCircuitBreaker.downstream_serving`, called by the client's
probe), the breaker closes at once instead of waiting out ``reset_timeout``.
That answer is a successful call to the downstream that contradicts exactly
what the failures said, without making a customer's request the trial.
SERVING says nothing about a downstream that hangs or errs in its handlers
(DEADLINE_EXCEEDED, INTERNAL...): those breakers keep the timer. And a
downstream that reports SERVING yet fails its calls would flap the breaker;
so when a breaker opens again within ``reset_timeout`` of a health-driven
close, SERVING is not trusted again until the breaker has recovered by the
ordinary trial call.

The only pybreaker internals used are ``_lock``, ``_state_storage.opened_at``
and the state objects' ``_handle_success``/``_handle_error``; they are the same
in 1.0 through 1.4.1 and covered by services/kit/tests/test_breaker.py.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pybreaker

from emporium.kit import metrics
from emporium.kit.errors import BUSINESS_CODES, ServiceError

log = logging.getLogger(__name__)

STATE_CLOSED = pybreaker.STATE_CLOSED
STATE_OPEN = pybreaker.STATE_OPEN
STATE_HALF_OPEN = pybreaker.STATE_HALF_OPEN

#: Values of the emporium_breaker_state gauge.
STATE_GAUGE = {STATE_CLOSED: 0, STATE_HALF_OPEN: 1, STATE_OPEN: 2}


class BreakerOpen(pybreaker.CircuitBreakerError):
    """The breaker refused the call without trying it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def is_business_error(error: BaseException) -> bool:
    """True when the callee answered with a refusal: an answer, not a failure."""
    if isinstance(error, ServiceError):
        return error.business
    if isinstance(error, grpc.RpcError):
        code = error.code()
        return code in BUSINESS_CODES
    return False


def is_overload(error: BaseException) -> bool:
    """True when the callee shed the call (RESOURCE_EXHAUSTED): it is up, just full.

    Not a failure for the breaker: opening it would turn a partial overload,
    where most calls still succeed, into a full outage for ``reset_timeout``.
    The caller still gets Unavailable for this one call (and no retry, which
    would add load).
    """
    return isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def is_unavailable(error: BaseException) -> bool:
    """UNAVAILABLE: the downstream could not be reached or said it cannot serve now."""
    if isinstance(error, grpc.RpcError):
        return error.code() == grpc.StatusCode.UNAVAILABLE
    if isinstance(error, ServiceError):
        return error.grpc_code == grpc.StatusCode.UNAVAILABLE
    return False


class _MetricsListener(pybreaker.CircuitBreakerListener):
    """Mirrors state changes in emporium_breaker_state and _transitions_total."""

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        name = cb.name or "unnamed"
        metrics.BREAKER_STATE.labels(name).set(STATE_GAUGE[new_state.name])
        metrics.BREAKER_TRANSITIONS.labels(name, new_state.name).inc()
        old = old_state.name if old_state is not None else None
        level = logging.WARNING if new_state.name == STATE_OPEN else logging.INFO
        log.log(
            level,
            "circuit breaker state changed",
            extra={"downstream": name, "from_state": old, "to_state": new_state.name},
        )


class AsyncCircuitBreaker:
    """One downstream's breaker, safe to use from many concurrent coroutines."""

    def __init__(
        self,
        name: str,
        *,
        fail_max: int = 5,
        reset_timeout: float = 10.0,
        exclude: Iterable[type[BaseException] | Callable[[Any], bool]] = (
            is_business_error,
            is_overload,
        ),
        listeners: Iterable[pybreaker.CircuitBreakerListener] = (),
    ) -> None:
        self.name = name
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            exclude=list(exclude),
            listeners=[_MetricsListener(), *listeners],
            name=name,
        )
        self._trial_in_flight = False
        #: When SERVING last closed the breaker, and whether SERVING is trusted now.
        self._health_closed_at: datetime | None = None
        self._trust_serving = True
        #: Whether the last failure counted was UNAVAILABLE (what SERVING can contradict).
        self._last_failure_unavailable = False
        self._lock: threading.RLock = self.breaker._lock
        metrics.BREAKER_STATE.labels(name).set(STATE_GAUGE[STATE_CLOSED])

    @property
    def state(self) -> str:
        """closed, open or half-open (pybreaker's names)."""
        return str(self.breaker.current_state)

    @property
    def fail_counter(self) -> int:
        return int(self.breaker.fail_counter)

    def admit(self) -> Admission:
        """Admits one call or raises BreakerOpen; never blocks beyond bookkeeping."""
        cb = self.breaker
        with self._lock:
            state = cb.state
            if state.name == STATE_OPEN:
                opened_at = cb._state_storage.opened_at
                retry_at = opened_at + timedelta(seconds=cb.reset_timeout) if opened_at else None
                now = datetime.now(UTC)
                if retry_at is not None and now < retry_at:
                    left = (retry_at - now).total_seconds()
                    raise BreakerOpen(self.name, f"circuit breaker open (trial in {left:.1f}s)")
                cb.half_open()
                state = cb.state
            trial = state.name == STATE_HALF_OPEN
            if trial:
                if self._trial_in_flight:
                    raise BreakerOpen(self.name, "circuit breaker half-open, trial call in flight")
                self._trial_in_flight = True
            return Admission(self, trial)

    @property
    def is_open(self) -> bool:
        return self.state == STATE_OPEN

    def downstream_serving(self) -> bool:
        """The downstream's health service answered SERVING: close an open breaker.

        Returns True when this closed the breaker. Ignored when the failures
        were not UNAVAILABLE (a hung or failing handler: SERVING says nothing
        about it), while a trial call is in flight (the trial decides), and
        after a health-driven close was followed by a prompt re-opening (the
        downstream says SERVING but fails its calls) until an ordinary trial
        call closes the breaker again.
        """
        cb = self.breaker
        with self._lock:
            if (
                cb.state.name == STATE_CLOSED
                or self._trial_in_flight
                or not self._last_failure_unavailable
            ):
                return False
            opened_at = cb._state_storage.opened_at
            if (
                self._health_closed_at is not None
                and opened_at is not None
                and (opened_at - self._health_closed_at).total_seconds() < cb.reset_timeout
            ):
                self._trust_serving = False
            if not self._trust_serving:
                return False
            self._health_closed_at = datetime.now(UTC)
            log.info(
                "circuit breaker closed: downstream reports SERVING",
                extra={"downstream": self.name},
            )
            cb.close()
            return True

    def _record(self, admission: Admission, error: BaseException | None) -> None:
        with self._lock:
            if admission.trial:
                self._trial_in_flight = False
            state = self.breaker.state
            if error is None:
                if admission.trial:
                    # An ordinary trial closed it: SERVING may be trusted again.
                    self._trust_serving = True
                    self._health_closed_at = None
                state._handle_success()
                return
            if self.breaker.is_system_error(error):  # counted: not excluded as an answer
                self._last_failure_unavailable = is_unavailable(error)
            # pybreaker signals "this failure opened the breaker" by raising
            # CircuitBreakerError; the caller still gets the call's own error.
            with contextlib.suppress(pybreaker.CircuitBreakerError):
                state._handle_error(error, reraise=False)

    def _release(self, admission: Admission) -> None:
        if admission.trial:
            with self._lock:
                self._trial_in_flight = False

    def snapshot(self) -> dict[str, Any]:
        """What /healthz shows for this breaker."""
        opened_at = self.breaker._state_storage.opened_at
        if self.state == STATE_CLOSED:
            opened_at = None
        return {
            "state": self.state,
            "failures": self.fail_counter,
            "fail_max": self.breaker.fail_max,
            "reset_timeout_seconds": self.breaker.reset_timeout,
            "opened_at": opened_at.isoformat()
            if self.state != STATE_CLOSED and opened_at
            else None,
        }


@dataclass
class Admission:
    """One admitted call; exactly one of its methods must be called once."""

    breaker: AsyncCircuitBreaker
    trial: bool
    _done: bool = False

    def succeeded(self) -> None:
        self._finish(None)

    def failed(self, error: BaseException) -> None:
        """Records a failure, unless pybreaker's ``exclude`` rules call it an answer."""
        self._finish(error)

    def release(self) -> None:
        """Records nothing: the call says nothing about the callee's health."""
        if not self._done:
            self._done = True
            self.breaker._release(self)

    def _finish(self, error: BaseException | None) -> None:
        if not self._done:
            self._done = True
            self.breaker._record(self, error)


class BreakerRegistry:
    """The breakers of one process, for /healthz.

    Create one in the service's composition root, expose it with
    ``health.add_info("breakers", registry.snapshot)`` (or
    :meth:`expose_on`) and pass it to every DownstreamClient.
    """

    def __init__(self) -> None:
        self._breakers: dict[str, AsyncCircuitBreaker] = {}

    def add(self, breaker: AsyncCircuitBreaker) -> AsyncCircuitBreaker:
        if breaker.name in self._breakers:
            raise ValueError(f"a breaker named {breaker.name!r} is already registered")
        self._breakers[breaker.name] = breaker
        return breaker

    def get(self, name: str) -> AsyncCircuitBreaker:
        return self._breakers[name]

    def __iter__(self) -> Any:
        return iter(self._breakers.values())

    def snapshot(self) -> dict[str, Any]:
        return {name: breaker.snapshot() for name, breaker in self._breakers.items()}

    def expose_on(self, health: Any) -> None:
        """Adds the breakers to /healthz under "breakers"."""
        health.add_info("breakers", self.snapshot)
