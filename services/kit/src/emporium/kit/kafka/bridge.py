"""A thread per librdkafka client, so the event loop never waits on librdkafka.

librdkafka's calls that wait (a consumer's ``consume``, ``commit``, ``close``,
a metadata request) run one after the other on the client's own thread; the
coroutine that asked awaits a future the thread resolves.

A consumer is touched from its thread only, even for calls that return at
once (cached watermarks): confluent-kafka lets one thread at a time into a
``Consumer`` and makes any other caller wait until the current call returns,
so a call from the loop while ``consume`` or a metadata request runs on the
thread would stop the loop for as long (seconds while Kafka is down). A
producer's ``produce`` only enqueues and stays on the loop.

Health checks go through :meth:`ClientThread.probe`: at most one in flight per
client, shared by every caller, so checks that time out while Kafka is down do
not pile up threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return  # the caller gave up (a timeout, a cancellation)
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    """Marks a probe's error retrieved: the callers that waited for it got it or gave up."""
    if not future.cancelled():
        future.exception()


class ClientThread:
    """One daemon thread running the calls it is given, in order.

    A call the caller stopped waiting for (``asyncio.wait_for``) still runs to
    its end; its result is dropped. The thread is a daemon, so a client stuck
    in librdkafka never holds the process's exit.
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        self._probe: asyncio.Future[Any] | None = None

    def _serve(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            function, args, kwargs, loop, future = item
            try:
                result, error = function(*args, **kwargs), None
            except BaseException as raised:  # handed to the caller
                result, error = None, raised
            # RuntimeError: the loop is closed, nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, result, error)

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((function, args, kwargs, loop, future))
        return await future

    async def probe(self, wait_seconds: float, function: Callable[..., T], *args: Any) -> T:
        """``call``, single-flight: a probe still running is awaited, not repeated.

        Waits ``wait_seconds`` at most (TimeoutError); the probe itself runs
        to its end on the thread, and the next caller after that starts a new one.
        """
        probe = self._probe
        if probe is None or probe.done():
            probe = self._probe = asyncio.ensure_future(self.call(function, *args))
            probe.add_done_callback(_consume_outcome)
        return await asyncio.wait_for(asyncio.shield(probe), wait_seconds)

    def close(self) -> None:
        """The thread ends after the calls already given."""
        self._calls.put(None)
