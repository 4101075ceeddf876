"""The deadline arithmetic of one unit of work (no network)."""

from __future__ import annotations

import asyncio

import pytest

from emporium.kit.errors import DeadlineExceeded
from emporium.kit.grpc import deadlines

pytestmark = pytest.mark.unit


def test_without_a_deadline_the_budget_applies() -> None:
    assert deadlines.remaining() is None
    assert deadlines.effective_timeout(0.3) == 0.3


def test_the_budget_applies_when_the_caller_has_more_time() -> None:
    with deadlines.deadline_scope(2.0):
        assert deadlines.effective_timeout(0.3) == 0.3


def test_the_callers_remaining_time_minus_the_margin_applies_when_smaller() -> None:
    with deadlines.deadline_scope(0.2):
        timeout = deadlines.effective_timeout(0.3, margin_s=0.05)
        assert 0.14 < timeout <= 0.2 - 0.05


def test_no_call_is_started_when_nothing_is_left() -> None:
    with deadlines.deadline_scope(0.04), pytest.raises(DeadlineExceeded, match="no time left"):
        deadlines.effective_timeout(1.0)  # 40 ms left < 50 ms margin


def test_an_inner_scope_never_extends_the_outer_deadline() -> None:
    with deadlines.deadline_scope(0.1) as outer, deadlines.deadline_scope(5.0) as inner:
        assert inner == outer
        left = deadlines.remaining()
        assert left is not None
        assert left <= 0.1
    assert deadlines.remaining() is None


def test_check_raises_once_the_deadline_passed() -> None:
    with deadlines.deadline_scope(-0.01):
        assert deadlines.expired()
        with pytest.raises(DeadlineExceeded):
            deadlines.check("the handler")


async def test_parallel_tasks_inherit_the_deadline() -> None:
    async def seen() -> float | None:
        return deadlines.remaining()

    with deadlines.deadline_scope(0.5):
        left = await asyncio.gather(seen(), asyncio.create_task(seen()))
    assert all(value is not None and 0 < value <= 0.5 for value in left)
