"""The platform's Helm releases, one module per chart holding that chart's values
(``cert_manager``, ``trust_manager``, ``strimzi``, ``cloudnative_pg``,
``barman_cloud``, ``kube_prometheus_stack``, ``tempo``, ``loki``,
``grafana``, ``opentelemetry_collector``). Plain data computed from the stack
settings: the Pulumi components and the CDK Terrain stack both render them.
"""

from __future__ import annotations

from emporium.infra import model
from emporium.infra.releases import (
    barman_cloud,
    cert_manager,
    cloudnative_pg,
    grafana,
    kube_prometheus_stack,
    loki,
    opentelemetry_collector,
    strimzi,
    tempo,
    trust_manager,
)
from emporium.infra.releases.spec import ReleaseSpec, resources
from emporium.infra.settings import ObservabilitySettings, StackSettings

__all__ = [
    "ReleaseSpec",
    "all_releases",
    "certificate_releases",
    "observability_releases",
    "operator_releases",
    "resources",
]


def certificate_releases(settings: StackSettings) -> list[ReleaseSpec]:
    """cert-manager and trust-manager, where this stack installs them."""
    if not (settings.install_operators and model.uses_platform_ca(settings)):
        return []
    return [cert_manager.release(), trust_manager.release()]


def operator_releases(settings: StackSettings) -> list[ReleaseSpec]:
    """cert-manager, trust-manager, the Strimzi and CloudNativePG operators and the
    Barman Cloud plugin, where this stack installs them, each after what it needs."""
    if not settings.install_operators:
        return []
    releases = certificate_releases(settings)
    if settings.kafka.mode == "strimzi":
        releases.append(strimzi.release())
    if settings.postgres.mode == "cnpg":
        releases += [cloudnative_pg.release(), barman_cloud.release()]
    return releases


def observability_releases(environment: str, obs: ObservabilitySettings) -> list[ReleaseSpec]:
    """The stores first, then the collectors that write to them."""
    releases = [
        kube_prometheus_stack.release(obs),
        tempo.release(environment, obs),
        loki.release(obs),
        grafana.release(obs),
        opentelemetry_collector.gateway(obs),
    ]
    if obs.node_log_agent:
        releases.append(opentelemetry_collector.node_agent())
    return releases


def all_releases(settings: StackSettings) -> list[ReleaseSpec]:
    """Every release of the stack, operators first."""
    observability = (
        observability_releases(settings.environment, settings.observability)
        if settings.observability.enabled
        else []
    )
    return [*operator_releases(settings), *observability]
