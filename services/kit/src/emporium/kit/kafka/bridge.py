"""A thread per librdkafka client, so the event loop never waits on librdkafka.

librdkafka's calls that wait (a consumer's ``consume``, ``commit``, ``close``,
a metadata request) run one after the other on the client's own thread; the
coroutine that asked awaits a future the thread resolves. Calls that only
enqueue (``produce``, ``pause``, reading cached watermarks) stay on the loop.
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

    def close(self) -> None:
        """The thread ends after the calls already given."""
        self._calls.put(None)
