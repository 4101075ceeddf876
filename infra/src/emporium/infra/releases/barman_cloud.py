"""CloudNativePG's Barman Cloud plugin (component ``Postgres``), with its
``ObjectStore`` CRD: WAL archiving and base backups to object storage. It must
run in the operator's namespace and gets its certificates from cert-manager."""

from __future__ import annotations

from emporium.infra import model, versions
from emporium.infra.releases.spec import ReleaseSpec, resources


def release() -> ReleaseSpec:
    return ReleaseSpec(
        "barman-cloud",
        model.CNPG_NAMESPACE,
        versions.BARMAN_CLOUD_PLUGIN,
        {
            "crds": {"create": True},
            "resources": resources("50m", "128Mi", "500m"),
        },
        "postgres",
        needs=("cert-manager", "cnpg"),
    )
