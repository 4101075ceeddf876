"""The service runtime as a real process: probes, gRPC health, and the SIGTERM drain."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from emporium.testing.pytest_plugin import free_port

pytestmark = pytest.mark.unit

PROGRAM = textwrap.dedent(
    """
    import asyncio
    from pathlib import Path

    from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc
    from emporium.kit.config import ServiceSettings, load_settings
    from emporium.kit.service import Service, run_cli

    FLAG = Path({flag!r})


    class SlowCatalog(catalog_pb2_grpc.CatalogServiceServicer):
        async def GetProduct(self, request, context):
            await asyncio.sleep(1.0)
            return catalog_pb2.GetProductResponse(
                product=catalog_pb2.Product(product_id=request.product_id)
            )


    class Consumer:
        def __init__(self):
            self.stopping = asyncio.Event()

        async def run(self):
            await self.stopping.wait()

        async def stop(self):
            await asyncio.sleep(0.2)  # finish the message in hand
            self.stopping.set()


    async def dependency():
        if FLAG.exists():
            raise ConnectionError("dependency is down")
        return "ok"


    async def serve():
        service = Service("example", load_settings(ServiceSettings))
        service.health.add_check("dependency", dependency, critical=True)
        service.add_grpc_service(
            catalog_pb2_grpc.add_CatalogServiceServicer_to_server,
            SlowCatalog(),
            "emporium.catalog.v1.CatalogService",
        )
        service.add_component("consumer", Consumer())
        await service.run()


    run_cli("example", serve)
    """
)


def wait_for(url: str, status: int, timeout: float = 20) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if httpx.get(url, timeout=1).status_code == status:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered {status}")


async def test_probes_health_and_graceful_drain(tmp_path: Path) -> None:
    grpc_port, admin_port = free_port(), free_port()
    flag = tmp_path / "down"
    script = tmp_path / "service.py"
    script.write_text(PROGRAM.format(flag=str(flag)))
    env = {
        **os.environ,
        "GRPC_PORT": str(grpc_port),
        "ADMIN_PORT": str(admin_port),
        "BIND_HOST": "127.0.0.1",
        "SHUTDOWN_GRACE_SECONDS": "5",
        "HEALTH_CHECK_INTERVAL_SECONDS": "0.2",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), env=env, stdout=asyncio.subprocess.PIPE
    )
    admin = f"http://127.0.0.1:{admin_port}"
    http = httpx.AsyncClient(timeout=2)
    try:
        await asyncio.to_thread(wait_for, f"{admin}/readyz", 200)
        assert (await http.get(f"{admin}/livez")).status_code == 200
        health = (await http.get(f"{admin}/healthz")).json()
        assert health["service"] == "example"
        assert health["dependencies"]["dependency"]["status"] == "up"
        assert "emporium_ready 1.0" in (await http.get(f"{admin}/metrics")).text

        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            health_stub = health_pb2_grpc.HealthStub(channel)
            check = await health_stub.Check(health_pb2.HealthCheckRequest(service=""))
            assert check.status == health_pb2.HealthCheckResponse.SERVING

            # A critical dependency going down turns /readyz and gRPC health off ...
            flag.touch()
            took = await asyncio.to_thread(wait_for, f"{admin}/readyz", 503)
            assert took < 5
            assert (await http.get(f"{admin}/healthz")).status_code == 503
            assert (await http.get(f"{admin}/livez")).status_code == 200  # liveness ignores deps
            check = await health_stub.Check(health_pb2.HealthCheckRequest(service=""))
            assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
            # ... and back on after it recovers.
            flag.unlink()
            took = await asyncio.to_thread(wait_for, f"{admin}/readyz", 200)
            assert took < 5

            # SIGTERM during a request: the request finishes, then the process exits 0.
            stub = catalog_pb2_grpc.CatalogServiceStub(channel)
            in_flight = asyncio.ensure_future(
                stub.GetProduct(catalog_pb2.GetProductRequest(product_id="p-1"), timeout=5)
            )
            await asyncio.sleep(0.3)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            reply = await in_flight
            assert reply.product.product_id == "p-1"
            code = await asyncio.wait_for(process.wait(), 10)
            assert code == 0
            assert time.monotonic() - started < 5
    finally:
        await http.aclose()
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stdout is not None
    log = (await process.stdout.read()).decode()
    assert '"message": "draining"' in log
    assert '"message": "stopped"' in log


HTTP_PROGRAM = textwrap.dedent(
    """
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from emporium.kit.config import ServiceSettings, load_settings
    from emporium.kit.service import Service, run_cli


    async def slow(request):
        await asyncio.sleep(1.0)
        return PlainTextResponse("finished")


    async def serve():
        service = Service("edge", load_settings(ServiceSettings))
        service.add_http_app(Starlette(routes=[Route("/slow", slow)]), {http_port})
        await service.run()


    run_cli("edge", serve)
    """
)


async def test_sigterm_lets_http_requests_in_flight_finish(tmp_path: Path) -> None:
    grpc_port, admin_port, http_port = free_port(), free_port(), free_port()
    script = tmp_path / "edge.py"
    script.write_text(HTTP_PROGRAM.format(http_port=http_port))
    env = {
        **os.environ,
        "GRPC_PORT": str(grpc_port),
        "ADMIN_PORT": str(admin_port),
        "BIND_HOST": "127.0.0.1",
        "SHUTDOWN_GRACE_SECONDS": "5",
        "HEALTH_CHECK_INTERVAL_SECONDS": "0.2",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), env=env, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        await asyncio.to_thread(wait_for, f"http://127.0.0.1:{admin_port}/readyz", 200)
        async with httpx.AsyncClient(timeout=5) as http:
            in_flight = asyncio.ensure_future(http.get(f"http://127.0.0.1:{http_port}/slow"))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            # The request that was running when SIGTERM came gets its answer ...
            response = await in_flight
            assert response.status_code == 200
            assert response.text == "finished"
        # ... and the process still exits cleanly within the grace period.
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert time.monotonic() - started < 5
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_a_service_runs_on_uvloop(tmp_path: Path) -> None:
    script = tmp_path / "loop.py"
    script.write_text(
        "import asyncio\n"
        "from emporium.kit.service import run_cli\n"
        "async def serve():\n"
        "    loop = type(asyncio.get_running_loop())\n"
        "    print(f'{loop.__module__}.{loop.__qualname__}')\n"
        "run_cli('loop', serve)\n"
    )
    ran = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    assert ran.stdout.strip() == "uvloop.Loop"


async def test_async_tests_run_on_the_services_loop() -> None:
    loop = asyncio.get_running_loop()
    assert f"{type(loop).__module__}.{type(loop).__qualname__}" == "uvloop.Loop"
