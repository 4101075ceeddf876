"""The OpenTelemetry Collector (component ``Observability``), twice from one chart:
the gateway every service exports to, which fans traces, metrics and logs out to
Tempo, Prometheus and Loki; and the node agent, a DaemonSet that reads container
stdout and forwards it to the gateway."""

from __future__ import annotations

from typing import Any

from emporium.infra import model, versions
from emporium.infra.releases.spec import ReleaseSpec, resources
from emporium.infra.settings import ObservabilitySettings

CONTRIB_IMAGE = "otel/opentelemetry-collector-contrib"


def gateway_values(obs: ObservabilitySettings) -> dict[str, Any]:
    ns = model.OBSERVABILITY_NAMESPACE
    replicas = obs.replicas
    values: dict[str, Any] = {
        "fullnameOverride": model.OTEL_GATEWAY_SERVICE,
        "mode": "deployment",
        "replicaCount": replicas,
        "image": {"repository": CONTRIB_IMAGE},
        "resources": resources("200m", "512Mi", "1"),
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
                "otlp/tempo": {
                    "endpoint": model.svc(model.TEMPO_SERVICE, ns, 4317),
                    "tls": {"insecure": True},
                },
                "prometheusremotewrite": {
                    "endpoint": f"http://{model.svc(model.PROMETHEUS_SERVICE, ns, 9090)}/api/v1/write",
                    "resource_to_telemetry_conversion": {"enabled": True},
                },
                "otlphttp/loki": {"endpoint": f"http://{model.svc(model.LOKI_SERVICE, ns, 3100)}/otlp"},
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


def node_agent_values() -> dict[str, Any]:
    """Reads container stdout on every node and forwards it to the gateway."""
    return {
        "fullnameOverride": "otel-node-agent",
        "mode": "daemonset",
        "image": {"repository": CONTRIB_IMAGE},
        "resources": resources("100m", "256Mi", "500m"),
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
                    "endpoint": model.svc(model.OTEL_GATEWAY_SERVICE, model.OBSERVABILITY_NAMESPACE, 4317),
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


def gateway(obs: ObservabilitySettings) -> ReleaseSpec:
    return ReleaseSpec(
        "otel-collector",
        model.OBSERVABILITY_NAMESPACE,
        versions.OTEL_COLLECTOR,
        gateway_values(obs),
        "observability",
    )


def node_agent() -> ReleaseSpec:
    return ReleaseSpec(
        "otel-node-agent",
        model.NODE_AGENTS_NAMESPACE,
        versions.OTEL_COLLECTOR,
        node_agent_values(),
        "observability",
    )
