"""Prometheus, Tempo, Loki, Grafana and the OpenTelemetry Collector that feeds them
(their values: ``emporium.infra.releases``)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from emporium.infra import model, releases
from emporium.infra.components._k8s import helm_release, namespace
from emporium.infra.settings import ObservabilitySettings, StackSettings


@dataclass(frozen=True)
class ObservabilityArgs:
    environment: str
    observability: ObservabilitySettings

    @classmethod
    def from_settings(cls, settings: StackSettings) -> ObservabilityArgs:
        return cls(environment=settings.environment, observability=settings.observability)


class Observability(pulumi.ComponentResource):
    """Pass the Kubernetes provider in ``opts.providers``."""

    otlp_endpoint: str

    def __init__(
        self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("emporium:platform:Observability", name, None, opts)
        self.otlp_endpoint = model.otlp_endpoint()
        obs = args.observability
        namespaces = {
            ns: namespace(ns, self)
            for ns in (model.OBSERVABILITY_NAMESPACE, model.NODE_AGENTS_NAMESPACE)
            if ns != model.NODE_AGENTS_NAMESPACE or obs.node_log_agent
        }
        created: dict[str, k8s.helm.v3.Release] = {}
        for spec in releases.observability_releases(args.environment, obs):
            # The stores come up before the collector that writes to them.
            after = [namespaces[spec.namespace]]
            if spec.name == "otel-collector":
                after += [created[n] for n in ("kube-prometheus-stack", "tempo", "loki")]
            if spec.name == "otel-node-agent":
                after.append(created["otel-collector"])
            created[spec.name] = helm_release(spec, self, after)
        self.register_outputs({"otlp_endpoint": self.otlp_endpoint})
