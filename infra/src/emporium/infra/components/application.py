"""The application namespace of one environment, its guard rails, and the Secrets
and settings the chart consumes (docs/configuration.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from emporium.infra import contract, model
from emporium.infra.components._k8s import namespace
from emporium.infra.components.kafka import KafkaCredentials
from emporium.infra.settings import AppSettings, StackSettings


@dataclass(frozen=True)
class ApplicationEnvironmentArgs:
    environment: str
    app: AppSettings
    # The platform ConfigMap's data (model.platform_config).
    platform_config: Mapping[str, str]
    # DATABASE_URL by service, each a Pulumi secret (the Postgres component).
    database_urls: Mapping[str, pulumi.Output[str]]
    # Kafka login by service (the Kafka component).
    kafka_credentials: Mapping[str, KafkaCredentials]

    @classmethod
    def from_settings(
        cls,
        settings: StackSettings,
        database_urls: Mapping[str, pulumi.Output[str]],
        kafka_credentials: Mapping[str, KafkaCredentials],
    ) -> ApplicationEnvironmentArgs:
        return cls(
            environment=settings.environment,
            app=settings.app,
            platform_config=model.platform_config(settings),
            database_urls=database_urls,
            kafka_credentials=kafka_credentials,
        )


class ApplicationEnvironment(pulumi.ComponentResource):
    """Pass the Kubernetes provider in ``opts.providers``."""

    namespace: str
    secret_names: dict[str, str]

    def __init__(
        self, name: str, args: ApplicationEnvironmentArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("emporium:platform:ApplicationEnvironment", name, None, opts)
        env = args.environment
        self.namespace = contract.app_namespace(env)
        ns = namespace(self.namespace, self, environment=env)
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])

        k8s.core.v1.ResourceQuota(
            f"{name}-quota",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="emporium", namespace=self.namespace, labels=model.MANAGED_BY
            ),
            spec=model.resource_quota_spec(args.app),
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
            data=dict(args.platform_config),
            opts=in_ns,
        )
        self.secret_names = {}
        for service in contract.DATA_SERVICES:
            credentials = args.kafka_credentials[service]
            secret_name = contract.service_secret_name(service)
            values = pulumi.Output.all(
                args.database_urls[service], credentials.username, credentials.password
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
