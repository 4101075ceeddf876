"""Every specification of the platform, computed from the stack settings as plain data.

Nothing here talks to Pulumi or Terraform: the Pulumi components and the CDK
Terrain stack render these dictionaries, and the tests read them directly. A
change of sizing, ACL or chart value is therefore made once for both paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emporium.infra import contract, versions
from emporium.infra.settings import KafkaSettings, PostgresSettings, StackSettings

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


def kafka_bootstrap(settings: StackSettings) -> str:
    if settings.kafka.mode == "external":
        return settings.kafka.external.bootstrap_servers
    return svc(f"{KAFKA_CLUSTER}-kafka-bootstrap", data_namespace(settings.environment), KAFKA_LISTENER_PORT)


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


def postgres_host(settings: StackSettings, service: str) -> str:
    return f"{postgres_cluster_name(service)}-rw.{data_namespace(settings.environment)}.svc.cluster.local"


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


def resource_quota_spec(settings: StackSettings) -> dict[str, Any]:
    app = settings.app
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


# --- Helm releases ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseSpec:
    name: str
    namespace: str
    pin: versions.ChartPin
    values: dict[str, Any]
    concern: str  # kafka | postgres | observability


def _res(cpu: str, memory: str, cpu_limit: str | None = None) -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit or cpu, "memory": memory}}


def strimzi_release() -> ReleaseSpec:
    return ReleaseSpec(
        "strimzi",
        STRIMZI_NAMESPACE,
        versions.STRIMZI,
        {
            "watchAnyNamespace": True,
            "resources": _res("200m", "384Mi", "1"),
            # Operands (Kafka, entity operator) get restricted security contexts.
            "extraEnvs": [{"name": "STRIMZI_POD_SECURITY_PROVIDER_CLASS", "value": "restricted"}],
        },
        "kafka",
    )


def cnpg_release() -> ReleaseSpec:
    return ReleaseSpec(
        "cnpg",
        CNPG_NAMESPACE,
        versions.CLOUDNATIVE_PG,
        {
            "crds": {"create": True},
            "resources": _res("100m", "256Mi", "500m"),
            "monitoring": {"podMonitorEnabled": False},
        },
        "postgres",
    )


def observability_releases(settings: StackSettings) -> list[ReleaseSpec]:
    obs = settings.observability
    ns = OBSERVABILITY_NAMESPACE
    prometheus_url = f"http://{svc(PROMETHEUS_SERVICE, ns, 9090)}"
    releases = [
        ReleaseSpec(
            "kube-prometheus-stack",
            ns,
            versions.KUBE_PROMETHEUS_STACK,
            {
                "fullnameOverride": "kps",
                # Grafana is its own release; node metrics come from the kubelet
                # (cAdvisor), so no privileged node-exporter runs.
                "grafana": {"enabled": False, "forceDeployDashboards": True},
                "nodeExporter": {"enabled": False},
                "prometheusOperator": {"resources": _res("100m", "256Mi", "500m")},
                "kube-state-metrics": {"resources": _res("50m", "128Mi", "250m")},
                "alertmanager": {
                    "alertmanagerSpec": {
                        "replicas": obs.replicas,
                        "resources": _res("50m", "128Mi", "250m"),
                    }
                },
                "prometheus": {
                    "service": {"type": "ClusterIP"},
                    "prometheusSpec": {
                        "replicas": obs.replicas,
                        "retention": obs.prometheus_retention,
                        "enableRemoteWriteReceiver": True,
                        "enableFeatures": ["exemplar-storage"],
                        # Pick up ServiceMonitors, PodMonitors and rules from every namespace.
                        "serviceMonitorSelectorNilUsesHelmValues": False,
                        "podMonitorSelectorNilUsesHelmValues": False,
                        "ruleSelectorNilUsesHelmValues": False,
                        "resources": _res("500m", "2Gi", "2"),
                        "storageSpec": {
                            "volumeClaimTemplate": {
                                "spec": {
                                    "accessModes": ["ReadWriteOnce"],
                                    "resources": {"requests": {"storage": f"{obs.prometheus_storage_gib}Gi"}},
                                }
                            }
                        },
                    },
                },
            },
            "observability",
        ),
        ReleaseSpec(
            "tempo",
            ns,
            versions.TEMPO,
            {
                "fullnameOverride": TEMPO_SERVICE,
                "resources": _res("250m", "1Gi", "1"),
                "persistence": {"enabled": True, "size": f"{obs.tempo_storage_gib}Gi"},
                "tempo": {
                    "retention": "72h" if settings.environment == "prod" else "24h",
                    "receivers": {
                        "otlp": {
                            "protocols": {
                                "grpc": {"endpoint": "0.0.0.0:4317"},
                                "http": {"endpoint": "0.0.0.0:4318"},
                            }
                        }
                    },
                    # Span metrics and the service graph land in Prometheus.
                    "metricsGenerator": {"enabled": True, "remoteWriteUrl": f"{prometheus_url}/api/v1/write"},
                },
            },
            "observability",
        ),
        ReleaseSpec(
            "loki",
            ns,
            versions.LOKI,
            {
                "fullnameOverride": LOKI_SERVICE,
                "deploymentMode": "SingleBinary",
                "loki": {
                    "auth_enabled": False,
                    "commonConfig": {"replication_factor": 1},
                    "storage": {"type": "filesystem"},
                    "schemaConfig": {
                        "configs": [
                            {
                                "from": "2026-01-01",
                                "store": "tsdb",
                                "object_store": "filesystem",
                                "schema": "v13",
                                "index": {"prefix": "index_", "period": "24h"},
                            }
                        ]
                    },
                    "limits_config": {"allow_structured_metadata": True, "volume_enabled": True},
                },
                "singleBinary": {
                    "replicas": 1,
                    "resources": _res("250m", "1Gi", "1"),
                    "persistence": {"enabled": True, "size": f"{obs.loki_storage_gib}Gi"},
                },
                "backend": {"replicas": 0},
                "read": {"replicas": 0},
                "write": {"replicas": 0},
                "gateway": {"enabled": False},
                "chunksCache": {"enabled": False},
                "resultsCache": {"enabled": False},
                "lokiCanary": {"enabled": False},
                "test": {"enabled": False},
            },
            "observability",
        ),
        ReleaseSpec("grafana", ns, versions.GRAFANA, grafana_values(settings), "observability"),
        ReleaseSpec(
            "otel-collector", ns, versions.OTEL_COLLECTOR, otel_gateway_values(settings), "observability"
        ),
    ]
    if obs.node_log_agent:
        releases.append(
            ReleaseSpec(
                "otel-node-agent",
                NODE_AGENTS_NAMESPACE,
                versions.OTEL_COLLECTOR,
                otel_agent_values(),
                "observability",
            )
        )
    return releases


def grafana_datasources() -> list[dict[str, Any]]:
    """Prometheus, Tempo and Loki, wired so a trace links to its logs and metrics."""
    ns = OBSERVABILITY_NAMESPACE
    return [
        {
            "name": "Prometheus",
            "uid": "prometheus",
            "type": "prometheus",
            "url": f"http://{svc(PROMETHEUS_SERVICE, ns, 9090)}",
            "access": "proxy",
            "isDefault": True,
            "jsonData": {
                "exemplarTraceIdDestinations": [{"name": "trace_id", "datasourceUid": "tempo"}],
            },
        },
        {
            "name": "Tempo",
            "uid": "tempo",
            "type": "tempo",
            "url": f"http://{svc(TEMPO_SERVICE, ns, 3200)}",
            "access": "proxy",
            "jsonData": {
                "tracesToLogsV2": {
                    "datasourceUid": "loki",
                    "filterByTraceID": True,
                    "spanStartTimeShift": "-5m",
                    "spanEndTimeShift": "5m",
                    "tags": [{"key": "service.name", "value": "service_name"}],
                },
                "tracesToMetrics": {
                    "datasourceUid": "prometheus",
                    "tags": [{"key": "service.name", "value": "service"}],
                    "queries": [
                        {
                            "name": "Request rate",
                            "query": "sum(rate(traces_spanmetrics_calls_total{$$__tags}[5m]))",
                        }
                    ],
                },
                "serviceMap": {"datasourceUid": "prometheus"},
                "nodeGraph": {"enabled": True},
                "lokiSearch": {"datasourceUid": "loki"},
            },
        },
        {
            "name": "Loki",
            "uid": "loki",
            "type": "loki",
            "url": f"http://{svc(LOKI_SERVICE, ns, 3100)}",
            "access": "proxy",
            "jsonData": {
                "derivedFields": [
                    {
                        "name": "trace_id",
                        "matcherType": "label",
                        "matcherRegex": "trace_id",
                        "datasourceUid": "tempo",
                        "url": "$${__value.raw}",
                    },
                    {
                        "name": "trace_id_in_line",
                        "matcherRegex": '"trace_id":\\s*"(\\w+)"',
                        "datasourceUid": "tempo",
                        "url": "$${__value.raw}",
                    },
                ]
            },
        },
    ]


def grafana_values(settings: StackSettings) -> dict[str, Any]:
    replicas = settings.observability.replicas
    values: dict[str, Any] = {
        "replicas": replicas,
        "resources": _res("100m", "256Mi", "500m"),
        "service": {"type": "ClusterIP"},
        "datasources": {"datasources.yaml": {"apiVersion": 1, "datasources": grafana_datasources()}},
        # Dashboards shipped by the chart (ConfigMaps labelled grafana_dashboard).
        "sidecar": {
            "dashboards": {"enabled": True, "label": "grafana_dashboard", "searchNamespace": "ALL"},
            "resources": _res("50m", "96Mi", "200m"),
        },
    }
    if replicas > 1:
        values["podDisruptionBudget"] = {"maxUnavailable": 1}
    return values


def otel_gateway_values(settings: StackSettings) -> dict[str, Any]:
    ns = OBSERVABILITY_NAMESPACE
    replicas = settings.observability.replicas
    values: dict[str, Any] = {
        "fullnameOverride": OTEL_GATEWAY_SERVICE,
        "mode": "deployment",
        "replicaCount": replicas,
        "image": {"repository": "otel/opentelemetry-collector-contrib"},
        "resources": _res("200m", "512Mi", "1"),
        "presets": {"kubernetesAttributes": {"enabled": True}},
        "config": {
            "receivers": {
                "otlp": {
                    "protocols": {
                        "grpc": {"endpoint": "0.0.0.0:4317"},
                        "http": {"endpoint": "0.0.0.0:4318"},
                    }
                }
            },
            "processors": {
                "memory_limiter": {
                    "check_interval": "1s",
                    "limit_percentage": 80,
                    "spike_limit_percentage": 20,
                },
                "batch": {},
            },
            "exporters": {
                "otlp/tempo": {"endpoint": svc(TEMPO_SERVICE, ns, 4317), "tls": {"insecure": True}},
                "prometheusremotewrite": {
                    "endpoint": f"http://{svc(PROMETHEUS_SERVICE, ns, 9090)}/api/v1/write",
                    "resource_to_telemetry_conversion": {"enabled": True},
                },
                "otlphttp/loki": {"endpoint": f"http://{svc(LOKI_SERVICE, ns, 3100)}/otlp"},
            },
            "service": {
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": ["memory_limiter", "k8sattributes", "batch"],
                        "exporters": ["otlp/tempo"],
                    },
                    "metrics": {
                        "receivers": ["otlp"],
                        "processors": ["memory_limiter", "k8sattributes", "batch"],
                        "exporters": ["prometheusremotewrite"],
                    },
                    "logs": {
                        "receivers": ["otlp"],
                        "processors": ["memory_limiter", "k8sattributes", "batch"],
                        "exporters": ["otlphttp/loki"],
                    },
                }
            },
        },
    }
    if replicas > 1:
        values["podDisruptionBudget"] = {"enabled": True, "maxUnavailable": 1}
    return values


def otel_agent_values() -> dict[str, Any]:
    """Reads container stdout on every node and forwards it to the gateway."""
    return {
        "fullnameOverride": "otel-node-agent",
        "mode": "daemonset",
        "image": {"repository": "otel/opentelemetry-collector-contrib"},
        "resources": _res("100m", "256Mi", "500m"),
        "presets": {"logsCollection": {"enabled": True}, "kubernetesAttributes": {"enabled": True}},
        "config": {
            "receivers": {
                "filelog": {
                    # The services write JSON lines (emporium.kit.logging): after the
                    # runtime's container format, parse them so the record carries the
                    # span's trace and span ids (Loki to Tempo), its severity and time.
                    "operators": [
                        {"type": "container", "id": "container-parser"},
                        {
                            "type": "json_parser",
                            "id": "emporium-json",
                            "if": 'body matches "^\\\\{"',
                            "parse_from": "body",
                            "parse_to": "attributes",
                            "timestamp": {
                                "parse_from": "attributes.ts",
                                "layout_type": "gotime",
                                "layout": "2006-01-02T15:04:05.000Z",
                            },
                            "severity": {"parse_from": "attributes.level"},
                            "trace": {
                                "trace_id": {"parse_from": "attributes.trace_id"},
                                "span_id": {"parse_from": "attributes.span_id"},
                            },
                        },
                    ]
                }
            },
            "exporters": {
                "otlp/gateway": {
                    "endpoint": svc(OTEL_GATEWAY_SERVICE, OBSERVABILITY_NAMESPACE, 4317),
                    "tls": {"insecure": True},
                }
            },
            "service": {
                "pipelines": {
                    "logs": {"exporters": ["otlp/gateway"]},
                    "traces": None,
                    "metrics": None,
                }
            },
        },
    }


def all_releases(settings: StackSettings) -> list[ReleaseSpec]:
    releases: list[ReleaseSpec] = []
    if settings.install_operators:
        if settings.kafka.mode == "strimzi":
            releases.append(strimzi_release())
        if settings.postgres.mode == "cnpg":
            releases.append(cnpg_release())
    if settings.observability.enabled:
        releases.extend(observability_releases(settings))
    return releases


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
