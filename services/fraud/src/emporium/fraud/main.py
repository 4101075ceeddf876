"""Composition root of the fraud service: settings, database, consumer, relay, runtime.

Fraud has no business gRPC API; its gRPC port serves only the standard health
service and reflection (the kit adds both).
"""

from __future__ import annotations

from pathlib import Path

from emporium.fraud import consumers
from emporium.fraud.settings import FraudSettings
from emporium.fraud.topics import Topics
from emporium.kit.config import load_settings
from emporium.kit.db import migrate_command
from emporium.kit.outbox import OutboxRelay
from emporium.kit.service import Service, run_cli

NAME = "fraud"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


async def build(settings: FraudSettings, topics: Topics | None = None) -> Service:
    """Wires the service; ``await service.run()`` serves until SIGTERM or ``request_stop()``."""
    topics = topics or Topics()
    service = Service(NAME, settings)
    database = await service.database(settings, MIGRATIONS_DIR)
    producer = await service.producer(settings)
    # The consumer registers the (non-critical) "kafka" health check: without
    # Kafka fraud has nothing to do, but it is not broken either.
    service.add_consumer(
        "order-placed-consumer", settings, database, consumers.handlers(topics), producer
    )
    service.add_component("outbox-relay", OutboxRelay(database, producer, health=service.health))
    return service


async def serve() -> None:
    service = await build(load_settings(FraudSettings))
    await service.run()


def main() -> None:
    run_cli(NAME, serve=serve, commands={"migrate": migrate_command(NAME, MIGRATIONS_DIR)})


if __name__ == "__main__":
    main()
