"""Composition root of the fraud service: settings, pool, consumer, relay, runtime.

Fraud has no business gRPC API; its gRPC port serves only the standard health
service and reflection (the kit adds both).
"""

from __future__ import annotations

from pathlib import Path

from emporium.fraud import consumers
from emporium.fraud.settings import FraudSettings
from emporium.fraud.topics import Topics
from emporium.kit.config import DatabaseSettings, ServiceSettings, load_settings
from emporium.kit.db import create_pool, database_check, migrate
from emporium.kit.kafka import EventProducer, IdempotentConsumer
from emporium.kit.outbox import OutboxRelay
from emporium.kit.service import Service, run_cli

NAME = "fraud"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class MigrateSettings(ServiceSettings, DatabaseSettings):
    """What ``emporium-fraud migrate`` needs: the database only."""


async def build(settings: FraudSettings, topics: Topics | None = None) -> Service:
    """Wires the service; ``await service.run()`` serves until SIGTERM or ``request_stop()``."""
    topics = topics or Topics()
    service = Service(NAME, settings)
    pool = await create_pool(settings, application_name=NAME)
    service.on_shutdown(pool.close)
    if settings.database_migrate_on_start:
        await migrate(pool, MIGRATIONS_DIR)
    service.health.add_check("postgres", database_check(pool), critical=True)

    producer = EventProducer(settings, client_id=NAME)
    await producer.start()
    service.on_shutdown(producer.stop)
    # The consumer registers the (non-critical) "kafka" health check: without
    # Kafka fraud has nothing to do, but it is not broken either.
    service.add_component(
        "order-placed-consumer",
        IdempotentConsumer(
            settings,
            pool,
            consumers.handlers(topics),
            producer,
            group_id=settings.kafka_consumer_group or NAME,
            health=service.health,
        ),
    )
    service.add_component("outbox-relay", OutboxRelay(pool, producer, health=service.health))
    return service


async def serve() -> None:
    service = await build(load_settings(FraudSettings))
    await service.run()


async def migrate_command() -> None:
    settings = load_settings(MigrateSettings)
    applied = await migrate(settings.database_url.get_secret_value(), MIGRATIONS_DIR)
    print(f"{NAME}: {len(applied)} migration(s) applied" + "".join(f"\n  {v}" for v in applied))


def main() -> None:
    run_cli(NAME, serve=serve, commands={"migrate": migrate_command})


if __name__ == "__main__":
    main()
