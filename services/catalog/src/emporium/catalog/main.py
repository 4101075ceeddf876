"""The catalog's composition root: settings, pool, handlers, gRPC, consumer.

``emporium-catalog`` serves; ``emporium-catalog migrate`` applies the
migrations; ``emporium-catalog seed`` loads the demo products.
"""

from __future__ import annotations

import logging

from emporium.catalog.consumers import ORDER_STATUS_CHANGED_TOPIC, OrderStatusChangedHandler
from emporium.catalog.domain import Catalog
from emporium.catalog.grpc_api import SERVICE_NAME, CatalogServicer
from emporium.catalog.repository import MIGRATIONS_DIR, PostgresCatalogRepository, ledger_on
from emporium.catalog.seed import DEMO_PRODUCTS
from emporium.catalog.settings import CatalogSettings
from emporium.catalog.v1 import catalog_pb2_grpc
from emporium.kit.config import load_settings
from emporium.kit.db import Database, migrate_command
from emporium.kit.logging import configure_logging
from emporium.kit.service import Service, run_cli

NAME = "catalog"
log = logging.getLogger(__name__)


async def serve(settings: CatalogSettings) -> None:
    service = Service(NAME, settings)
    database = await service.database(settings, MIGRATIONS_DIR)

    catalog = Catalog(PostgresCatalogRepository(database))
    service.add_grpc_service(
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server,
        CatalogServicer(catalog),
        SERVICE_NAME,
    )

    # The producer only publishes to the dead-letter topic of what is consumed.
    producer = await service.producer(settings)
    service.add_consumer(
        "order-status-consumer",
        settings,
        database,
        {ORDER_STATUS_CHANGED_TOPIC: OrderStatusChangedHandler(ledger_on)},
        producer,
    )
    await service.run()


async def seed_command(settings: CatalogSettings) -> None:
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
        serve=lambda: serve(load_settings(CatalogSettings)),
        commands={
            "migrate": migrate_command(NAME, MIGRATIONS_DIR),
            "seed": lambda: seed_command(load_settings(CatalogSettings)),
        },
    )
