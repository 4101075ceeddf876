"""The recommendations' composition root: settings, pool, handlers, gRPC, consumer.

``emporium-recommendations`` serves; ``emporium-recommendations migrate``
applies the migrations.
"""

from __future__ import annotations

from emporium.kit.config import load_settings
from emporium.kit.db import create_pool, database_check, migrate
from emporium.kit.kafka import EventProducer, IdempotentConsumer
from emporium.kit.logging import configure_logging
from emporium.kit.service import Service, run_cli
from emporium.recommendations.consumers import ORDER_PLACED_TOPIC, OrderPlacedHandler
from emporium.recommendations.domain import Recommendations
from emporium.recommendations.grpc_api import SERVICE_NAME, RecommendationServicer
from emporium.recommendations.repository import (
    MIGRATIONS_DIR,
    PostgresCoPurchaseLedger,
    PostgresRecommendationRepository,
)
from emporium.recommendations.settings import RecommendationsSettings
from emporium.recommendations.v1 import recommendations_pb2_grpc

NAME = "recommendations"


async def serve(settings: RecommendationsSettings) -> None:
    service = Service(NAME, settings)
    pool = await create_pool(settings, application_name=NAME)
    service.on_shutdown(pool.close)
    if settings.database_migrate_on_start:
        await migrate(pool, MIGRATIONS_DIR)
    service.health.add_check("postgres", database_check(pool), critical=True)

    recommendations = Recommendations(PostgresRecommendationRepository(pool))
    service.add_grpc_service(
        recommendations_pb2_grpc.add_RecommendationServiceServicer_to_server,
        RecommendationServicer(recommendations),
        SERVICE_NAME,
    )

    # The producer only publishes to the dead-letter topic of what is consumed.
    producer = EventProducer(settings, client_id=NAME)
    await producer.start()
    service.on_shutdown(producer.stop)
    consumer = IdempotentConsumer(
        settings,
        pool,
        {ORDER_PLACED_TOPIC: OrderPlacedHandler(PostgresCoPurchaseLedger)},
        producer,
        group_id=settings.kafka_consumer_group or NAME,
        health=service.health,
    )
    service.add_component("order-placed-consumer", consumer)
    await service.run()


async def migrate_command(settings: RecommendationsSettings) -> None:
    configure_logging(NAME, settings.log_level, settings.environment)
    applied = await migrate(settings.database_url.get_secret_value(), MIGRATIONS_DIR)
    print(f"{NAME}: {len(applied)} migration(s) applied{': ' if applied else ''}", end="")
    print(", ".join(applied))


def main() -> None:
    settings = load_settings(RecommendationsSettings)
    run_cli(
        NAME,
        serve=lambda: serve(settings),
        commands={"migrate": lambda: migrate_command(settings)},
    )
