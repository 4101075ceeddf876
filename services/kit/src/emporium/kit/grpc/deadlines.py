"""The deadline of the current unit of work, carried in a context variable.

A unit of work is an HTTP request at the gateway or an RPC at a service. Its
absolute deadline (``time.monotonic()`` based) is set once at the edge:

* the HTTP gateway opens ``with deadline_scope(page_budget_s):`` per request;
* the gRPC server interceptor opens one from ``context.time_remaining()``, so a
  service inherits what is left of its caller's deadline.

Every outgoing call then asks :func:`effective_timeout` for its own timeout,
which is the smaller of the call's configured budget and the time left minus a
safety margin (the time the answer needs to travel back and be used). When
nothing is left it raises :class:`~emporium.kit.errors.DeadlineExceeded`, so no
work is started that nobody will wait for.

``asyncio`` copies context variables into every task it creates, so calls
made in parallel with ``asyncio.gather`` or a ``TaskGroup`` all see the
deadline of the request that started them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from emporium.kit.errors import DeadlineExceeded

#: Time kept aside for the answer to come back and be used (docs/configuration.md).
DEFAULT_MARGIN_SECONDS = 0.05

_deadline: ContextVar[float | None] = ContextVar("emporium_deadline", default=None)


@contextmanager
def deadline_scope(budget_seconds: float | None) -> Iterator[float | None]:
    """Runs the block under a deadline ``budget_seconds`` from now.

    A scope never extends an enclosing deadline: the effective deadline is the
    earlier of the two. ``None`` keeps the enclosing deadline (or none). Yields
    the absolute deadline (monotonic seconds) in force inside the block.
    """
    current = _deadline.get()
    if budget_seconds is None:
        new = current
    else:
        new = time.monotonic() + budget_seconds
        if current is not None:
            new = min(new, current)
    token = _deadline.set(new)
    try:
        yield new
    finally:
        _deadline.reset(token)


def enter(budget_seconds: float) -> Token[float | None]:
    """:func:`deadline_scope` without the context manager (a hot path); pair with :func:`leave`."""
    new = time.monotonic() + budget_seconds
    current = _deadline.get()
    if current is not None and current < new:
        new = current
    return _deadline.set(new)


def leave(token: Token[float | None]) -> None:
    """Ends the scope :func:`enter` began."""
    _deadline.reset(token)


def deadline() -> float | None:
    """The absolute deadline of the current unit of work (monotonic seconds), if any."""
    return _deadline.get()


def remaining() -> float | None:
    """Seconds left before the current deadline (may be negative), or None without one."""
    current = _deadline.get()
    return None if current is None else current - time.monotonic()


def expired() -> bool:
    left = remaining()
    return left is not None and left <= 0


def check(what: str = "work") -> None:
    """Raises DeadlineExceeded when the current deadline has passed."""
    left = remaining()
    if left is not None and left <= 0:
        raise DeadlineExceeded(f"deadline exceeded {-left * 1000:.0f} ms before {what} started")


def effective_timeout(
    budget_s: float, margin_s: float = DEFAULT_MARGIN_SECONDS, *, what: str = "call"
) -> float:
    """The timeout of one outgoing call: min(budget, time left - margin).

    Raises DeadlineExceeded when the caller's deadline leaves no time at all
    for the call (no work is started after the deadline).
    """
    left = remaining()
    if left is None:
        return budget_s
    available = left - margin_s
    if available <= 0:
        raise DeadlineExceeded(
            f"no time left for the {what}: {left * 1000:.0f} ms remaining, "
            f"{margin_s * 1000:.0f} ms margin"
        )
    return min(budget_s, available)
