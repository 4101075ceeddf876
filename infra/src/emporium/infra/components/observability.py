"""Prometheus, Tempo, Loki, Grafana and the OpenTelemetry Collector that feeds them."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from emporium.infra import model
from emporium.infra.components._k8s import helm_release, namespace
from emporium.infra.settings import StackSettings


class Observability(pulumi.ComponentResource):
    otlp_endpoint: str

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("emporium:platform:Observability", name, None, opts)
        self.otlp_endpoint = model.otlp_endpoint()
        namespaces = {
            ns: namespace(ns, provider, self)
            for ns in (model.OBSERVABILITY_NAMESPACE, model.NODE_AGENTS_NAMESPACE)
            if ns != model.NODE_AGENTS_NAMESPACE or settings.observability.node_log_agent
        }
        releases: dict[str, k8s.helm.v3.Release] = {}
        for spec in model.observability_releases(settings):
            # The stores come up before the collector that writes to them.
            after = [namespaces[spec.namespace]]
            if spec.name == "otel-collector":
                after += [releases[n] for n in ("kube-prometheus-stack", "tempo", "loki")]
            if spec.name == "otel-node-agent":
                after.append(releases["otel-collector"])
            releases[spec.name] = helm_release(spec, provider, self, after)
        self.register_outputs({"otlp_endpoint": self.otlp_endpoint})
