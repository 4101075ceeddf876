"""Typed stack settings, read once from ``Pulumi.<stack>.yaml``.

The Pulumi program builds them from ``pulumi.Config``; the CDK Terrain path reads
the same files, so both paths deploy the same differences between environments.
Unknown keys are rejected so a typo fails the preview instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from emporium.infra.contract import ENVIRONMENTS

CONFIG_NAMESPACE = "emporium"
INFRA_DIR = Path(__file__).resolve().parents[3]


class SettingsError(ValueError):
    """A stack file holds a value the program cannot use."""


def _build(cls: type, data: Mapping[str, Any] | None, where: str) -> Any:
    data = dict(data or {})
    known = {_camel(f.name): f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SettingsError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, spec in known.items():
        if key not in data:
            continue
        nested = _NESTED.get((cls.__name__, spec.name))
        value = data[key]
        values[spec.name] = _build(nested, value, f"{where}.{key}") if nested else value
    return cls(**values)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join("GiB" if part == "gib" else part.title() for part in rest)


@dataclass(frozen=True)
class Resources:
    cpu: str = "250m"
    memory: str = "512Mi"
    cpu_limit: str | None = None
    memory_limit: str | None = None

    def as_k8s(self) -> dict[str, dict[str, str]]:
        return {
            "requests": {"cpu": self.cpu, "memory": self.memory},
            "limits": {
                "cpu": self.cpu_limit or self.cpu,
                "memory": self.memory_limit or self.memory,
            },
        }


@dataclass(frozen=True)
class EksSettings:
    region: str = "eu-west-1"
    version: str = "1.34"
    vpc_id: str = ""
    private_subnet_ids: list[str] = field(default_factory=list)
    public_subnet_ids: list[str] = field(default_factory=list)
    instance_types: list[str] = field(default_factory=lambda: ["m7i.large"])
    min_nodes: int = 1
    desired_nodes: int = 1
    max_nodes: int = 2
    disk_gib: int = 50
    # Who may reach the API server from outside the VPC; empty keeps it private.
    public_access_cidrs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ClusterSettings:
    mode: str = "existing"  # existing | eks
    context: str | None = None  # kubeconfig context for mode "existing"
    eks: EksSettings = field(default_factory=EksSettings)

    def __post_init__(self) -> None:
        if self.mode not in ("existing", "eks"):
            raise SettingsError(f"cluster.mode: expected existing or eks, got {self.mode!r}")
        if self.mode == "eks" and not self.eks.private_subnet_ids:
            raise SettingsError("cluster.eks.privateSubnetIds: required with mode eks")


@dataclass(frozen=True)
class ExternalKafka:
    bootstrap_servers: str = ""
    security_protocol: str = "SASL_SSL"
    sasl_mechanism: str = "SCRAM-SHA-512"


@dataclass(frozen=True)
class KafkaSettings:
    mode: str = "strimzi"  # strimzi | external
    brokers: int = 1
    # 0 runs KRaft controllers on the brokers (one dual-role pool).
    controllers: int = 0
    storage_gib: int = 10
    storage_class: str | None = None
    partitions: int = 3
    dlq_partitions: int = 1
    retention_hours: int = 24
    dlq_retention_hours: int = 72
    min_insync_replicas: int = 1
    rack_aware: bool = False
    resources: Resources = field(default_factory=Resources)
    external: ExternalKafka = field(default_factory=ExternalKafka)

    def __post_init__(self) -> None:
        if self.mode not in ("strimzi", "external"):
            raise SettingsError(f"kafka.mode: expected strimzi or external, got {self.mode!r}")
        if self.mode == "strimzi":
            if self.brokers < 1:
                raise SettingsError("kafka.brokers: at least 1")
            if self.min_insync_replicas > self.replication_factor:
                raise SettingsError("kafka.minInsyncReplicas: larger than the replication factor")
        elif not self.external.bootstrap_servers:
            raise SettingsError("kafka.external.bootstrapServers: required with mode external")

    @property
    def replication_factor(self) -> int:
        return min(3, self.brokers)


@dataclass(frozen=True)
class BackupSettings:
    destination_path: str = ""  # s3://bucket/prefix, gs://..., https://<account>.blob...
    endpoint_url: str | None = None
    # Secret in the data namespace with ACCESS_KEY_ID / ACCESS_SECRET_KEY; omit to
    # use the node or service-account identity (IRSA on EKS).
    credentials_secret: str | None = None
    retention: str = "30d"
    schedule: str = "0 0 3 * * *"


@dataclass(frozen=True)
class PostgresSettings:
    mode: str = "cnpg"  # cnpg | external
    instances: int = 1
    storage_gib: int = 5
    storage_class: str | None = None
    resources: Resources = field(default_factory=Resources)
    backup: BackupSettings | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("cnpg", "external"):
            raise SettingsError(f"postgres.mode: expected cnpg or external, got {self.mode!r}")


@dataclass(frozen=True)
class ObservabilitySettings:
    enabled: bool = True
    replicas: int = 1
    prometheus_retention: str = "2d"
    prometheus_storage_gib: int = 10
    loki_storage_gib: int = 10
    tempo_storage_gib: int = 10
    # Collect container stdout from every node (a DaemonSet that needs hostPath).
    node_log_agent: bool = True


@dataclass(frozen=True)
class AppSettings:
    requests_cpu: str = "2"
    requests_memory: str = "4Gi"
    limits_cpu: str = "4"
    limits_memory: str = "8Gi"
    pods: int = 40
    # Load balancers the namespace may create: the edge only.
    load_balancers: int = 1
    traces_exporter: str = "otlp"


@dataclass(frozen=True)
class StackSettings:
    environment: str
    install_operators: bool = True
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    app: AppSettings = field(default_factory=AppSettings)

    def __post_init__(self) -> None:
        if self.environment not in ENVIRONMENTS:
            raise SettingsError(
                f"environment: expected one of {', '.join(ENVIRONMENTS)}, got {self.environment!r}"
            )

    @classmethod
    def from_config(cls, values: Mapping[str, Any]) -> StackSettings:
        """Build from the ``emporium:*`` keys of a stack (without the prefix)."""
        return _build(cls, values, CONFIG_NAMESPACE)

    @classmethod
    def from_pulumi_config(cls, config: Any) -> StackSettings:
        """Read the known top-level keys from a ``pulumi.Config("emporium")``."""
        values: dict[str, Any] = {}
        for spec in fields(cls):
            key = _camel(spec.name)
            value = config.get_object(key) if spec.name in _OBJECT_KEYS else config.get(key)
            if value is not None:
                values[key] = _coerce(spec.name, value)
        return cls.from_config(values)

    @classmethod
    def from_stack_file(cls, path: Path) -> StackSettings:
        document = yaml.safe_load(path.read_text()) or {}
        prefix = f"{CONFIG_NAMESPACE}:"
        values = {
            key.removeprefix(prefix): value
            for key, value in (document.get("config") or {}).items()
            if key.startswith(prefix)
        }
        return cls.from_config(values)


_OBJECT_KEYS = {"cluster", "kafka", "postgres", "observability", "app"}


def _coerce(name: str, value: Any) -> Any:
    if name == "install_operators" and isinstance(value, str):
        return value.lower() == "true"
    return value


def stack_file(stack: str) -> Path:
    return INFRA_DIR / f"Pulumi.{stack}.yaml"


_NESTED: dict[tuple[str, str], type] = {
    ("StackSettings", "cluster"): ClusterSettings,
    ("StackSettings", "kafka"): KafkaSettings,
    ("StackSettings", "postgres"): PostgresSettings,
    ("StackSettings", "observability"): ObservabilitySettings,
    ("StackSettings", "app"): AppSettings,
    ("ClusterSettings", "eks"): EksSettings,
    ("KafkaSettings", "resources"): Resources,
    ("KafkaSettings", "external"): ExternalKafka,
    ("PostgresSettings", "resources"): Resources,
    ("PostgresSettings", "backup"): BackupSettings,
}
