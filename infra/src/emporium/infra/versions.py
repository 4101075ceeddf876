"""Pinned Helm charts and operand versions, shared by the Pulumi program and the
CDK Terrain path. Where each version was found is in docs/infrastructure.md;
upgrade them here, in one commit, after reading the charts' release notes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChartPin:
    chart: str
    version: str
    # A classic Helm repository URL, or None for an OCI chart whose reference is ``chart``.
    repository: str | None


STRIMZI = ChartPin(
    chart="oci://quay.io/strimzi-helm/strimzi-kafka-operator",
    version="1.2.0",
    repository=None,
)
CLOUDNATIVE_PG = ChartPin(
    chart="cloudnative-pg",
    version="0.29.0",
    repository="https://cloudnative-pg.github.io/charts",
)
KUBE_PROMETHEUS_STACK = ChartPin(
    chart="kube-prometheus-stack",
    version="89.2.3",
    repository="https://prometheus-community.github.io/helm-charts",
)
# Grafana, Tempo and Loki charts moved to the community repository in 2026.
TEMPO = ChartPin(
    chart="tempo",
    version="1.25.1",
    repository="https://grafana-community.github.io/helm-charts",
)
LOKI = ChartPin(
    chart="loki",
    version="8.2.0",
    repository="https://grafana-community.github.io/helm-charts",
)
GRAFANA = ChartPin(
    chart="grafana",
    version="13.2.1",
    repository="https://grafana-community.github.io/helm-charts",
)
OTEL_COLLECTOR = ChartPin(
    chart="opentelemetry-collector",
    version="0.158.3",
    repository="https://open-telemetry.github.io/opentelemetry-helm-charts",
)

ALL_CHARTS: tuple[ChartPin, ...] = (
    STRIMZI,
    CLOUDNATIVE_PG,
    KUBE_PROMETHEUS_STACK,
    TEMPO,
    LOKI,
    GRAFANA,
    OTEL_COLLECTOR,
)

# Operands run by the operators.
KAFKA_VERSION = "4.3.1"
POSTGRES_IMAGE = "ghcr.io/cloudnative-pg/postgresql:18.4-standard-trixie"
