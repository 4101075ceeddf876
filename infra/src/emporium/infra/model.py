"""Every specification of the platform, computed from the stack settings as plain data.

Nothing here talks to Pulumi or Terraform: the Pulumi components and the CDK
Terrain stack render these dictionaries, and the tests read them directly. A
change of sizing, ACL or chart value is therefore made once for both paths. The
Helm releases and their values are in ``emporium.infra.releases``, one module
per chart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emporium.infra import contract, versions
from emporium.infra.settings import AppSettings, KafkaSettings, PostgresSettings, StackSettings

# Namespaces shared by every environment on a cluster.
STRIMZI_NAMESPACE = "strimzi-system"
CNPG_NAMESPACE = "cnpg-system"
OBSERVABILITY_NAMESPACE = "observability"
# The node log agent reads /var/log/pods through hostPath, which no restricted
# namespace admits; it is the only workload outside the restricted level.
NODE_AGENTS_NAMESPACE = "observability-node-agents"
PRIVILEGED_NAMESPACES: frozenset[str] = frozenset({NODE_AGENTS_NAMESPACE})

KAFKA_CLUSTER = "emporium"
KAFKA_LISTENER_PORT = 9092
KAFKA_SECURITY_PROTOCOL = "SASL_PLAINTEXT"
KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"

MANAGED_BY = {"app.kubernetes.io/managed-by": "emporium-infra", "app.kubernetes.io/part-of": "emporium"}

# Service names inside the observability namespace (fixed by fullnameOverride).
PROMETHEUS_SERVICE = "kps-prometheus"
TEMPO_SERVICE = "tempo"
LOKI_SERVICE = "loki"
OTEL_GATEWAY_SERVICE = "otel-collector"


def data_namespace(environment: str) -> str:
    """Kafka and the Postgres clusters of one environment."""
    return f"emporium-{environment}-data"


def pod_security_labels(namespace: str) -> dict[str, str]:
    level = "privileged" if namespace in PRIVILEGED_NAMESPACES else "restricted"
    return {
        "pod-security.kubernetes.io/enforce": level,
        "pod-security.kubernetes.io/enforce-version": "latest",
        # Even the exception is audited and warned against the restricted level.
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/warn-version": "latest",
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/audit-version": "latest",
    }


def namespace_labels(namespace: str, environment: str | None = None) -> dict[str, str]:
    labels = {**MANAGED_BY, **pod_security_labels(namespace)}
    if environment:
        labels["emporium.dev/environment"] = environment
    return labels


def svc(name: str, namespace: str, port: int) -> str:
    return f"{name}.{namespace}.svc.cluster.local:{port}"


# --- Kafka -----------------------------------------------------------------------------


def kafka_bootstrap_servers(kafka: KafkaSettings, environment: str) -> str:
    if kafka.mode == "external":
        return kafka.external.bootstrap_servers
    return svc(f"{KAFKA_CLUSTER}-kafka-bootstrap", data_namespace(environment), KAFKA_LISTENER_PORT)


def kafka_bootstrap(settings: StackSettings) -> str:
    return kafka_bootstrap_servers(settings.kafka, settings.environment)


def kafka_security(settings: StackSettings) -> tuple[str, str]:
    if settings.kafka.mode == "external":
        return settings.kafka.external.security_protocol, settings.kafka.external.sasl_mechanism
    return KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM


def _storage(size_gib: int, storage_class: str | None) -> dict[str, Any]:
    volume: dict[str, Any] = {
        "id": 0,
        "type": "persistent-claim",
        "size": f"{size_gib}Gi",
        "deleteClaim": False,
        "kraftMetadata": "shared",
    }
    if storage_class:
        volume["class"] = storage_class
    return {"type": "jbod", "volumes": [volume]}


def kafka_node_pools(kafka: KafkaSettings) -> dict[str, dict[str, Any]]:
    """KafkaNodePool specs by name: one dual-role pool, or brokers plus controllers."""
    resources = kafka.resources.as_k8s()
    storage = _storage(kafka.storage_gib, kafka.storage_class)
    if kafka.controllers == 0:
        return {
            "dual-role": {
                "replicas": kafka.brokers,
                "roles": ["controller", "broker"],
                "storage": storage,
                "resources": resources,
            }
        }
    controller_storage = _storage(max(5, kafka.storage_gib // 10), kafka.storage_class)
    return {
        "controller": {
            "replicas": kafka.controllers,
            "roles": ["controller"],
            "storage": controller_storage,
            "resources": {
                "requests": {"cpu": "250m", "memory": "1Gi"},
                "limits": {"cpu": "1", "memory": "1Gi"},
            },
        },
        "broker": {
            "replicas": kafka.brokers,
            "roles": ["broker"],
            "storage": storage,
            "resources": resources,
        },
    }


def kafka_cluster_spec(kafka: KafkaSettings) -> dict[str, Any]:
    replication = kafka.replication_factor
    spec: dict[str, Any] = {
        "kafka": {
            "version": versions.KAFKA_VERSION,
            "listeners": [
                {
                    "name": "scram",
                    "port": KAFKA_LISTENER_PORT,
                    "type": "internal",
                    "tls": False,
                    "authentication": {"type": "scram-sha-512"},
                }
            ],
            "authorization": {"type": "simple"},
            "config": {
                "auto.create.topics.enable": False,
                "default.replication.factor": replication,
                "min.insync.replicas": kafka.min_insync_replicas,
                "offsets.topic.replication.factor": replication,
                "transaction.state.log.replication.factor": replication,
                "transaction.state.log.min.isr": kafka.min_insync_replicas,
            },
            "template": {"podDisruptionBudget": {"maxUnavailable": 1 if kafka.brokers > 1 else 0}},
        },
        "entityOperator": {
            "topicOperator": {
                "resources": {
                    "requests": {"cpu": "100m", "memory": "256Mi"},
                    "limits": {"cpu": "500m", "memory": "256Mi"},
                }
            },
            "userOperator": {
                "resources": {
                    "requests": {"cpu": "100m", "memory": "256Mi"},
                    "limits": {"cpu": "500m", "memory": "256Mi"},
                }
            },
        },
    }
    if kafka.rack_aware:
        spec["kafka"]["rack"] = {"topologyKey": "topology.kubernetes.io/zone"}
        spec["kafka"]["config"]["replica.selector.class"] = (
            "org.apache.kafka.common.replica.RackAwareReplicaSelector"
        )
    return spec


@dataclass(frozen=True)
class TopicSpec:
    name: str
    spec: dict[str, Any]


def kafka_topics(kafka: KafkaSettings) -> list[TopicSpec]:
    topics: list[TopicSpec] = []
    for name in contract.all_topics():
        dead_letter = name.endswith(contract.DLQ_SUFFIX)
        hours = kafka.dlq_retention_hours if dead_letter else kafka.retention_hours
        topics.append(
            TopicSpec(
                name,
                {
                    "partitions": kafka.dlq_partitions if dead_letter else kafka.partitions,
                    "replicas": kafka.replication_factor,
                    "config": {
                        "retention.ms": hours * 3_600_000,
                        "min.insync.replicas": kafka.min_insync_replicas,
                        "cleanup.policy": "delete",
                    },
                },
            )
        )
    return topics


PRODUCE_OPERATIONS = ["Describe", "Write"]
CONSUME_OPERATIONS = ["Describe", "Read"]
GROUP_OPERATIONS = ["Describe", "Read"]


def kafka_acls(service: str) -> list[dict[str, Any]]:
    """Exactly what the service produces and consumes, and its own consumer group."""
    access = contract.TOPIC_ACCESS[service]
    acls: list[dict[str, Any]] = []
    for topic in sorted(access.consumes):
        acls.append(_acl("topic", topic, CONSUME_OPERATIONS))
    for topic in sorted(access.produces):
        acls.append(_acl("topic", topic, PRODUCE_OPERATIONS))
    if access.consumes:
        acls.append(_acl("group", access.consumer_group, GROUP_OPERATIONS))
    return acls


def _acl(kind: str, name: str, operations: list[str]) -> dict[str, Any]:
    return {
        "resource": {"type": kind, "name": name, "patternType": "literal"},
        "operations": list(operations),
        "host": "*",
    }


def kafka_password_secret(service: str) -> str:
    return f"{service}-kafka-password"


def kafka_user_spec(service: str) -> dict[str, Any]:
    return {
        "authentication": {
            "type": "scram-sha-512",
            # The password is generated by the infrastructure and handed to the
            # User Operator, so the application Secret can be written in one place.
            "password": {
                "valueFrom": {"secretKeyRef": {"name": kafka_password_secret(service), "key": "password"}}
            },
        },
        "authorization": {"type": "simple", "acls": kafka_acls(service)},
    }


# --- Postgres --------------------------------------------------------------------------


def postgres_cluster_name(service: str) -> str:
    return f"{service}-db"


def postgres_owner_secret(service: str) -> str:
    return f"{service}-db-owner"


def postgres_host(environment: str, service: str) -> str:
    return f"{postgres_cluster_name(service)}-rw.{data_namespace(environment)}.svc.cluster.local"


def database_url(host: str, service: str, password: str) -> str:
    """The login owns only this service's database."""
    return f"postgresql://{service}:{password}@{host}:5432/{service}"


def postgres_cluster_spec(service: str, postgres: PostgresSettings) -> dict[str, Any]:
    storage: dict[str, Any] = {"size": f"{postgres.storage_gib}Gi"}
    if postgres.storage_class:
        storage["storageClass"] = postgres.storage_class
    spec: dict[str, Any] = {
        "instances": postgres.instances,
        "imageName": versions.POSTGRES_IMAGE,
        "primaryUpdateStrategy": "unsupervised",
        # A single instance cannot honour a PDB without blocking node drains.
        "enablePDB": postgres.instances > 1,
        "storage": storage,
        "resources": postgres.resources.as_k8s(),
        "bootstrap": {
            "initdb": {
                "database": service,
                "owner": service,
                "secret": {"name": postgres_owner_secret(service)},
            }
        },
        "monitoring": {"enablePodMonitor": True},
    }
    if postgres.instances > 1:
        spec["affinity"] = {"topologyKey": "topology.kubernetes.io/zone", "podAntiAffinityType": "required"}
        spec["minSyncReplicas"] = 1
        spec["maxSyncReplicas"] = 1
    backup = postgres.backup
    if backup and backup.destination_path:
        store: dict[str, Any] = {
            "destinationPath": f"{backup.destination_path.rstrip('/')}/{service}",
            "wal": {"compression": "gzip"},
            "data": {"compression": "gzip"},
        }
        if backup.endpoint_url:
            store["endpointURL"] = backup.endpoint_url
        if backup.credentials_secret:
            store["s3Credentials"] = {
                "accessKeyId": {"name": backup.credentials_secret, "key": "ACCESS_KEY_ID"},
                "secretAccessKey": {"name": backup.credentials_secret, "key": "ACCESS_SECRET_KEY"},
            }
        else:
            store["s3Credentials"] = {"inheritFromIAMRole": True}
        spec["backup"] = {"retentionPolicy": backup.retention, "barmanObjectStore": store}
    return spec


def postgres_scheduled_backup_spec(service: str, postgres: PostgresSettings) -> dict[str, Any] | None:
    if not (postgres.backup and postgres.backup.destination_path):
        return None
    return {
        "schedule": postgres.backup.schedule,
        "backupOwnerReference": "self",
        "cluster": {"name": postgres_cluster_name(service)},
    }


# --- Application environment -----------------------------------------------------------


def platform_config(settings: StackSettings) -> dict[str, str]:
    protocol, mechanism = kafka_security(settings)
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap(settings),
        "KAFKA_SECURITY_PROTOCOL": protocol,
        "KAFKA_SASL_MECHANISM": mechanism,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint(),
        "OTEL_TRACES_EXPORTER": settings.app.traces_exporter,
        "ENVIRONMENT": settings.environment,
    }


def otlp_endpoint() -> str:
    return f"http://{svc(OTEL_GATEWAY_SERVICE, OBSERVABILITY_NAMESPACE, 4317)}"


def resource_quota_spec(app: AppSettings) -> dict[str, Any]:
    return {
        "hard": {
            "requests.cpu": app.requests_cpu,
            "requests.memory": app.requests_memory,
            "limits.cpu": app.limits_cpu,
            "limits.memory": app.limits_memory,
            "pods": str(app.pods),
            "services.loadbalancers": str(app.load_balancers),
            "services.nodeports": "0",
        }
    }


def limit_range_spec() -> dict[str, Any]:
    return {
        "limits": [
            {
                "type": "Container",
                "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
                "default": {"cpu": "500m", "memory": "256Mi"},
                "max": {"cpu": "2", "memory": "2Gi"},
            }
        ]
    }


def platform_namespaces(settings: StackSettings) -> list[str]:
    """Namespaces this stack creates, in creation order."""
    names: list[str] = []
    if settings.install_operators:
        if settings.kafka.mode == "strimzi":
            names.append(STRIMZI_NAMESPACE)
        if settings.postgres.mode == "cnpg":
            names.append(CNPG_NAMESPACE)
    if settings.observability.enabled:
        names.append(OBSERVABILITY_NAMESPACE)
        if settings.observability.node_log_agent:
            names.append(NODE_AGENTS_NAMESPACE)
    if settings.kafka.mode == "strimzi" or settings.postgres.mode == "cnpg":
        names.append(data_namespace(settings.environment))
    names.append(contract.app_namespace(settings.environment))
    return names
