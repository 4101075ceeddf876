"""Loki, single binary on a persistent volume (component ``Observability``)."""

from __future__ import annotations

from emporium.infra import model, versions
from emporium.infra.releases.spec import ReleaseSpec, resources
from emporium.infra.settings import ObservabilitySettings


def release(obs: ObservabilitySettings) -> ReleaseSpec:
    values = {
        "fullnameOverride": model.LOKI_SERVICE,
        "deploymentMode": "SingleBinary",
        "loki": {
            "auth_enabled": False,
            "commonConfig": {"replication_factor": 1},
            "storage": {"type": "filesystem"},
            "schemaConfig": {
                "configs": [
                    {
                        "from": "2026-01-01",
                        "store": "tsdb",
                        "object_store": "filesystem",
                        "schema": "v13",
                        "index": {"prefix": "index_", "period": "24h"},
                    }
                ]
            },
            "limits_config": {"allow_structured_metadata": True, "volume_enabled": True},
        },
        "singleBinary": {
            "replicas": 1,
            "resources": resources("250m", "1Gi", "1"),
            "persistence": {"enabled": True, "size": f"{obs.loki_storage_gib}Gi"},
        },
        "backend": {"replicas": 0},
        "read": {"replicas": 0},
        "write": {"replicas": 0},
        "gateway": {"enabled": False},
        "chunksCache": {"enabled": False},
        "resultsCache": {"enabled": False},
        "lokiCanary": {"enabled": False},
        "test": {"enabled": False},
    }
    return ReleaseSpec("loki", model.OBSERVABILITY_NAMESPACE, versions.LOKI, values, "observability")
