"""A client for one downstream service: deadline, breaker, bounded retries.

Every call made with :meth:`DownstreamClient.call`:

1. gets a timeout = min(the downstream's budget, the caller's remaining time
   minus a margin) from :mod:`emporium.kit.grpc.deadlines`, and is not
   started at all when nothing is left;
2. passes the downstream's circuit breaker (:mod:`.breaker`): an open breaker
   fails the call at once with ``Unavailable`` without touching the network;
3. is retried only when the caller says it is idempotent, at most
   ``MAX_RETRIES`` times, only on transient codes, with jittered backoff, and
   only while the overall deadline leaves time for another attempt;
4. maps the downstream's status back to the kit's errors, so a handler can
   let ``NotFound`` or ``InvalidArgument`` (with its field violations) flow
   to its own caller, and degrade on ``Unavailable``/``DeadlineExceeded``.

Overloaded is not down (docs/decisions/overload.md). A downstream that sheds
(RESOURCE_EXHAUSTED) is up: its refusals do not count against the breaker,
and its health check answering RESOURCE_EXHAUSTED reports it up and busy. A
health check that times out while real calls to the downstream keep getting
answers (within ``ANSWERED_RECENTLY_SECONDS``) does not mark it down either.
And a call that ran out of time while this process's own event loop was too
busy to notice (the deadline's expiry was handled more than
``CALLER_LAG_TOLERANCE_SECONDS`` late) says more about the caller than the
callee: it does not count against the breaker.

While the breaker is open the client probes the downstream's standard gRPC
health service every ``PROBE_INTERVAL_SECONDS``; when the breaker opened on
UNAVAILABLE, the first SERVING answer closes it
(:meth:`AsyncCircuitBreaker.downstream_serving`), so calls flow again within
about a probe interval of the downstream being ready, instead of after the
breaker's ``reset_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import pybreaker
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from emporium.kit import errors, metrics
from emporium.kit.config import Downstream
from emporium.kit.grpc import deadlines
from emporium.kit.grpc.breaker import (
    STATE_OPEN,
    AsyncCircuitBreaker,
    BreakerOpen,
    BreakerRegistry,
)
from emporium.kit.grpc.interceptors import split_method
from emporium.kit.health import HealthRegistry

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Extra attempts after the first one, for idempotent calls.
MAX_RETRIES = 2
#: Codes worth another attempt: the callee (or the way to it) was briefly unable to answer.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
#: First backoff; doubles per retry, with jitter (half fixed, half random).
BACKOFF_BASE_SECONDS = 0.025
#: A retry is not worth starting with less time than this left.
MIN_ATTEMPT_SECONDS = 0.01
#: Timeout of the background check of the downstream's gRPC health service.
HEALTH_CHECK_TIMEOUT_SECONDS = 0.5
#: How often an open breaker asks the downstream's health service whether it is back.
PROBE_INTERVAL_SECONDS = 0.25
#: A timed-out health check does not mark the downstream down while calls got answers this recently.
ANSWERED_RECENTLY_SECONDS = 3.0
#: A deadline expiry handled later than this after it passed means the caller's own
#: event loop was behind: the timeout does not count against the downstream's breaker.
CALLER_LAG_TOLERANCE_SECONDS = 0.1
#: Codes by which the downstream answered, even if with a refusal: it is up.
ANSWER_CODES = frozenset({*errors.BUSINESS_CODES, grpc.StatusCode.RESOURCE_EXHAUSTED})

#: Reconnect quickly after a downstream restarts (the gRPC default backs off to 120 s).
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    # At most 1 s between connection attempts, so a downstream that is back is
    # reached within about a second (the probe below needs a connection).
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    # Service-to-service traffic never goes through an HTTP proxy.
    ("grpc.enable_http_proxy", 0),
)


def violations_of(error: grpc.RpcError) -> list[errors.FieldViolation]:
    """Field violations from a google.rpc.BadRequest in the status details, if any."""
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:
        return []
    if status is None:
        return []
    found: list[errors.FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            found.extend(
                errors.FieldViolation(v.field, v.description) for v in bad_request.field_violations
            )
    return found


def map_rpc_error(error: grpc.RpcError, dependency: str) -> errors.ServiceError:
    """A downstream's status as the kit error the caller handles."""
    code = error.code()
    details = error.details() or code.name
    if code == grpc.StatusCode.NOT_FOUND:
        return errors.NotFound(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return errors.InvalidArgument(violations_of(error), message=details)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return errors.FailedPrecondition(details)
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return errors.AlreadyExists(details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.DeadlineExceeded(f"{dependency} timed out: {details}", dependency)
    # UNAVAILABLE, and every failure of the callee itself (INTERNAL, UNKNOWN...):
    # from the caller's side the dependency cannot serve this request.
    return errors.Unavailable(f"{dependency} unavailable ({code.name}): {details}", dependency)


class DownstreamClient:
    """The connection to one downstream service.

    ``channel`` is for building stubs; make calls through :meth:`call` so they
    get the deadline, breaker and retry rules::

        catalog = DownstreamClient(settings_downstream, health=health, critical=True,
                                   breakers=breakers)
        stub = CatalogServiceStub(catalog.channel)
        reply = await catalog.call(stub.GetProduct, GetProductRequest(product_id=pid),
                                   idempotent=True)

    With ``health`` the client registers a background check of the
    downstream's standard gRPC health service, named after the downstream and
    ``critical`` as told. With ``breakers`` its breaker is listed in /healthz.
    """

    def __init__(
        self,
        downstream: Downstream,
        *,
        health: HealthRegistry | None = None,
        critical: bool = False,
        breakers: BreakerRegistry | None = None,
        channel_options: Sequence[tuple[str, Any]] = DEFAULT_CHANNEL_OPTIONS,
        tracer_provider: Any = None,
        max_retries: int = MAX_RETRIES,
    ) -> None:
        self.downstream = downstream
        self.name = downstream.name
        self.budget_seconds = downstream.timeout_ms / 1000
        self.max_retries = max_retries
        # No channel interceptors: call() does the span and the attempt count itself.
        self.channel = grpc.aio.insecure_channel(downstream.addr, options=list(channel_options))
        self._tracer = trace.get_tracer("emporium.kit.grpc.client", tracer_provider=tracer_provider)
        self._attempt_counters: dict[tuple[str, str], Any] = {}
        self.breaker = AsyncCircuitBreaker(
            downstream.name,
            fail_max=downstream.breaker_fail_max,
            reset_timeout=downstream.breaker_reset_seconds,
            listeners=[_ProbeWhenOpen(self)],
        )
        self._probe: asyncio.Task[None] | None = None
        #: When a call last got an answer from the downstream (time.monotonic()).
        self.answered_at: float | None = None
        if breakers is not None:
            breakers.add(self.breaker)
        self._health_stub = health_pb2_grpc.HealthStub(self.channel)
        if health is not None:
            health.add_check(
                self.name, self.check_health, critical=critical, evidence=self.answering_calls
            )

    async def call(
        self,
        method: Callable[..., Awaitable[T]],
        request: Any,
        *,
        idempotent: bool = False,
        method_name: str | None = None,
        metadata: Sequence[tuple[str, str | bytes]] | None = None,
    ) -> T:
        """Calls ``method`` (a stub's multicallable) under the client's rules.

        Raises the kit's errors only: NotFound, InvalidArgument (with field
        violations), FailedPrecondition, AlreadyExists, Unavailable (down,
        breaker open, failing) or DeadlineExceeded (no time left or too slow).
        """
        name = method_name or _method_name(method)
        started = time.monotonic()
        code = "OK"
        try:
            try:
                timeout_s = deadlines.effective_timeout(
                    self.budget_seconds, what=f"{self.name} call"
                )
            except errors.DeadlineExceeded as error:
                unsent = errors.DeadlineExceeded(error.message, self.name)
                unsent.sent = False
                raise unsent from None
            return await self._attempts(method, request, name, idempotent, timeout_s, metadata)
        except errors.ServiceError as error:
            code = (
                "BREAKER_OPEN" if isinstance(error.__cause__, BreakerOpen) else error.grpc_code.name
            )
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        finally:
            metrics.RPC_CLIENT_REQUESTS.labels(self.name, name, code).inc()
            metrics.RPC_CLIENT_DURATION.labels(self.name, name).observe(time.monotonic() - started)

    async def _attempts(
        self,
        method: Callable[..., Awaitable[T]],
        request: Any,
        name: str,
        idempotent: bool,
        timeout_s: float,
        metadata: Sequence[tuple[str, str | bytes]] | None,
    ) -> T:
        deadline_at = time.monotonic() + timeout_s
        full_method = _full_method(method, name)
        # A timeout cut short by the caller's own deadline says nothing about
        # the callee: running out of it does not count against the breaker.
        caller_limited = timeout_s < self.budget_seconds
        retries = self.max_retries if idempotent else 0
        attempt = 0
        while True:
            attempt += 1
            left = deadline_at - time.monotonic()
            try:
                admission = self.breaker.admit()
            except BreakerOpen as open_error:
                refused = errors.Unavailable(f"{self.name} unavailable: {open_error}", self.name)
                refused.sent = attempt > 1  # unless an earlier attempt went out
                raise refused from open_error
            try:
                response = await self._attempt(method, full_method, request, left, metadata)
            except grpc.RpcError as rpc_error:
                code = rpc_error.code()
                if code in ANSWER_CODES:
                    self.answered_at = time.monotonic()
                if code == grpc.StatusCode.CANCELLED or (
                    code == grpc.StatusCode.DEADLINE_EXCEEDED
                    and (
                        caller_limited
                        or time.monotonic() - deadline_at > CALLER_LAG_TOLERANCE_SECONDS
                    )
                ):
                    admission.release()
                else:
                    admission.failed(rpc_error)
                delay = _backoff(attempt)
                if (
                    attempt <= retries
                    and code in RETRYABLE_CODES
                    and deadline_at - time.monotonic() - delay >= MIN_ATTEMPT_SECONDS
                ):
                    log.info(
                        "retrying downstream call",
                        extra={
                            "downstream": self.name,
                            "rpc_method": name,
                            "code": code.name,
                            "attempt": attempt,
                            "backoff_ms": round(delay * 1000, 1),
                        },
                    )
                    await asyncio.sleep(delay)
                    continue
                raise map_rpc_error(rpc_error, self.name) from rpc_error
            except BaseException:
                admission.release()
                raise
            self.answered_at = time.monotonic()
            admission.succeeded()
            return response

    async def _attempt(
        self,
        method: Callable[..., Awaitable[T]],
        full_method: tuple[str, str, str],
        request: Any,
        seconds: float,
        metadata: Sequence[tuple[str, str | bytes]] | None,
    ) -> T:
        """One attempt on the wire: its CLIENT span, trace context in its metadata, its count.

        The span has the name and attributes of OpenTelemetry's gRPC client
        instrumentation (``/pkg.Service/Method``, ``rpc.system``,
        ``rpc.service``, ``rpc.method``, ``rpc.grpc.status_code``; error status
        and the exception on failure); started here with the OpenTelemetry API
        instead of through channel interceptors, which cost more than the rest
        of the call's Python work (docs/decisions/overload.md).
        """
        path, service, rpc_method = full_method
        with self._tracer.start_as_current_span(
            path,
            kind=SpanKind.CLIENT,
            attributes={
                "rpc.system": "grpc",
                "rpc.grpc.status_code": 0,
                "rpc.method": rpc_method,
                "rpc.service": service,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            sent = [*metadata, *carrier.items()] if metadata else list(carrier.items())
            try:
                response = await method(request, timeout=seconds, metadata=sent)
            except grpc.RpcError as error:
                code = error.code()
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                span.set_status(Status(StatusCode.ERROR, f"{code.name}: {error.details()}"))
                span.record_exception(error)
                self._attempt_counter(rpc_method, code.name).inc()
                raise
            except asyncio.CancelledError:
                self._attempt_counter(rpc_method, "CANCELLED").inc()
                raise
            self._attempt_counter(rpc_method, "OK").inc()
            return response

    def _attempt_counter(self, rpc_method: str, code: str) -> Any:
        key = (rpc_method, code)
        counter = self._attempt_counters.get(key)
        if counter is None:
            counter = self._attempt_counters[key] = metrics.RPC_CLIENT_ATTEMPTS.labels(
                self.name, rpc_method, code
            )
        return counter

    async def check_health(self) -> str:
        """Background check: the downstream's grpc.health.v1.Health/Check."""
        try:
            reply = await self._health_stub.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=HEALTH_CHECK_TIMEOUT_SECONDS
            )
        except grpc.RpcError as error:
            code = error.code()
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                # It answered: up and full (its concurrency limit counts this check too).
                return f"busy: check refused (RESOURCE_EXHAUSTED), breaker {self.breaker.state}"
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise TimeoutError("no answer within the health check's deadline") from None
            # One line for /healthz instead of the multi-line debug string.
            raise ConnectionError(f"{code.name}: {error.details()}") from None
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError(f"{self.name} reports {status}")
        self.breaker.downstream_serving()
        return f"{status}, breaker {self.breaker.state}"

    def answering_calls(self, error: BaseException) -> str | None:
        """Evidence for a timed-out health check: real calls got answers just now."""
        if not isinstance(error, TimeoutError) or self.answered_at is None:
            return None
        age = time.monotonic() - self.answered_at
        if age > ANSWERED_RECENTLY_SECONDS:
            return None
        return (
            f"busy: the health check timed out, calls were answered {age:.1f}s ago, "
            f"breaker {self.breaker.state}"
        )

    def _start_probe(self) -> None:
        if self._probe is not None and not self._probe.done():
            return
        try:
            self._probe = asyncio.get_running_loop().create_task(
                self._probe_until_closed(), name=f"breaker-probe-{self.name}"
            )
        except RuntimeError:  # no event loop (the breaker was driven synchronously)
            self._probe = None

    async def _probe_until_closed(self) -> None:
        """Asks the downstream's health service whether it is back, while the breaker is open."""
        while self.breaker.is_open:
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)
            try:
                reply = await self._health_stub.Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=PROBE_INTERVAL_SECONDS
                )
            except grpc.RpcError:
                continue
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                self.breaker.downstream_serving()

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        await self.channel.close(grace=None)


class _ProbeWhenOpen(pybreaker.CircuitBreakerListener):
    """Starts the client's health probe when its breaker opens."""

    def __init__(self, client: DownstreamClient) -> None:
        self._client = client

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        if new_state.name == STATE_OPEN:
            self._client._start_probe()


def _backoff(attempt: int) -> float:
    """Jittered exponential backoff before retry number ``attempt``."""
    ceiling = BACKOFF_BASE_SECONDS * (2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _full_method(method: Any, name: str) -> tuple[str, str, str]:
    """('/pkg.Service/Method', 'pkg.Service', 'Method') of a stub's multicallable."""
    raw = getattr(method, "_method", None)
    if raw is None:
        return f"/unknown/{name}", "unknown", name
    path = raw.decode() if isinstance(raw, bytes) else str(raw)
    service, rpc_method = split_method(path)
    return path, service, rpc_method


def _method_name(method: Any) -> str:
    raw = getattr(method, "_method", None)
    if raw is None:
        return getattr(method, "__name__", "unknown")
    return split_method(raw)[1]
