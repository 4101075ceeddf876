"""Composition root of the orders service: settings, database, clients, handlers, runtime."""

from __future__ import annotations

from pathlib import Path

from emporium.kit.config import downstream, load_settings
from emporium.kit.db import migrate_command
from emporium.kit.outbox import OutboxRelay
from emporium.kit.service import Service, run_cli
from emporium.orders import consumers, domain
from emporium.orders.clients import CatalogClient
from emporium.orders.grpc_api import SERVICE_NAME, OrderServicer
from emporium.orders.repository import PostgresOrderRepository
from emporium.orders.settings import OrdersSettings
from emporium.orders.sweeper import ReservationSweeper
from emporium.orders.topics import Topics
from emporium.orders.v1.orders_pb2_grpc import add_OrderServiceServicer_to_server

NAME = "orders"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


async def build(settings: OrdersSettings, topics: Topics | None = None) -> Service:
    """Wires the service; ``await service.run()`` serves until SIGTERM or ``request_stop()``."""
    topics = topics or Topics()
    service = Service(NAME, settings)
    database = await service.database(settings, MIGRATIONS_DIR)

    # Checkout cannot price or reserve without the catalog: critical.
    catalog = service.client(downstream(settings, "catalog"), critical=True)

    producer = await service.producer(settings)

    repository = PostgresOrderRepository(database, topics)
    catalog_client = CatalogClient(catalog)
    checkout = domain.Checkout(repository, catalog_client)
    service.add_grpc_service(
        add_OrderServiceServicer_to_server, OrderServicer(checkout), SERVICE_NAME
    )
    # Kafka is not critical: while it is down checkout goes on and the outbox keeps
    # the events. The consumer registers the non-critical "kafka" health check.
    service.add_consumer(
        "fraud-decision-consumer", settings, database, consumers.handlers(topics), producer
    )
    service.add_component("outbox-relay", OutboxRelay(database, producer, health=service.health))
    # Releases the stock of checkouts whose commit failed and whose release was lost.
    service.add_component(
        "reservation-sweeper",
        ReservationSweeper(
            repository,
            catalog_client,
            hold_seconds=settings.reservation_hold_seconds,
            interval_seconds=settings.reservation_sweep_interval_seconds,
        ),
    )
    return service


async def serve() -> None:
    service = await build(load_settings(OrdersSettings))
    await service.run()


def main() -> None:
    run_cli(NAME, serve=serve, commands={"migrate": migrate_command(NAME, MIGRATIONS_DIR)})


if __name__ == "__main__":
    main()
