"""The kit's retry policy (emporium.kit.retry), without servers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tenacity import AsyncRetrying

from emporium.kit.db import DatabaseUnavailable, database_retry
from emporium.kit.retry import Backoff, retrying

pytestmark = pytest.mark.unit


class Down(Exception):
    pass


class Stopped(Exception):
    pass


async def no_wait(seconds: float) -> None:
    pass


async def run(policy: AsyncRetrying, block: Callable[[], None]) -> None:
    async for attempt in policy:
        with attempt:
            block()


class Failing:
    """A block that raises the given errors, one per call, then succeeds."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


def test_waits_grow_from_the_initial_wait_and_are_capped() -> None:
    wait = Backoff(0.2, 5.0)
    for attempt in range(1, 12):
        for _ in range(50):
            assert 0.1 <= wait(attempt) <= min(5.0, 0.2 * 2 ** (attempt - 1))
    assert max(wait(12) for _ in range(200)) > 2.5


async def test_retries_what_it_names_and_tells_each_wait() -> None:
    told: list[tuple[str, float]] = []
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    block = Failing(Down("down 1"), Down("down 2"), Down("down 3"))
    policy = retrying(
        Down,
        initial=0.2,
        maximum=1.0,
        on_retry=lambda error, wait: told.append((str(error), wait)),
        sleep=sleep,
    )
    await run(policy, block)

    assert block.calls == 4
    assert [error for error, _ in told] == ["down 1", "down 2", "down 3"]
    assert slept == [wait for _, wait in told]
    assert all(0.1 <= wait <= 1.0 for wait in slept)


async def test_anything_else_reaches_the_caller_at_once() -> None:
    async def sleep(seconds: float) -> None:
        raise AssertionError("no wait expected")

    block = Failing(ValueError("bad input"))
    with pytest.raises(ValueError, match="bad input"):
        await run(retrying(Down, initial=0.2, maximum=1.0, sleep=sleep), block)
    assert block.calls == 1


async def test_a_sleep_that_raises_ends_the_retries() -> None:
    async def stopping(seconds: float) -> None:
        raise Stopped()

    block = Failing(Down(), Down())
    with pytest.raises(Stopped):
        await run(retrying(Down, initial=0.2, maximum=1.0, sleep=stopping), block)
    assert block.calls == 1


async def test_a_predicate_chooses_what_is_retried() -> None:
    block = Failing(Down("transient"), Down("transient"), Down("permanent"))
    policy = retrying(
        lambda error: "transient" in str(error), initial=0.01, maximum=0.01, sleep=no_wait
    )
    with pytest.raises(Down, match="permanent"):
        await run(policy, block)
    assert block.calls == 3


async def test_the_database_policy_retries_an_unavailable_database_only() -> None:
    block = Failing(DatabaseUnavailable("database unavailable: refused"))
    await run(database_retry(sleep=no_wait), block)
    assert block.calls == 2

    block = Failing(KeyError("not a database error"))
    with pytest.raises(KeyError):
        await run(database_retry(sleep=no_wait), block)
    assert block.calls == 1
