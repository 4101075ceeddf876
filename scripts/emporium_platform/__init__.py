"""The local platform: real PostgreSQL and Kafka, provisioned, and the services.

Standard library only, so it runs before any virtual environment exists.
The command line is ``python3 scripts/platformctl.py <command>``. Tests import
it as ``emporium_platform`` (the root conftest.py appends ``scripts/`` to
``sys.path``) and get its fixtures from the pytest plugin
``emporium.testing.pytest_plugin`` (the workspace member ``testing/``), which
uses this package.

Each function reads its settings from the environment when called.
"""

from __future__ import annotations

from . import environment, kafka, postgres, services
from .progress import PlatformError
from .settings import DATA_SERVICES, SERVICES, TOPICS, Settings

__all__ = [
    "DATA_SERVICES",
    "SERVICES",
    "TOPICS",
    "PlatformError",
    "Settings",
    "admin_url",
    "down",
    "ensure_started",
    "freeze_service",
    "install",
    "kafka_bootstrap",
    "kafka_running",
    "kafka_topics",
    "postgres_running",
    "provision",
    "service_env",
    "service_ready",
    "service_running",
    "settings",
    "start_kafka",
    "start_postgres",
    "start_service",
    "stop_kafka",
    "stop_postgres",
    "stop_service",
    "thaw_service",
    "up",
]


def settings() -> Settings:
    return Settings.from_env()


def install() -> None:
    """Installs PostgreSQL (apt) and the Kafka jars (Maven) if missing."""
    s = settings()
    s.ensure_dirs()
    postgres.install(s)
    kafka.install(s)


def start_postgres() -> None:
    s = settings()
    if s.local_postgres:
        postgres.install(s)
    postgres.start(s)


def stop_postgres() -> bool:
    return postgres.stop(settings())


def postgres_running() -> bool:
    s = settings()
    if not s.local_postgres:
        return True
    return postgres.is_running(s)


def start_kafka() -> None:
    s = settings()
    if s.local_kafka:
        kafka.install(s)
    kafka.start(s)


def stop_kafka() -> bool:
    return kafka.stop(settings())


def kafka_running() -> bool:
    return kafka.is_running(settings())


def ensure_started() -> Settings:
    """Installs what is missing and starts PostgreSQL and Kafka unless they run."""
    s = settings()
    install()
    postgres.start(s)
    kafka.start(s)
    return s


def provision() -> None:
    """Service logins, databases and topics (idempotent)."""
    s = settings()
    postgres.provision(s)
    kafka.provision(s)


def service_env(name: str) -> dict[str, str]:
    return environment.service_env(settings(), name)


def admin_url() -> str:
    """A superuser DSN of the PostgreSQL in use."""
    return postgres.admin_url(settings())


def kafka_bootstrap() -> str:
    return settings().kafka_bootstrap


def kafka_topics() -> dict[str, int]:
    """Topic -> partition count as the broker reports it."""
    return kafka.topics(settings())


def up() -> None:
    """start + provision, then every service (catalog migrated and seeded first)."""
    services.up(settings())


def down() -> None:
    """Stops the services, then the Kafka and PostgreSQL servers the runner started."""
    services.down(settings())


def start_service(name: str) -> None:
    services.start_service(settings(), name)


def stop_service(name: str) -> bool:
    return services.stop_service(settings(), name)


def freeze_service(name: str) -> None:
    services.freeze_service(settings(), name)


def thaw_service(name: str) -> None:
    services.thaw_service(settings(), name)


def service_running(name: str) -> bool:
    return services.service_pid(settings(), name) is not None


def service_ready(name: str) -> bool:
    return services.ready(name)
