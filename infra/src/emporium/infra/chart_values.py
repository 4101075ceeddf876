"""Turn a stack's outputs into the chart's values for that environment.

    pulumi stack output --stack dev --json \\
      | uv run --project infra python -m emporium.infra.chart_values > values-dev.infra.yaml
    helm upgrade --install emporium charts/emporium -n emporium-dev \\
      -f charts/emporium/values-dev.yaml -f values-dev.infra.yaml

The overlay names the Secrets and the ConfigMap the infrastructure created; it never
carries a credential (the chart reads them from the Secrets with envFrom).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml

from emporium.infra import contract, model
from emporium.infra.settings import StackSettings


def otlp_endpoint() -> str:
    return model.otlp_endpoint()


def _namespace_peer(namespace: str, pod_labels: dict[str, str] | None = None) -> dict[str, Any]:
    peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
    if pod_labels:
        peer["podSelector"] = {"matchLabels": pod_labels}
    return peer


def chart_values(settings: StackSettings) -> dict[str, Any]:
    """Values overlay for ``charts/emporium``; exported by the stack as ``chartValues``.

    It points the chart at the ConfigMap and Secrets created here (the chart's
    default Secret name ``emporium-<service>`` is the one created) and at the CA
    bundle the services verify Kafka and PostgreSQL with, and opens the chart's
    NetworkPolicies towards the namespaces this stack put Kafka (its TLS
    listener), Postgres and the collector in. Topics belong to the infrastructure, not the chart.
    """
    data = model.data_namespace(settings.environment)
    network: dict[str, Any] = {
        "telemetry": {"peers": [_namespace_peer(model.OBSERVABILITY_NAMESPACE)], "ports": [4317]},
        "metricsScrapers": [_namespace_peer(model.OBSERVABILITY_NAMESPACE)],
    }
    if settings.kafka.mode == "strimzi":
        network["kafka"] = {
            "peers": [_namespace_peer(data, {"strimzi.io/cluster": model.KAFKA_CLUSTER})],
            "ports": [model.KAFKA_LISTENER_PORT],
        }
    if settings.postgres.mode == "cnpg":
        network["postgres"] = {
            "peers": [_namespace_peer(data, {"cnpg.io/podRole": "instance"})],
            "ports": [model.POSTGRES_PORT],
        }
    platform: dict[str, Any] = {"configMapName": contract.PLATFORM_CONFIGMAP}
    # trust-manager writes the environment's CA into this ConfigMap (model.certificate_authority).
    bundle = {
        "configMapName": model.ca_bundle(settings.environment),
        "secretName": "",
        "key": contract.CA_BUNDLE_KEY,
    }
    if settings.kafka.mode == "strimzi":
        platform["kafkaCa"] = bundle
    if settings.postgres.mode == "cnpg":
        platform["postgresCa"] = dict(bundle)
    return {
        "environment": settings.environment,
        "platform": platform,
        "networkPolicy": network,
        "kafkaTopics": {"enabled": False},
    }


def from_stack_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    values = outputs.get("chartValues")
    if not isinstance(values, dict):
        raise SystemExit("stack outputs have no chartValues: run `pulumi up` on the stack first")
    return values


def main() -> None:
    outputs = json.load(sys.stdin)
    yaml.safe_dump(from_stack_outputs(outputs), sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
