"""Tempo, single binary (component ``Observability``): receives traces over OTLP
and writes span metrics and the service graph to Prometheus."""

from __future__ import annotations

from emporium.infra import model, versions
from emporium.infra.releases.spec import ReleaseSpec, resources
from emporium.infra.settings import ObservabilitySettings


def release(environment: str, obs: ObservabilitySettings) -> ReleaseSpec:
    ns = model.OBSERVABILITY_NAMESPACE
    prometheus_url = f"http://{model.svc(model.PROMETHEUS_SERVICE, ns, 9090)}"
    values = {
        "fullnameOverride": model.TEMPO_SERVICE,
        "persistence": {"enabled": True, "size": f"{obs.tempo_storage_gib}Gi"},
        "tempo": {
            # The chart reads the container's resources here (a top-level
            # ``resources`` is ignored).
            "resources": resources("250m", "1Gi", "1"),
            "retention": "72h" if environment == "prod" else "24h",
            "receivers": {
                "otlp": {
                    "protocols": {
                        "grpc": {"endpoint": "0.0.0.0:4317"},
                        "http": {"endpoint": "0.0.0.0:4318"},
                    }
                }
            },
            "metricsGenerator": {"enabled": True, "remoteWriteUrl": f"{prometheus_url}/api/v1/write"},
        },
    }
    return ReleaseSpec("tempo", ns, versions.TEMPO, values, "observability")
