"""The runtime every service is built on: one composition root, one drain order.

A service's ``main`` builds its settings, pools, clients and handlers, hands
them to a :class:`Service` and calls :func:`run`::

    def main() -> None:
        settings = load_settings(CatalogSettings)
        run_cli("catalog", serve=lambda: serve(settings), commands={"migrate": ...})

    async def serve(settings: CatalogSettings) -> None:
        service = Service("catalog", settings)
        database = await service.database(settings, MIGRATIONS_DIR)
        service.add_grpc_service(add_CatalogServiceServicer_to_server, servicer, SERVICE_NAME)
        producer = await service.producer(settings)
        service.add_consumer("order-status-consumer", settings, database, handlers, producer)
        await service.run()

On SIGTERM (or SIGINT) the service drains in this order: report unready
(``/readyz`` 503, gRPC health NOT_SERVING), stop accepting HTTP and gRPC work
while in-flight requests finish within the grace period, stop the background
components (consumers finish their message and commit offsets, the relay
finishes its batch), run the shutdown callbacks (pools, producers), flush
telemetry, and stop the admin server last.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, Protocol

import grpc
import uvloop
from starlette.types import ASGIApp

from emporium.kit.admin import EmbeddedServer, LoopHeartbeat, build_admin_app, http_server
from emporium.kit.config import DatabaseSettings, Downstream, KafkaSettings, ServiceSettings
from emporium.kit.db import Database, MigrationError, database_retry, migrate
from emporium.kit.grpc import BreakerRegistry, DownstreamClient, build_server, set_serving
from emporium.kit.health import HealthRegistry
from emporium.kit.kafka import EventProducer, Handler, IdempotentConsumer
from emporium.kit.logging import AccessLogSampler, configure_logging
from emporium.kit.telemetry import configure_tracing

log = logging.getLogger(__name__)


class PortTaken(Exception):
    """A port the service must listen on is held by another process."""


def _check_free(host: str, ports: Mapping[str, int]) -> None:
    """PortTaken when another process listens on one of ``ports`` (0: any free port)."""
    for variable, port in ports.items():
        if not port:
            continue
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                raise PortTaken(
                    f"{variable}={port}: cannot listen on {host}:{port} ({error.strerror})"
                ) from error


class Component(Protocol):
    """A long-running part of a service: a Kafka consumer, the outbox relay..."""

    async def run(self) -> None: ...

    async def stop(self) -> None: ...


class Service:
    def __init__(self, name: str, settings: ServiceSettings) -> None:
        self.name = name
        self.settings = settings
        configure_logging(name, settings.log_level, settings.environment)
        # Before anything connects or starts: a second copy of a service fails here.
        _check_free(
            settings.bind_host, {"GRPC_PORT": settings.grpc_port, "ADMIN_PORT": settings.admin_port}
        )
        #: Which successful requests get an access log line (gRPC and HTTP).
        self.access_log = AccessLogSampler.from_settings(settings)
        self.tracer_provider = configure_tracing(
            settings.otel_service_name or name,
            settings.environment,
            exporter=settings.otel_traces_exporter,
            endpoint=settings.otel_exporter_otlp_endpoint,
        )
        self.health = HealthRegistry(interval_seconds=settings.health_check_interval_seconds)
        self.breakers = BreakerRegistry()
        self.breakers.expose_on(self.health)
        self._grpc_services: list[tuple[Callable[[Any, grpc.aio.Server], None], Any, str]] = []
        self._http_apps: list[tuple[ASGIApp, int]] = []
        self._components: list[tuple[str, Component]] = []
        self._shutdown_callbacks: list[Callable[[], Awaitable[Any]]] = []
        self._stop = asyncio.Event()
        # Set once the database is migrated (at once when there is nothing to wait for);
        # the background components start after it.
        self._data_ready = asyncio.Event()
        self._data_ready.set()
        self._startup_tasks: list[Callable[[], Coroutine[Any, Any, None]]] = []

    def add_grpc_service(
        self, add_to_server: Callable[[Any, grpc.aio.Server], None], servicer: Any, name: str
    ) -> None:
        """Registers a servicer; ``name`` is its full name for health and reflection."""
        self._grpc_services.append((add_to_server, servicer, name))

    def client(self, downstream: Downstream, *, critical: bool) -> DownstreamClient:
        """A client for a downstream, with its breaker and health check registered.

        ``critical`` says whether this service can serve its critical path
        without that downstream (it decides ``/readyz``). The channel is closed
        on shutdown.
        """
        client = DownstreamClient(
            downstream,
            health=self.health,
            critical=critical,
            breakers=self.breakers,
            tracer_provider=self.tracer_provider,
        )
        self.on_shutdown(client.close)
        return client

    async def database(self, settings: DatabaseSettings, migrations_dir: Path) -> Database:
        """The service's database, opening in the background.

        It returns at once: the pool connects (and keeps reconnecting) in the
        background, so a service whose database is unreachable still starts,
        answers ``/livez`` and reports the database in ``/readyz``. When
        ``DATABASE_MIGRATE_ON_START`` is true the migrations run as soon as
        the database answers. The critical ``postgres`` health check fails
        until then, the background components (consumers, the relay) start
        only after that, and the pool is closed on shutdown.
        """
        database = Database.from_settings(settings, application_name=self.name)
        await database.open(wait=False)
        self.on_shutdown(database.close)
        pool_check = database.check()
        state: dict[str, str | None] = {"pending": None}

        async def check() -> str | None:
            # Through the pool first: a request is what makes a pool that gave
            # up a reconnection attempt try again.
            detail = await pool_check()
            if state["pending"] is not None:
                raise RuntimeError(state["pending"])
            return detail

        self.health.add_check("postgres", check, critical=True)
        if settings.database_migrate_on_start:
            state["pending"] = "migrations not applied yet"
            self._data_ready.clear()

            async def run_migrations() -> None:
                def waiting(error: BaseException, wait: float) -> None:
                    state["pending"] = f"migrations waiting for the database: {error}"
                    log.warning(
                        "database not reachable yet; migrations retry",
                        extra={"error": str(error), "retry_in_s": round(wait, 2)},
                    )

                try:
                    async for attempt in database_retry(maximum=5.0, on_retry=waiting):
                        with attempt:
                            await migrate(database, migrations_dir)
                except MigrationError as error:
                    state["pending"] = f"migrations failed: {error}"
                    log.error(
                        "migrations failed; the service stays unready",
                        extra={"error": str(error)},
                    )
                    return
                state["pending"] = None
                self._data_ready.set()

            self._startup_tasks.append(run_migrations)
        return database

    async def producer(self, settings: KafkaSettings) -> EventProducer:
        """A started Kafka producer with the service's name as client id, stopped on shutdown."""
        producer = EventProducer(settings, client_id=self.name)
        await producer.start()
        self.on_shutdown(producer.stop)
        return producer

    def add_consumer(
        self,
        name: str,
        settings: KafkaSettings,
        database: Database,
        handlers: Mapping[str, Handler],
        producer: EventProducer,
    ) -> None:
        """Runs an :class:`~emporium.kit.kafka.IdempotentConsumer` of ``handlers`` as a component.

        Its group is ``KAFKA_CONSUMER_GROUP``, else the service's name; it
        registers the non-critical ``kafka`` health check and dead-letters
        through ``producer``.
        """
        consumer = IdempotentConsumer(
            settings,
            database,
            handlers,
            producer,
            group_id=settings.kafka_consumer_group or self.name,
            health=self.health,
        )
        self.add_component(name, consumer)

    def add_http_app(self, app: ASGIApp, port: int) -> None:
        self._http_apps.append((app, port))

    def add_component(self, name: str, component: Component) -> None:
        self._components.append((name, component))

    def on_shutdown(self, callback: Callable[[], Awaitable[Any]]) -> None:
        """Runs after servers and components stopped, in reverse order of registration."""
        self._shutdown_callbacks.append(callback)

    def request_stop(self) -> None:
        self._stop.set()

    async def _run_shutdown_callbacks(self) -> None:
        for callback in reversed(self._shutdown_callbacks):
            try:
                await callback()
            except Exception:
                log.exception("shutdown callback failed")

    async def run(self) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)

        # Bound first: a port another process holds stops the start here, before
        # anything else runs (RuntimeError "Failed to bind").
        try:
            grpc_server, health_servicer = build_server(
                host=settings.bind_host,
                port=settings.grpc_port,
                servicers=[(add, servicer) for add, servicer, _ in self._grpc_services],
                service_names=[name for _, _, name in self._grpc_services],
                tracer_provider=self.tracer_provider,
                access_log=self.access_log,
                max_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
            )
        except RuntimeError as error:
            await self._run_shutdown_callbacks()  # the pools and clients built so far
            raise PortTaken(
                f"GRPC_PORT={settings.grpc_port}: cannot listen on "
                f"{settings.bind_host}:{settings.grpc_port} ({error})"
            ) from error
        heartbeat = LoopHeartbeat()
        admin = http_server(
            build_admin_app(self.name, self.health, heartbeat),
            settings.bind_host,
            settings.admin_port,
        )
        background: list[asyncio.Task[None]] = [
            asyncio.create_task(heartbeat.run(), name="loop-heartbeat"),
            asyncio.create_task(admin.serve(), name="admin-server"),
        ]
        service_names = [name for _, _, name in self._grpc_services]

        def follow_readiness(ready: bool) -> None:
            set_serving(health_servicer, service_names, ready)

        self.health.on_readiness_change(follow_readiness)
        await grpc_server.start()
        http_servers: list[EmbeddedServer] = []
        http_tasks: list[asyncio.Task[None]] = []
        for app, port in self._http_apps:
            server = http_server(app, settings.bind_host, port)
            http_servers.append(server)
            http_tasks.append(asyncio.create_task(server.serve(), name=f"http-{port}"))
        background.extend(http_tasks)
        background.append(asyncio.create_task(self.health.run(), name="health-checks"))
        background.extend(
            asyncio.create_task(task(), name=f"startup-{i}")
            for i, task in enumerate(self._startup_tasks)
        )
        component_tasks = {
            name: asyncio.create_task(self._supervise(name, component), name=name)
            for name, component in self._components
        }
        log.info(
            "service started",
            extra={
                "grpc_port": settings.grpc_port,
                "admin_port": settings.admin_port,
                "http_ports": [port for _, port in self._http_apps],
                "components": list(component_tasks),
            },
        )
        # What start-up built (modules, settings, stubs, servers: most of the
        # heap) lives as long as the process. Left in the collector's oldest
        # generation, every full collection walked it: 40-70 ms pauses of the
        # event loop every 10-20 s at 300 requests/s. Frozen, it is skipped.
        gc.collect()
        gc.freeze()

        await self._stop.wait()
        started = time.monotonic()
        grace = settings.shutdown_grace_seconds
        log.info("draining", extra={"grace_seconds": grace})
        self.health.start_draining()
        for server in http_servers:
            server.should_exit = True
        # Requests already running may finish within the grace period; new ones are refused.
        await grpc_server.stop(grace * 0.6)
        if http_tasks:
            # uvicorn finishes its in-flight requests before its serve() returns;
            # the clients and pools they use are closed only after that.
            left = grace * 0.6 - (time.monotonic() - started)
            await asyncio.wait(http_tasks, timeout=max(0.1, left))
        remaining = max(1.0, grace - (time.monotonic() - started))
        await self._stop_components(component_tasks, remaining)
        await self._run_shutdown_callbacks()
        self.tracer_provider.force_flush(timeout_millis=2000)
        self.tracer_provider.shutdown()
        admin.should_exit = True
        await asyncio.sleep(0.1)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        log.info("stopped", extra={"drain_seconds": round(time.monotonic() - started, 3)})

    async def _supervise(self, name: str, component: Component) -> None:
        """Runs a component (once the database is ready) and restarts it after a crash."""
        stop = asyncio.ensure_future(self._stop.wait())
        ready = asyncio.ensure_future(self._data_ready.wait())
        try:
            await asyncio.wait({stop, ready}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            ready.cancel()
        while not self._stop.is_set():
            try:
                await component.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("component crashed; restarting in 1s", extra={"component": name})
                await asyncio.sleep(1)

    async def _stop_components(self, tasks: dict[str, asyncio.Task[None]], budget: float) -> None:
        components = dict(self._components)

        async def stop_one(name: str) -> None:
            try:
                # stop() itself waits for the work in hand (a consumer's message,
                # the relay's batch), so the budget bounds it too.
                async with asyncio.timeout(budget):
                    await components[name].stop()
                    await asyncio.shield(tasks[name])
            except TimeoutError:
                log.error("component did not stop in time", extra={"component": name})
                tasks[name].cancel()
            except Exception:
                log.exception("component failed while stopping", extra={"component": name})

        await asyncio.gather(*(stop_one(name) for name in tasks))


def run_cli(
    name: str,
    serve: Callable[[], Coroutine[Any, Any, None]],
    commands: dict[str, Callable[[], Coroutine[Any, Any, Any]]] | None = None,
) -> None:
    """Entry point of a service's console script: no argument serves, else runs a command."""
    commands = commands or {}
    args = sys.argv[1:]
    if not args:
        try:
            uvloop.run(serve())
        except PortTaken as error:
            log.error("cannot start: a port is taken", extra={"error": str(error)})
            raise SystemExit(f"emporium-{name}: {error}") from None
        return
    command = commands.get(args[0])
    if command is None or len(args) > 1:
        usage = " | ".join(["(no argument: serve)", *commands])
        print(f"usage: emporium-{name} [{usage}]", file=sys.stderr)
        raise SystemExit(2)
    uvloop.run(command())
