"""cert-manager (component ``Certificates``), with its CRDs: issues the certificates
of the Kafka listener and the PostgreSQL servers from each environment's CA, and
those of the Barman Cloud plugin."""

from __future__ import annotations

from emporium.infra import model, versions
from emporium.infra.releases.spec import ReleaseSpec, resources


def release() -> ReleaseSpec:
    return ReleaseSpec(
        "cert-manager",
        model.CERT_MANAGER_NAMESPACE,
        versions.CERT_MANAGER,
        {
            # Kept on uninstall: deleting the CRDs would delete every certificate.
            "crds": {"enabled": True, "keep": True},
            "resources": resources("50m", "128Mi", "500m"),
            "webhook": {"resources": resources("20m", "64Mi", "200m")},
            "cainjector": {"resources": resources("20m", "128Mi", "200m")},
            # The post-install Job that waits for the API to answer.
            "startupapicheck": {"resources": resources("10m", "64Mi", "100m")},
        },
        "tls",
    )
