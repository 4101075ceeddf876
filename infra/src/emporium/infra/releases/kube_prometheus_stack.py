"""Prometheus, Alertmanager and the Prometheus operator (component ``Observability``).

Grafana is its own release; node metrics come from the kubelet (cAdvisor), so no
privileged node-exporter runs.
"""

from __future__ import annotations

from emporium.infra import model, versions
from emporium.infra.releases.spec import ReleaseSpec, resources
from emporium.infra.settings import ObservabilitySettings


def release(obs: ObservabilitySettings) -> ReleaseSpec:
    values = {
        "fullnameOverride": "kps",
        "grafana": {"enabled": False, "forceDeployDashboards": True},
        "nodeExporter": {"enabled": False},
        "prometheusOperator": {"resources": resources("100m", "256Mi", "500m")},
        "kube-state-metrics": {"resources": resources("50m", "128Mi", "250m")},
        "alertmanager": {
            "alertmanagerSpec": {
                "replicas": obs.replicas,
                "resources": resources("50m", "128Mi", "250m"),
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
                "resources": resources("500m", "2Gi", "2"),
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
    }
    return ReleaseSpec(
        "kube-prometheus-stack",
        model.OBSERVABILITY_NAMESPACE,
        versions.KUBE_PROMETHEUS_STACK,
        values,
        "observability",
    )
