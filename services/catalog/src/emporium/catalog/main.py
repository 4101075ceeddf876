"""Composition root of the catalog: settings, database, gRPC API, consumer, runtime.

``emporium-catalog`` serves; ``emporium-catalog migrate`` applies the
migrations; ``emporium-catalog seed`` loads the demo products.
"""

from __future__ import annotations

from pathlib import Path

from emporium.catalog import consumers, domain
from emporium.catalog.grpc_api import SERVICE_NAME, CatalogServicer
from emporium.catalog.repository import PostgresCatalogRepository
from emporium.catalog.seed import DEMO_PRODUCTS
from emporium.catalog.settings import CatalogSettings
from emporium.catalog.topics import Topics
from emporium.catalog.v1.catalog_pb2_grpc import add_CatalogServiceServicer_to_server
from emporium.kit.config import load_settings
from emporium.kit.db import Database, migrate_command
from emporium.kit.logging import configure_logging
from emporium.kit.service import Service, run_cli

NAME = "catalog"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


async def build(settings: CatalogSettings, topics: Topics | None = None) -> Service:
    """Wires the service; ``await service.run()`` serves until SIGTERM or ``request_stop()``."""
    topics = topics or Topics()
    service = Service(NAME, settings)
    database = await service.database(settings, MIGRATIONS_DIR)

    catalog = domain.Catalog(PostgresCatalogRepository(database))
    service.add_grpc_service(
        add_CatalogServiceServicer_to_server, CatalogServicer(catalog), SERVICE_NAME
    )

    # The producer only publishes to the dead-letter topic of what is consumed.
    producer = await service.producer(settings)
    service.add_consumer(
        "order-status-consumer", settings, database, consumers.handlers(topics), producer
    )
    return service


async def serve() -> None:
    service = await build(load_settings(CatalogSettings))
    await service.run()


async def seed() -> None:
    """Upserts the demo products (descriptions and prices; existing stock is left alone)."""
    settings = load_settings(CatalogSettings)
    configure_logging(NAME, settings.log_level, settings.environment)
    database = Database.from_settings(settings, application_name=f"{NAME}-seed")
    await database.open(wait=True)
    try:
        await PostgresCatalogRepository(database).upsert_products(DEMO_PRODUCTS)
    finally:
        await database.close()
    print(f"catalog: {len(DEMO_PRODUCTS)} demo products present")


def main() -> None:
    run_cli(
        NAME,
        serve=serve,
        commands={"migrate": migrate_command(NAME, MIGRATIONS_DIR), "seed": seed},
    )


if __name__ == "__main__":
    main()
