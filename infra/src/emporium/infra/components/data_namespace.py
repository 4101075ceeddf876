"""The namespace that holds one environment's Kafka and Postgres clusters."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from emporium.infra import model
from emporium.infra.components._k8s import namespace


class DataNamespace(pulumi.ComponentResource):
    namespace: k8s.core.v1.Namespace

    def __init__(
        self,
        name: str,
        environment: str,
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("emporium:platform:DataNamespace", name, None, opts)
        self.namespace = namespace(model.data_namespace(environment), provider, self, environment)
        self.register_outputs({"name": model.data_namespace(environment)})
