"""The recommendations' composition root: settings, database, handlers, gRPC, consumer.

``emporium-recommendations`` serves; ``emporium-recommendations migrate``
applies the migrations.
"""

from __future__ import annotations

from emporium.kit.config import load_settings
from emporium.kit.db import migrate_command
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
    database = await service.database(settings, MIGRATIONS_DIR)

    recommendations = Recommendations(PostgresRecommendationRepository(database))
    service.add_grpc_service(
        recommendations_pb2_grpc.add_RecommendationServiceServicer_to_server,
        RecommendationServicer(recommendations),
        SERVICE_NAME,
    )

    # The producer only publishes to the dead-letter topic of what is consumed.
    producer = await service.producer(settings)
    service.add_consumer(
        "order-placed-consumer",
        settings,
        database,
        {ORDER_PLACED_TOPIC: OrderPlacedHandler(PostgresCoPurchaseLedger)},
        producer,
    )
    await service.run()


def main() -> None:
    run_cli(
        NAME,
        serve=lambda: serve(load_settings(RecommendationsSettings)),
        commands={"migrate": migrate_command(NAME, MIGRATIONS_DIR)},
    )
