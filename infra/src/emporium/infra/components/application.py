"""The application namespace of one environment, its guard rails, and the Secrets
and settings the chart consumes (docs/configuration.md)."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from emporium.infra import contract, model
from emporium.infra.components._k8s import namespace
from emporium.infra.components.kafka import KafkaCredentials
from emporium.infra.settings import StackSettings


class ApplicationEnvironment(pulumi.ComponentResource):
    namespace: str
    secret_names: dict[str, str]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        provider: k8s.Provider,
        database_urls: dict[str, pulumi.Output[str]],
        kafka_credentials: dict[str, KafkaCredentials],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("emporium:platform:ApplicationEnvironment", name, None, opts)
        env = settings.environment
        self.namespace = contract.app_namespace(env)
        ns = namespace(self.namespace, provider, self, environment=env)
        in_ns = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[ns])

        k8s.core.v1.ResourceQuota(
            f"{name}-quota",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="emporium", namespace=self.namespace, labels=model.MANAGED_BY
            ),
            spec=model.resource_quota_spec(settings),
            opts=in_ns,
        )
        k8s.core.v1.LimitRange(
            f"{name}-limits",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="emporium", namespace=self.namespace, labels=model.MANAGED_BY
            ),
            spec=model.limit_range_spec(),
            opts=in_ns,
        )
        k8s.core.v1.ConfigMap(
            f"{name}-platform",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=contract.PLATFORM_CONFIGMAP, namespace=self.namespace, labels=model.MANAGED_BY
            ),
            data=model.platform_config(settings),
            opts=in_ns,
        )
        self.secret_names = {}
        for service in contract.DATA_SERVICES:
            credentials = kafka_credentials[service]
            secret_name = contract.service_secret_name(service)
            values = pulumi.Output.all(
                database_urls[service], credentials.username, credentials.password
            ).apply(lambda v: dict(zip(contract.SERVICE_SECRET_KEYS, v, strict=True)))
            k8s.core.v1.Secret(
                f"{name}-{service}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=secret_name,
                    namespace=self.namespace,
                    labels={**model.MANAGED_BY, "emporium.dev/service": service},
                ),
                type="Opaque",
                string_data=pulumi.Output.secret(values),
                opts=in_ns,
            )
            self.secret_names[service] = secret_name
        self.register_outputs({"namespace": self.namespace, "secrets": self.secret_names})
