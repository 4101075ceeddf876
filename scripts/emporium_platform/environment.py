"""The environment of each service, as docs/configuration.md defines it."""

from __future__ import annotations

from . import collector, postgres
from .progress import PlatformError
from .settings import DATA_SERVICES, SERVICE_PORTS, SERVICES, SYSTEM, Settings

# gRPC downstreams each service calls (name used in <NAME>_ADDR), from the manifest.
DOWNSTREAMS = {s.name: s.calls for s in SYSTEM.services.values() if s.calls}

# Every variable of the contract: inherited values of these are dropped before a
# service starts, so a service sees exactly what `env` prints.
_CALLEES = sorted({callee for callees in DOWNSTREAMS.values() for callee in callees})
CONTRACT_PREFIXES = ("OTEL_", "KAFKA_", "DATABASE_", *(f"{c.upper()}_" for c in _CALLEES))
CONTRACT_NAMES = {
    "ENVIRONMENT",
    "LOG_LEVEL",
    "BIND_HOST",
    "GRPC_PORT",
    "ADMIN_PORT",
    "HTTP_PORT",
    "SHUTDOWN_GRACE_SECONDS",
    "HEALTH_CHECK_INTERVAL_SECONDS",
    "PRODUCT_PAGE_BUDGET_MS",
    "CHECKOUT_BUDGET_MS",
    "CACHE_TTL_SECONDS",
}

# Drain time of a service after SIGTERM locally; stop-service waits a little longer.
LOCAL_SHUTDOWN_GRACE_SECONDS = 5


def is_contract_variable(name: str) -> bool:
    return name in CONTRACT_NAMES or name.startswith(CONTRACT_PREFIXES)


def service_env(s: Settings, service: str) -> dict[str, str]:
    """The variables one service gets locally (nothing inherited)."""
    if service not in SERVICES:
        raise PlatformError(f"unknown service {service!r}; one of: {', '.join(SERVICES)}")
    env = {
        "ENVIRONMENT": "local",
        "LOG_LEVEL": "INFO",
        "BIND_HOST": "127.0.0.1",
        "SHUTDOWN_GRACE_SECONDS": str(LOCAL_SHUTDOWN_GRACE_SECONDS),
        "OTEL_SERVICE_NAME": service,
        # Spans go to the local trace collector that `up` starts (collector.py).
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint(),
    }
    env.update({k: str(v) for k, v in SERVICE_PORTS[service].items()})
    if service in DATA_SERVICES:
        env["DATABASE_URL"] = postgres.service_url(s, service)
        env["DATABASE_MIGRATE_ON_START"] = "true"
        env["KAFKA_BOOTSTRAP_SERVERS"] = s.kafka_bootstrap
        env["KAFKA_SECURITY_PROTOCOL"] = "PLAINTEXT"
        env["KAFKA_CONSUMER_GROUP"] = SYSTEM.service(service).consumer_group
    for downstream in DOWNSTREAMS.get(service, ()):
        env[f"{downstream.upper()}_ADDR"] = f"127.0.0.1:{SERVICE_PORTS[downstream]['GRPC_PORT']}"
    return env
