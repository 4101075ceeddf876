"""The kit's one retry policy, on tenacity: jittered exponential backoff until a stop.

Every kit loop that waits for a dependency to come back uses it: work on the
database (:func:`emporium.kit.db.database_retry`), the outbox relay while
Kafka is down, the consumer's dead-letter publishing, and the consumer's
retries of a failing handler::

    async for attempt in retrying(KafkaUnavailable, initial=0.5, maximum=5.0, sleep=wait):
        with attempt:
            await producer.send(...)

The wait before retry ``n`` is drawn from ``[initial / 2, min(maximum,
initial * 2 ** (n - 1))]`` (tenacity's full jitter with a floor, so a retry
never comes at once). ``sleep`` lets a component cut a wait short when it
stops (and raise, to leave the loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_never,
    wait_random_exponential,
)

#: What a policy retries: exception types, or a predicate over the error.
RetryOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]


def backoff(initial: float, maximum: float) -> wait_random_exponential:
    """The policy's wait: about ``initial`` first, doubling up to ``maximum``, jittered."""
    return wait_random_exponential(multiplier=initial, max=maximum, min=initial / 2)


def retrying(
    retry_on: RetryOn,
    *,
    initial: float,
    maximum: float,
    stop: Any = stop_never,
    on_retry: Callable[[BaseException, float], None] | None = None,
    sleep: Callable[[float], Awaitable[Any]] | None = None,
) -> AsyncRetrying:
    """``async for attempt in retrying(...): with attempt: ...`` retries the block.

    It retries while the block raises what ``retry_on`` names (anything else
    goes straight to the caller, as does the last error when ``stop`` ends
    the retries); ``on_retry(error, wait)`` is told before each wait, and
    ``sleep`` (default :func:`asyncio.sleep`) waits.
    """
    predicate: Callable[[BaseException], bool]
    if isinstance(retry_on, type | tuple):
        types = retry_on

        def predicate(error: BaseException) -> bool:
            return isinstance(error, types)
    else:
        predicate = retry_on

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            error = state.outcome.exception()
            if error is not None:
                on_retry(error, state.next_action.sleep if state.next_action else 0.0)

    return AsyncRetrying(
        sleep=sleep or asyncio.sleep,
        retry=retry_if_exception(predicate),
        wait=backoff(initial, maximum),
        stop=stop,
        reraise=True,
        before_sleep=before_sleep,
    )


class Backoff:
    """The policy's waits for a loop that counts its attempts itself.

    The consumer's handler retries are such a loop: a failure while the
    database is down does not count towards the dead-letter topic, and the
    last counted failure dead-letters instead of raising. ``Backoff(0.2,
    5.0)(n)`` is the wait before retry ``n`` (1 is the first).
    """

    def __init__(self, initial: float, maximum: float) -> None:
        self._wait = backoff(initial, maximum)

    def __call__(self, attempt: int) -> float:
        state = RetryCallState(AsyncRetrying(), None, (), {})
        state.attempt_number = attempt
        return self._wait(state)
