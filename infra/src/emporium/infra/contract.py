"""The names the chart and the services rely on (docs/configuration.md).

The services and topics come from the system manifest (docs/manifest.md),
``services/contracts/src/emporium/contracts/system.toml``; its loader is
standard library only and is imported here by its path, because infra/ is its
own project and cannot install the contracts package. This module is the only
place in ``infra/`` that spells the other names; the contract test checks it
against the document and, when present, against the chart.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[4]
MANIFEST_MODULE = REPO / "services" / "contracts" / "src" / "emporium" / "contracts" / "manifest.py"


def _load_manifest_module() -> ModuleType:
    name = "emporium.infra._manifest"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, MANIFEST_MODULE)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the system manifest's loader from {MANIFEST_MODULE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


manifest = _load_manifest_module()
SYSTEM = manifest.system()

# Services that own a database and use Kafka. The gateway owns neither.
DATA_SERVICES: tuple[str, ...] = SYSTEM.data_services

TOPICS: tuple[str, ...] = SYSTEM.topic_names(dead_letters=False)
DLQ_SUFFIX: str = manifest.DLQ_SUFFIX

# Keys of Secret ``emporium-<service>`` (consumed by the chart with envFrom).
SERVICE_SECRET_KEYS: tuple[str, ...] = (
    "DATABASE_URL",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
)
# Keys of ConfigMap ``emporium-platform``.
PLATFORM_CONFIGMAP = "emporium-platform"
PLATFORM_CONFIG_KEYS: tuple[str, ...] = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
    "ENVIRONMENT",
)
ENVIRONMENTS: tuple[str, ...] = ("dev", "staging", "prod")

# Where the chart mounts the CA bundles the services verify Kafka's and
# PostgreSQL's certificates with (values platform.kafkaCa / platform.postgresCa);
# DATABASE_URL names the PostgreSQL one in ``sslrootcert``.
CA_BUNDLE_KEY = "ca.crt"
KAFKA_CA_FILE = f"/etc/emporium/kafka-ca/{CA_BUNDLE_KEY}"
POSTGRES_CA_FILE = f"/etc/emporium/postgres-ca/{CA_BUNDLE_KEY}"


def service_secret_name(service: str) -> str:
    return f"emporium-{service}"


def app_namespace(environment: str) -> str:
    return f"emporium-{environment}"


def dlq(topic: str) -> str:
    return f"{topic}{DLQ_SUFFIX}"


def all_topics() -> tuple[str, ...]:
    """Every topic with its dead-letter twin, in a stable order."""
    return tuple(name for topic in TOPICS for name in (topic, dlq(topic)))


@dataclass(frozen=True)
class TopicAccess:
    """What one service produces and consumes, and its consumer group."""

    service: str
    produces: frozenset[str]
    consumes: frozenset[str]

    @property
    def consumer_group(self) -> str:
        return str(SYSTEM.service(self.service).consumer_group)


TOPIC_ACCESS: dict[str, TopicAccess] = {
    # A consumer parks poison messages on the dead-letter twin of what it reads.
    service: TopicAccess(
        service,
        frozenset(SYSTEM.produced_names(service)),
        frozenset(SYSTEM.consumed_names(service)),
    )
    for service in SYSTEM.kafka_services
}
