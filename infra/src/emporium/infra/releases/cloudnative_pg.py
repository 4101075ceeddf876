"""The CloudNativePG operator (component ``Postgres``), with its CRDs."""

from __future__ import annotations

from emporium.infra import model, versions
from emporium.infra.releases.spec import ReleaseSpec, resources


def release() -> ReleaseSpec:
    return ReleaseSpec(
        "cnpg",
        model.CNPG_NAMESPACE,
        versions.CLOUDNATIVE_PG,
        {
            "crds": {"create": True},
            "resources": resources("100m", "256Mi", "500m"),
            "monitoring": {"podMonitorEnabled": False},
        },
        "postgres",
    )
