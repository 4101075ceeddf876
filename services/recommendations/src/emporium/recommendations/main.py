"""Composition root of the recommendations: settings, database, gRPC API, consumer, runtime.

``emporium-recommendations`` serves; ``emporium-recommendations migrate``
applies the migrations.
"""

from __future__ import annotations

from pathlib import Path

from emporium.kit.config import load_settings
from emporium.kit.db import migrate_command
from emporium.kit.service import Service, run_cli
from emporium.recommendations import consumers, domain
from emporium.recommendations.cache import CachedRecommendationRepository
from emporium.recommendations.grpc_api import SERVICE_NAME, RecommendationServicer
from emporium.recommendations.repository import PostgresRecommendationRepository
from emporium.recommendations.settings import RecommendationsSettings
from emporium.recommendations.topics import Topics
from emporium.recommendations.v1.recommendations_pb2_grpc import (
    add_RecommendationServiceServicer_to_server,
)

NAME = "recommendations"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


async def build(settings: RecommendationsSettings, topics: Topics | None = None) -> Service:
    """Wires the service; ``await service.run()`` serves until SIGTERM or ``request_stop()``."""
    topics = topics or Topics()
    service = Service(NAME, settings)
    database = await service.database(settings, MIGRATIONS_DIR)

    recommendations = domain.Recommendations(
        CachedRecommendationRepository(PostgresRecommendationRepository(database))
    )
    service.add_grpc_service(
        add_RecommendationServiceServicer_to_server,
        RecommendationServicer(recommendations),
        SERVICE_NAME,
    )

    # The producer only publishes to the dead-letter topic of what is consumed.
    producer = await service.producer(settings)
    service.add_consumer(
        "order-placed-consumer", settings, database, consumers.handlers(topics), producer
    )
    return service


async def serve() -> None:
    service = await build(load_settings(RecommendationsSettings))
    await service.run()


def main() -> None:
    run_cli(NAME, serve=serve, commands={"migrate": migrate_command(NAME, MIGRATIONS_DIR)})


if __name__ == "__main__":
    main()
