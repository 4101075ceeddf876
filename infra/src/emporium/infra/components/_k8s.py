"""Small helpers shared by the components: namespaces, Helm releases, custom resources.

Each resource is a child of its component and takes the Kubernetes provider the
component was given in ``opts.providers``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from emporium.infra import model
from emporium.infra.model import ResourceSpec
from emporium.infra.releases import ReleaseSpec


def namespace(name: str, parent: pulumi.Resource, environment: str | None = None) -> k8s.core.v1.Namespace:
    return k8s.core.v1.Namespace(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(name=name, labels=model.namespace_labels(name, environment)),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def helm_release(
    spec: ReleaseSpec,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
) -> k8s.helm.v3.Release:
    pin = spec.pin
    return k8s.helm.v3.Release(
        spec.name,
        k8s.helm.v3.ReleaseArgs(
            name=spec.name,
            namespace=spec.namespace,
            chart=pin.chart,
            version=pin.version,
            repository_opts=(k8s.helm.v3.RepositoryOptsArgs(repo=pin.repository) if pin.repository else None),
            values=spec.values,
            create_namespace=False,
            # Wait for the workloads so dependants (custom resources) find their CRDs.
            skip_await=False,
            timeout=900,
            max_history=10,
        ),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )


def custom_resource(
    api_version: str,
    kind: str,
    name: str,
    namespace: str | None,
    spec: dict[str, Any],
    parent: pulumi.Resource,
    labels: dict[str, str] | None = None,
    depends_on: Sequence[pulumi.Resource] = (),
    resource_name: str | None = None,
) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        resource_name or f"{kind.lower()}-{name}",
        api_version=api_version,
        kind=kind,
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=name, namespace=namespace, labels={**model.MANAGED_BY, **(labels or {})}
        ),
        spec=spec,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )


def resource(
    spec: ResourceSpec, parent: pulumi.Resource, depends_on: Sequence[pulumi.Resource] = ()
) -> k8s.apiextensions.CustomResource:
    """A custom resource of ``emporium.infra.model``."""
    return custom_resource(
        spec.api_version,
        spec.kind,
        spec.name,
        spec.namespace,
        spec.spec,
        parent,
        labels=spec.labels,
        depends_on=depends_on,
    )
