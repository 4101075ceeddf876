"""The namespace that holds one environment's Kafka and Postgres clusters."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from emporium.infra import model
from emporium.infra.components._k8s import namespace


@dataclass(frozen=True)
class DataNamespaceArgs:
    environment: str


class DataNamespace(pulumi.ComponentResource):
    """Pass the Kubernetes provider in ``opts.providers``."""

    namespace: k8s.core.v1.Namespace

    def __init__(
        self, name: str, args: DataNamespaceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("emporium:platform:DataNamespace", name, None, opts)
        self.namespace = namespace(model.data_namespace(args.environment), self, args.environment)
        self.register_outputs({"name": model.data_namespace(args.environment)})
