"""Encryption in transit: cert-manager and trust-manager, and the environment's CA
that signs the Kafka listener's and the PostgreSQL servers' certificates, its
certificate copied into the application namespace (docs/infrastructure.md)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from emporium.infra import model
from emporium.infra.components._k8s import helm_release, namespace, resource
from emporium.infra.releases import certificate_releases
from emporium.infra.settings import StackSettings


@dataclass(frozen=True)
class CertificatesArgs:
    settings: StackSettings


class Certificates(pulumi.ComponentResource):
    """Pass the Kubernetes provider in ``opts.providers``. Hand ``issuer`` to the
    components whose certificates it signs (they depend on it)."""

    issuer: pulumi.Resource

    def __init__(self, name: str, args: CertificatesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("emporium:platform:Certificates", name, None, opts)
        env = args.settings.environment
        waits: list[pulumi.Resource] = []
        installs = certificate_releases(args.settings)
        if installs:
            waits.append(namespace(model.CERT_MANAGER_NAMESPACE, self))
            installed: dict[str, pulumi.Resource] = {}
            for spec in installs:
                needs = [installed[n] for n in spec.needs if n in installed]
                installed[spec.name] = helm_release(spec, self, [*waits, *needs])
            waits = list(installed.values())
        # In order, each after the one before: issuer, CA, CA issuer, bundle.
        created: dict[tuple[str, str], pulumi.Resource] = {}
        previous: list[pulumi.Resource] = []
        for spec in model.certificate_authority(env):
            created[(spec.kind, spec.name)] = resource(spec, self, depends_on=[*waits, *previous])
            previous = [created[(spec.kind, spec.name)]]
        # What the server certificates are signed by.
        self.issuer = created[("ClusterIssuer", model.ca_issuer(env))]
        self.register_outputs({"issuer": model.ca_issuer(env), "bundle": model.ca_bundle(env)})
