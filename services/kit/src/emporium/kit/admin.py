"""The admin HTTP server: /livez, /readyz, /healthz and /metrics.

It runs on its own port inside the service's event loop, so /livez answering
at all proves the loop is responsive; a heartbeat task additionally catches a
loop that is alive but stalled for seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from emporium.kit.health import HealthRegistry

#: /livez fails when the event loop has not run the heartbeat for this long.
MAX_LOOP_STALL_SECONDS = 10.0


class LoopHeartbeat:
    def __init__(self, period_seconds: float = 0.5) -> None:
        self.period_seconds = period_seconds
        self.last_beat = time.monotonic()

    async def run(self) -> None:
        while True:
            self.last_beat = time.monotonic()
            await asyncio.sleep(self.period_seconds)

    def stalled_for(self) -> float:
        return time.monotonic() - self.last_beat


def build_admin_app(service: str, health: HealthRegistry, heartbeat: LoopHeartbeat) -> Starlette:
    async def livez(_: Request) -> Response:
        stalled = heartbeat.stalled_for()
        if stalled > MAX_LOOP_STALL_SECONDS:
            return PlainTextResponse(f"event loop stalled for {stalled:.1f}s\n", status_code=503)
        return PlainTextResponse("ok\n")

    async def readyz(_: Request) -> Response:
        if health.ready:
            return PlainTextResponse("ready\n")
        # Names what is missing (e.g. "postgres down: ..."), for whoever looks first.
        reasons = "; ".join(health.unready_reasons())
        return PlainTextResponse(f"not ready: {reasons}\n", status_code=503)

    async def healthz(_: Request) -> Response:
        healthy, body = health.report()
        body = {"service": service, **body}
        return JSONResponse(body, status_code=200 if healthy else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/livez", livez),
            Route("/readyz", readyz),
            Route("/healthz", healthz),
            Route("/metrics", metrics),
        ]
    )


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server run as a task of the service's loop.

    The service owns SIGTERM handling and the drain order, so uvicorn must not
    capture signals; stop it with ``should_exit = True``.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def http_server(app: ASGIApp, host: str, port: int) -> EmbeddedServer:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
    )
    return EmbeddedServer(config)
