"""Kafka: the Strimzi operator and a KRaft cluster with topics and one user per
service, or the address and credentials of an existing Kafka."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from emporium.infra import contract, model
from emporium.infra.components._k8s import custom_resource, helm_release, namespace
from emporium.infra.passwords import GeneratedPassword
from emporium.infra.settings import StackSettings

STRIMZI_API = "kafka.strimzi.io/v1"


@dataclass(frozen=True)
class KafkaCredentials:
    username: pulumi.Input[str]
    password: pulumi.Output[str]  # always a Pulumi secret


class Kafka(pulumi.ComponentResource):
    bootstrap_servers: str
    credentials: dict[str, KafkaCredentials]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        provider: k8s.Provider,
        data_namespace: k8s.core.v1.Namespace | None,
        external_credentials: pulumi.Output[Mapping[str, Mapping[str, str]]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("emporium:platform:Kafka", name, None, opts)
        self.bootstrap_servers = model.kafka_bootstrap(settings)
        if settings.kafka.mode == "external":
            self.credentials = _external(external_credentials)
        else:
            assert data_namespace is not None
            self.credentials = self._strimzi(name, settings, provider, data_namespace)
        self.register_outputs({"bootstrap_servers": self.bootstrap_servers})

    def _strimzi(
        self,
        name: str,
        settings: StackSettings,
        provider: k8s.Provider,
        data_namespace: k8s.core.v1.Namespace,
    ) -> dict[str, KafkaCredentials]:
        ns = model.data_namespace(settings.environment)
        waits: list[pulumi.Resource] = [data_namespace]
        if settings.install_operators:
            operator_ns = namespace(model.STRIMZI_NAMESPACE, provider, self)
            waits.append(helm_release(model.strimzi_release(), provider, self, [operator_ns]))

        cluster_label = {"strimzi.io/cluster": model.KAFKA_CLUSTER}
        pools = [
            custom_resource(
                STRIMZI_API,
                "KafkaNodePool",
                pool,
                ns,
                spec,
                provider,
                self,
                labels=cluster_label,
                depends_on=waits,
            )
            for pool, spec in model.kafka_node_pools(settings.kafka).items()
        ]
        cluster = custom_resource(
            STRIMZI_API,
            "Kafka",
            model.KAFKA_CLUSTER,
            ns,
            model.kafka_cluster_spec(settings.kafka),
            provider,
            self,
            depends_on=[*waits, *pools],
        )
        for topic in model.kafka_topics(settings.kafka):
            custom_resource(
                STRIMZI_API,
                "KafkaTopic",
                topic.name,
                ns,
                topic.spec,
                provider,
                self,
                labels=cluster_label,
                depends_on=[cluster],
            )

        credentials: dict[str, KafkaCredentials] = {}
        for service in contract.DATA_SERVICES:
            child = pulumi.ResourceOptions(parent=self)
            generated = GeneratedPassword(f"{name}-{service}-password", opts=child)
            password = pulumi.Output.secret(generated.result)
            secret = k8s.core.v1.Secret(
                f"{name}-{service}-password",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=model.kafka_password_secret(service), namespace=ns, labels=model.MANAGED_BY
                ),
                type="Opaque",
                string_data={"password": password},
                opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[data_namespace]),
            )
            custom_resource(
                STRIMZI_API,
                "KafkaUser",
                service,
                ns,
                model.kafka_user_spec(service),
                provider,
                self,
                labels=cluster_label,
                depends_on=[cluster, secret],
            )
            credentials[service] = KafkaCredentials(username=service, password=password)
        return credentials


def _external(
    configured: pulumi.Output[Mapping[str, Mapping[str, str]]] | None,
) -> dict[str, KafkaCredentials]:
    if configured is None:
        raise ValueError("kafka.mode external needs the secret config emporium:externalKafkaCredentials")
    return {
        service: KafkaCredentials(
            username=pulumi.Output.secret(configured.apply(lambda c, s=service: c[s]["username"])),
            password=pulumi.Output.secret(configured.apply(lambda c, s=service: c[s]["password"])),
        )
        for service in contract.DATA_SERVICES
    }
