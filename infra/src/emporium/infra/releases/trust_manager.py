"""trust-manager (component ``Certificates``), with its CRD: copies each
environment's CA certificate from the cert-manager namespace into that
environment's application namespace (a ConfigMap: it is no secret), and keeps
the copy current."""

from __future__ import annotations

from emporium.infra import model, versions
from emporium.infra.releases.spec import ReleaseSpec, resources


def release() -> ReleaseSpec:
    return ReleaseSpec(
        "trust-manager",
        model.CERT_MANAGER_NAMESPACE,
        versions.TRUST_MANAGER,
        {
            "crds": {"enabled": True, "keep": True},
            # The sources (the environments' CA Secrets) are read here only.
            "app": {"trust": {"namespace": model.CERT_MANAGER_NAMESPACE}},
            # Only our own CAs: no public CA package (and no init container for it).
            "defaultPackage": {"enabled": False},
            # ConfigMap targets only, so trust-manager gets no read access to Secrets elsewhere.
            "secretTargets": {"enabled": False},
            "resources": resources("25m", "64Mi", "250m"),
        },
        "tls",
        needs=("cert-manager",),
    )
