"""Pinned Helm charts and operand versions, shared by the Pulumi program and the
CDK Terrain path: the one place that names them (docs/infrastructure.md lists
them and a test keeps that list equal to this one). Upgrade them here, in one
commit, after checking the version in the chart's published index and reading
its release notes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChartPin:
    """One pinned chart: the single source of its version and repository.

    ``docs/infrastructure.md`` lists every pin in a table that a test compares
    with ``ALL_CHARTS``, so the code, the repositories and the docs cannot drift.
    """

    title: str  # how the docs name it
    chart: str
    version: str
    # A classic Helm repository URL, or None for an OCI chart whose reference is ``chart``.
    repository: str | None
    app_version: str  # the chart's ``appVersion`` in the published index
    # The published index the version was checked against (for an OCI chart, the
    # project's classic repository, which publishes the same releases).
    index: str


def _index(repository: str) -> str:
    return repository.rstrip("/") + "/index.yaml"


STRIMZI = ChartPin(
    title="Strimzi operator",
    chart="oci://quay.io/strimzi-helm/strimzi-kafka-operator",
    version="1.2.0",
    repository=None,
    app_version="1.2.0",
    index="https://strimzi.io/charts/index.yaml",
)
CLOUDNATIVE_PG = ChartPin(
    title="CloudNativePG operator",
    chart="cloudnative-pg",
    version="0.29.0",
    repository="https://cloudnative-pg.github.io/charts",
    app_version="1.30.0",
    index=_index("https://cloudnative-pg.github.io/charts"),
)
# Certificates of the platform's TLS listeners and the CA every environment
# trusts (docs/infrastructure.md, "Encryption in transit"); the Barman Cloud
# plugin needs cert-manager too.
CERT_MANAGER = ChartPin(
    title="cert-manager",
    chart="cert-manager",
    version="v1.21.1",
    repository="https://charts.jetstack.io",
    app_version="v1.21.1",
    index=_index("https://charts.jetstack.io"),
)
# Copies each environment's CA certificate (never its key) into the
# application namespace, and keeps the copy current.
TRUST_MANAGER = ChartPin(
    title="trust-manager",
    chart="trust-manager",
    version="v0.24.0",
    repository="https://charts.jetstack.io",
    app_version="v0.24.0",
    index=_index("https://charts.jetstack.io"),
)
# CloudNativePG's supported backup path since 1.26 (the in-tree
# barmanObjectStore is deprecated from 1.30); it must run in the operator's namespace.
BARMAN_CLOUD_PLUGIN = ChartPin(
    title="Barman Cloud plugin for CloudNativePG",
    chart="plugin-barman-cloud",
    version="0.7.0",
    repository="https://cloudnative-pg.github.io/charts",
    app_version="v0.13.0",
    index=_index("https://cloudnative-pg.github.io/charts"),
)
KUBE_PROMETHEUS_STACK = ChartPin(
    title="kube-prometheus-stack",
    chart="kube-prometheus-stack",
    version="88.5.3",
    repository="https://prometheus-community.github.io/helm-charts",
    app_version="v0.93.1",
    index=_index("https://prometheus-community.github.io/helm-charts"),
)
# Grafana, Tempo and Loki charts moved to the community repository in 2026.
TEMPO = ChartPin(
    title="Tempo (single binary)",
    chart="tempo",
    version="1.26.7",
    repository="https://grafana-community.github.io/helm-charts",
    app_version="2.10.1",
    index=_index("https://grafana-community.github.io/helm-charts"),
)
LOKI = ChartPin(
    title="Loki",
    chart="loki",
    version="8.1.3",
    repository="https://grafana-community.github.io/helm-charts",
    app_version="3.6.7",
    index=_index("https://grafana-community.github.io/helm-charts"),
)
GRAFANA = ChartPin(
    title="Grafana",
    chart="grafana",
    version="12.11.1",
    repository="https://grafana-community.github.io/helm-charts",
    app_version="13.2.0",
    index=_index("https://grafana-community.github.io/helm-charts"),
)
OTEL_COLLECTOR = ChartPin(
    title="OpenTelemetry Collector",
    chart="opentelemetry-collector",
    version="0.170.0",
    repository="https://open-telemetry.github.io/opentelemetry-helm-charts",
    app_version="0.158.0",
    index=_index("https://open-telemetry.github.io/opentelemetry-helm-charts"),
)

ALL_CHARTS: tuple[ChartPin, ...] = (
    STRIMZI,
    CLOUDNATIVE_PG,
    CERT_MANAGER,
    TRUST_MANAGER,
    BARMAN_CLOUD_PLUGIN,
    KUBE_PROMETHEUS_STACK,
    TEMPO,
    LOKI,
    GRAFANA,
    OTEL_COLLECTOR,
)

# Operands run by the operators.
KAFKA_VERSION = "4.3.1"
POSTGRES_IMAGE = "ghcr.io/cloudnative-pg/postgresql:18.4-standard-trixie"

# Terraform providers of the CDK Terrain path. The synthesized configuration
# requires exactly these versions (the cdktn-provider-* bindings were generated
# from later releases, which the Go module proxy does not serve); they are the
# versions `tofu validate` checks it with (scripts/install-tofu.sh builds them
# at the pins of scripts/versions.env, which a test keeps equal to these).
TERRAFORM_PROVIDERS: dict[str, str] = {
    "kubernetes": "3.2.1",
    "helm": "3.2.0",
    "random": "3.9.0",
}
