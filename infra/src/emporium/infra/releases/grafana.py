"""Grafana (component ``Observability``) with Prometheus, Tempo and Loki as data
sources, wired so a trace links to its logs and metrics."""

from __future__ import annotations

from typing import Any

from emporium.infra import model, versions
from emporium.infra.releases.spec import ReleaseSpec, resources
from emporium.infra.settings import ObservabilitySettings


def datasources() -> list[dict[str, Any]]:
    """Prometheus, Tempo and Loki, wired so a trace links to its logs and metrics."""
    ns = model.OBSERVABILITY_NAMESPACE
    return [
        {
            "name": "Prometheus",
            "uid": "prometheus",
            "type": "prometheus",
            "url": f"http://{model.svc(model.PROMETHEUS_SERVICE, ns, 9090)}",
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
            "url": f"http://{model.svc(model.TEMPO_SERVICE, ns, 3200)}",
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
            "url": f"http://{model.svc(model.LOKI_SERVICE, ns, 3100)}",
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


def values(obs: ObservabilitySettings) -> dict[str, Any]:
    replicas = obs.replicas
    values: dict[str, Any] = {
        "replicas": replicas,
        "resources": resources("100m", "256Mi", "500m"),
        "service": {"type": "ClusterIP"},
        "datasources": {"datasources.yaml": {"apiVersion": 1, "datasources": datasources()}},
        # Dashboards shipped by the chart (ConfigMaps labelled grafana_dashboard).
        "sidecar": {
            "dashboards": {"enabled": True, "label": "grafana_dashboard", "searchNamespace": "ALL"},
            "resources": resources("50m", "96Mi", "200m"),
        },
    }
    if replicas > 1:
        values["podDisruptionBudget"] = {"maxUnavailable": 1}
    return values


def release(obs: ObservabilitySettings) -> ReleaseSpec:
    return ReleaseSpec(
        "grafana", model.OBSERVABILITY_NAMESPACE, versions.GRAFANA, values(obs), "observability"
    )
