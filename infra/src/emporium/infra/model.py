"""Every specification of the platform, computed from the stack settings as plain data.

Nothing here talks to Pulumi or Terraform: the Pulumi components and the CDK
Terrain stack render these dictionaries, and the tests read them directly. A
change of sizing, ACL or chart value is therefore made once for both paths. The
Helm releases and their values are in ``emporium.infra.releases``, one module
per chart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emporium.infra import contract, versions
from emporium.infra.settings import AppSettings, KafkaSettings, PostgresSettings, StackSettings

# Namespaces shared by every environment on a cluster.
STRIMZI_NAMESPACE = "strimzi-system"
CNPG_NAMESPACE = "cnpg-system"
# cert-manager and trust-manager; trust-manager reads its sources here.
CERT_MANAGER_NAMESPACE = "cert-manager"
OBSERVABILITY_NAMESPACE = "observability"
# The node log agent reads /var/log/pods through hostPath, which no restricted
# namespace admits; it is the only workload outside the restricted level.
NODE_AGENTS_NAMESPACE = "observability-node-agents"
PRIVILEGED_NAMESPACES: frozenset[str] = frozenset({NODE_AGENTS_NAMESPACE})

KAFKA_CLUSTER = "emporium"
# The clients' listener: TLS with SCRAM-SHA-512 (docs/infrastructure.md).
KAFKA_LISTENER_PORT = 9093
KAFKA_SECURITY_PROTOCOL = "SASL_SSL"
KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"
# The listener's certificate (cert-manager), signed by the environment's CA.
KAFKA_LISTENER_TLS_SECRET = f"{KAFKA_CLUSTER}-kafka-listener-tls"
POSTGRES_PORT = 5432

CERT_MANAGER_API = "cert-manager.io/v1"
TRUST_MANAGER_API = "trust.cert-manager.io/v1alpha1"
BARMAN_CLOUD_API = "barmancloud.cnpg.io/v1"
# The name the Barman Cloud plugin registers with the CloudNativePG operator.
BARMAN_CLOUD_PLUGIN = "barman-cloud.cloudnative-pg.io"
BACKUP_OBJECT_STORE = "emporium-backups"

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


@dataclass(frozen=True)
class ResourceSpec:
    """One custom resource; ``namespace`` None for a cluster-scoped one."""

    api_version: str
    kind: str
    name: str
    namespace: str | None
    spec: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)


# --- Encryption in transit -------------------------------------------------------------
#
# Each environment has its own CA, kept by cert-manager (a self-signed root whose
# key never leaves the cert-manager namespace). It signs the Kafka listener's and
# every PostgreSQL server's certificate; trust-manager copies the CA certificate,
# and only that, into the application namespace as a ConfigMap the chart mounts.
# cert-manager renews the server certificates, Strimzi and CloudNativePG reload
# them, and trust-manager keeps the copy current if the CA itself is reissued.


def selfsigned_issuer(environment: str) -> str:
    return f"emporium-{environment}-selfsigned"


def ca_issuer(environment: str) -> str:
    """The ClusterIssuer of the environment's CA; also the CA's Certificate and Secret."""
    return f"emporium-{environment}-ca"


def ca_bundle(environment: str) -> str:
    """The trust-manager Bundle, and the ConfigMap it writes into the application namespace."""
    return f"emporium-{environment}-ca-bundle"


def _issuer_ref(environment: str) -> dict[str, str]:
    return {"name": ca_issuer(environment), "kind": "ClusterIssuer", "group": "cert-manager.io"}


def certificate_authority(environment: str) -> list[ResourceSpec]:
    """The environment's CA and its distribution, in creation order."""
    env_label = {"emporium.dev/environment": environment}
    ca = ca_issuer(environment)
    return [
        ResourceSpec(
            CERT_MANAGER_API,
            "ClusterIssuer",
            selfsigned_issuer(environment),
            None,
            {"selfSigned": {}},
            env_label,
        ),
        ResourceSpec(
            CERT_MANAGER_API,
            "Certificate",
            ca,
            CERT_MANAGER_NAMESPACE,
            {
                "isCA": True,
                "commonName": f"Emporium {environment} platform CA",
                "secretName": ca,
                # Ten years; reissued with the same key (rotationPolicy Never), so
                # certificates it signed stay valid while the bundle follows.
                "duration": "87600h",
                "renewBefore": "720h",
                "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Never"},
                "issuerRef": {
                    "name": selfsigned_issuer(environment),
                    "kind": "ClusterIssuer",
                    "group": "cert-manager.io",
                },
            },
            env_label,
        ),
        ResourceSpec(CERT_MANAGER_API, "ClusterIssuer", ca, None, {"ca": {"secretName": ca}}, env_label),
        ResourceSpec(
            TRUST_MANAGER_API,
            "Bundle",
            ca_bundle(environment),
            None,
            {
                "sources": [{"secret": {"name": ca, "key": contract.CA_BUNDLE_KEY}}],
                "target": {
                    "configMap": {"key": contract.CA_BUNDLE_KEY},
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": contract.app_namespace(environment)}
                    },
                },
            },
            env_label,
        ),
    ]


def _service_names(service: str, namespace: str) -> list[str]:
    """Every name a client may use for a Service: short, namespaced, and both FQDN forms."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def _server_certificate(
    environment: str, secret: str, dns_names: list[str], pkcs8: bool = False
) -> dict[str, Any]:
    key: dict[str, Any] = {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}
    if pkcs8:
        key["encoding"] = "PKCS8"
    return {
        "secretName": secret,
        # Names in the SAN only: a FQDN here may exceed the 64 characters of a CN.
        "dnsNames": dns_names,
        "duration": "2160h",
        "renewBefore": "720h",
        "usages": ["server auth", "digital signature"],
        "privateKey": key,
        "issuerRef": _issuer_ref(environment),
    }


def kafka_listener_certificate(environment: str) -> ResourceSpec:
    """The bootstrap Service and every broker (Strimzi advertises the brokers as
    ``<pod>.<cluster>-kafka-brokers.<ns>.svc``)."""
    ns = data_namespace(environment)
    brokers = f"{KAFKA_CLUSTER}-kafka-brokers.{ns}.svc"
    names = [
        *_service_names(f"{KAFKA_CLUSTER}-kafka-bootstrap", ns),
        f"*.{brokers}",
        f"*.{brokers}.cluster.local",
    ]
    # Strimzi reads the listener key in PKCS #8 only.
    return ResourceSpec(
        CERT_MANAGER_API,
        "Certificate",
        KAFKA_LISTENER_TLS_SECRET,
        ns,
        _server_certificate(environment, KAFKA_LISTENER_TLS_SECRET, names, pkcs8=True),
    )


def postgres_server_tls_secret(service: str) -> str:
    return f"{postgres_cluster_name(service)}-server-tls"


def postgres_server_certificate(environment: str, service: str) -> ResourceSpec:
    """The read-write, read-only and any-instance Services of the service's cluster."""
    ns = data_namespace(environment)
    cluster = postgres_cluster_name(service)
    names = [name for suffix in ("rw", "ro", "r") for name in _service_names(f"{cluster}-{suffix}", ns)]
    spec = _server_certificate(environment, postgres_server_tls_secret(service), names)
    # CloudNativePG reloads a labelled Secret when cert-manager renews it.
    spec["secretTemplate"] = {"labels": {"cnpg.io/reload": ""}}
    return ResourceSpec(
        CERT_MANAGER_API,
        "Certificate",
        postgres_server_tls_secret(service),
        ns,
        spec,
        {"emporium.dev/service": service},
    )


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
                    "name": "tls",
                    "port": KAFKA_LISTENER_PORT,
                    "type": "internal",
                    "tls": True,
                    "authentication": {"type": "scram-sha-512"},
                    # The environment's CA signs it (certificate_authority), so
                    # clients trust the same bundle as for PostgreSQL.
                    "configuration": {
                        "brokerCertChainAndKey": {
                            "secretName": KAFKA_LISTENER_TLS_SECRET,
                            "certificate": "tls.crt",
                            "key": "tls.key",
                        }
                    },
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
    """The login owns only this service's database; the server is verified against
    the environment's CA (mounted by the chart) and the host name it is reached by."""
    return (
        f"postgresql://{service}:{password}@{host}:{POSTGRES_PORT}/{service}"
        f"?sslmode=verify-full&sslrootcert={contract.POSTGRES_CA_FILE}"
    )


def postgres_cluster_spec(service: str, postgres: PostgresSettings) -> dict[str, Any]:
    storage: dict[str, Any] = {"size": f"{postgres.storage_gib}Gi"}
    if postgres.storage_class:
        storage["storageClass"] = postgres.storage_class
    spec: dict[str, Any] = {
        "instances": postgres.instances,
        "imageName": versions.POSTGRES_IMAGE,
        # Served with the certificate cert-manager issues from the environment's
        # CA (postgres_server_certificate); the chart mounts that CA's bundle.
        "certificates": {
            "serverTLSSecret": postgres_server_tls_secret(service),
            "serverCASecret": postgres_server_tls_secret(service),
        },
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
    if _backups(postgres):
        spec["plugins"] = [
            {
                "name": BARMAN_CLOUD_PLUGIN,
                "isWALArchiver": True,
                "parameters": {"barmanObjectName": BACKUP_OBJECT_STORE},
            }
        ]
    return spec


def _backups(postgres: PostgresSettings) -> bool:
    return bool(postgres.backup and postgres.backup.destination_path)


def backup_object_store_spec(postgres: PostgresSettings) -> dict[str, Any] | None:
    """The Barman Cloud plugin's ObjectStore of the environment: every cluster archives
    under ``<destinationPath>/<cluster name>/`` (the plugin's default server name)."""
    backup = postgres.backup
    if backup is None or not backup.destination_path:
        return None
    configuration: dict[str, Any] = {
        "destinationPath": backup.destination_path.rstrip("/"),
        "wal": {"compression": "gzip"},
        "data": {"compression": "gzip"},
    }
    if backup.endpoint_url:
        configuration["endpointURL"] = backup.endpoint_url
    if backup.credentials_secret:
        configuration["s3Credentials"] = {
            "accessKeyId": {"name": backup.credentials_secret, "key": "ACCESS_KEY_ID"},
            "secretAccessKey": {"name": backup.credentials_secret, "key": "ACCESS_SECRET_KEY"},
        }
    else:
        configuration["s3Credentials"] = {"inheritFromIAMRole": True}
    return {
        "configuration": configuration,
        "retentionPolicy": backup.retention,
        # The sidecar the plugin adds to every instance pod (archiving, backups).
        "instanceSidecarConfiguration": {
            "resources": {
                "requests": {"cpu": "100m", "memory": "256Mi"},
                "limits": {"cpu": "1", "memory": "512Mi"},
            }
        },
    }


def postgres_scheduled_backup_spec(service: str, postgres: PostgresSettings) -> dict[str, Any] | None:
    if not (postgres.backup and postgres.backup.destination_path):
        return None
    return {
        "schedule": postgres.backup.schedule,
        "backupOwnerReference": "self",
        "cluster": {"name": postgres_cluster_name(service)},
        "method": "plugin",
        "pluginConfiguration": {"name": BARMAN_CLOUD_PLUGIN},
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


def uses_platform_ca(settings: StackSettings) -> bool:
    """Whether this stack runs a TLS server of its own (Strimzi or CloudNativePG)."""
    return settings.kafka.mode == "strimzi" or settings.postgres.mode == "cnpg"


def platform_namespaces(settings: StackSettings) -> list[str]:
    """Namespaces this stack creates, in creation order."""
    names: list[str] = []
    if settings.install_operators:
        if uses_platform_ca(settings):
            names.append(CERT_MANAGER_NAMESPACE)
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
