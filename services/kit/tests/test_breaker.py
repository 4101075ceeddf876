"""The async adapter around pybreaker's state machine (no network)."""

from __future__ import annotations

import asyncio
import time

import grpc
import pybreaker
import pytest
from prometheus_client import REGISTRY

from emporium.kit import errors
from emporium.kit.grpc.breaker import AsyncCircuitBreaker, BreakerOpen, BreakerRegistry

pytestmark = pytest.mark.unit


class Boom(Exception):
    pass


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


DOWN = FakeRpcError(grpc.StatusCode.UNAVAILABLE)


async def guarded(breaker: AsyncCircuitBreaker, work: asyncio.Future[None] | None = None) -> None:
    """What DownstreamClient does around one attempt."""
    admission = breaker.admit()
    try:
        if work is not None:
            await work
        else:
            await asyncio.sleep(0)
            raise Boom("async failure")
    except Exception as error:
        admission.failed(error)
        raise
    admission.succeeded()


def test_pybreaker_call_does_not_see_async_failures() -> None:
    """Why the adapter exists: pybreaker counts a coroutine function as a success."""
    breaker = pybreaker.CircuitBreaker(fail_max=1)

    async def failing() -> None:
        raise Boom

    for _ in range(3):
        coroutine = breaker.call(failing)
        coroutine.close()  # the failure would only happen when awaited, outside the breaker
    assert breaker.current_state == pybreaker.STATE_CLOSED
    assert breaker.fail_counter == 0


async def test_async_failures_count_and_open_the_breaker() -> None:
    breaker = AsyncCircuitBreaker("t-open", fail_max=3, reset_timeout=30)
    for expected in (1, 2):
        with pytest.raises(Boom):
            await guarded(breaker)
        assert breaker.fail_counter == expected
        assert breaker.state == "closed"
    with pytest.raises(Boom):  # the call that trips still reports its own error
        await guarded(breaker)
    assert breaker.state == "open"
    with pytest.raises(BreakerOpen):
        breaker.admit()
    assert REGISTRY.get_sample_value("emporium_breaker_state", {"downstream": "t-open"}) == 2
    transitions = REGISTRY.get_sample_value(
        "emporium_breaker_transitions_total", {"downstream": "t-open", "state": "open"}
    )
    assert transitions == 1


@pytest.mark.parametrize(
    "business_error",
    [
        errors.NotFound("no such product"),
        errors.InvalidArgument({"quantity": "must be positive"}),
        errors.FailedPrecondition("out of stock"),
        errors.AlreadyExists("order exists"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_business_errors_never_count(business_error: errors.ServiceError) -> None:
    breaker = AsyncCircuitBreaker(f"t-business-{type(business_error).__name__}", fail_max=2)
    for _ in range(5):
        breaker.admit().failed(business_error)
    assert breaker.state == "closed"
    assert breaker.fail_counter == 0


def test_a_business_answer_resets_the_failure_count() -> None:
    breaker = AsyncCircuitBreaker("t-reset", fail_max=3)
    breaker.admit().failed(Boom())
    breaker.admit().failed(Boom())
    breaker.admit().failed(errors.NotFound("x"))
    breaker.admit().failed(Boom())
    assert breaker.state == "closed"
    assert breaker.fail_counter == 1


async def test_concurrent_calls_are_not_serialized() -> None:
    breaker = AsyncCircuitBreaker("t-concurrent", fail_max=3)
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    calls = [asyncio.create_task(guarded(breaker, gate)) for _ in range(20)]
    await asyncio.sleep(0.01)
    # All 20 are admitted and waiting at the same time: none holds the breaker.
    assert not any(call.done() for call in calls)
    gate.set_result(None)
    await asyncio.gather(*calls)
    assert breaker.state == "closed"


async def test_half_open_admits_one_trial_and_closes_after_success() -> None:
    breaker = AsyncCircuitBreaker("t-half-open", fail_max=1, reset_timeout=0.05)
    breaker.admit().failed(Boom())
    assert breaker.state == "open"
    with pytest.raises(BreakerOpen, match="open"):
        breaker.admit()
    await asyncio.sleep(0.06)
    trial = breaker.admit()
    assert trial.trial
    assert breaker.state == "half-open"
    with pytest.raises(BreakerOpen, match="trial call in flight"):
        breaker.admit()
    trial.succeeded()
    assert breaker.state == "closed"
    breaker.admit().succeeded()


async def test_a_failed_trial_reopens_and_a_released_trial_frees_the_slot() -> None:
    breaker = AsyncCircuitBreaker("t-trial-fails", fail_max=1, reset_timeout=0.05)
    breaker.admit().failed(Boom())
    await asyncio.sleep(0.06)
    trial = breaker.admit()
    trial.release()  # e.g. the caller was cancelled: says nothing about the callee
    assert breaker.state == "half-open"
    breaker.admit().failed(Boom())
    assert breaker.state == "open"
    started = time.monotonic()
    with pytest.raises(BreakerOpen):
        breaker.admit()
    assert time.monotonic() - started < 0.01


def test_rpc_errors_with_business_codes_do_not_count() -> None:
    breaker = AsyncCircuitBreaker("t-rpc", fail_max=1)

    class FakeRpcError(grpc.RpcError):
        def __init__(self, code: grpc.StatusCode) -> None:
            self._code = code

        def code(self) -> grpc.StatusCode:
            return self._code

    breaker.admit().failed(FakeRpcError(grpc.StatusCode.NOT_FOUND))
    assert breaker.state == "closed"
    # Shedding load is an answer from a live callee, not a failure.
    breaker.admit().failed(FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED))
    assert breaker.state == "closed"
    breaker.admit().failed(FakeRpcError(grpc.StatusCode.UNAVAILABLE))
    assert breaker.state == "open"


def test_serving_closes_an_open_breaker_before_its_reset_timeout() -> None:
    breaker = AsyncCircuitBreaker("t-serving", fail_max=1, reset_timeout=60)
    assert breaker.downstream_serving() is False  # closed: nothing to do
    breaker.admit().failed(DOWN)
    assert breaker.state == "open"
    assert breaker.downstream_serving() is True
    assert breaker.state == "closed"
    assert breaker.fail_counter == 0
    breaker.admit().succeeded()


@pytest.mark.parametrize(
    "failure",
    [FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED), FakeRpcError(grpc.StatusCode.INTERNAL)],
)
def test_serving_says_nothing_about_a_hung_or_failing_handler(failure: Exception) -> None:
    """A downstream that hangs or errs while its health service says SERVING: timer only."""
    breaker = AsyncCircuitBreaker("t-serving-hung", fail_max=2, reset_timeout=60)
    breaker.admit().failed(DOWN)
    breaker.admit().failed(failure)  # the failure that opened it decides
    assert breaker.state == "open"
    assert breaker.downstream_serving() is False
    assert breaker.state == "open"


async def test_serving_does_not_override_a_trial_in_flight() -> None:
    breaker = AsyncCircuitBreaker("t-serving-trial", fail_max=1, reset_timeout=0.05)
    breaker.admit().failed(DOWN)
    await asyncio.sleep(0.06)
    trial = breaker.admit()
    assert breaker.downstream_serving() is False
    trial.succeeded()
    assert breaker.state == "closed"


async def test_serving_is_not_trusted_from_a_downstream_that_fails_its_calls() -> None:
    """SERVING, yet every call fails: the breaker falls back to its timer, no flapping."""
    breaker = AsyncCircuitBreaker("t-serving-flap", fail_max=1, reset_timeout=0.2)
    breaker.admit().failed(DOWN)
    assert breaker.downstream_serving() is True
    breaker.admit().failed(DOWN)  # opened again right after the health-driven close
    assert breaker.downstream_serving() is False
    assert breaker.state == "open"
    await asyncio.sleep(0.21)
    trial = breaker.admit()  # the ordinary trial after the reset timeout
    assert trial.trial
    trial.succeeded()
    assert breaker.state == "closed"
    # Recovered by a real call: SERVING is trusted again.
    breaker.admit().failed(DOWN)
    assert breaker.downstream_serving() is True


def test_registry_snapshot_for_healthz() -> None:
    registry = BreakerRegistry()
    breaker = registry.add(AsyncCircuitBreaker("t-registry", fail_max=1))
    breaker.admit().failed(Boom())
    snapshot = registry.snapshot()["t-registry"]
    assert snapshot["state"] == "open"
    assert snapshot["failures"] == 1
    assert snapshot["opened_at"] is not None
    with pytest.raises(ValueError, match="already registered"):
        registry.add(AsyncCircuitBreaker("t-registry"))
