"""Kafka: the Strimzi operator and a KRaft cluster with topics and one user per
service, or the address and credentials of an existing Kafka."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from emporium.infra import contract, model
from emporium.infra.components._k8s import custom_resource, helm_release, namespace, resource
from emporium.infra.passwords import GeneratedPassword
from emporium.infra.releases import strimzi
from emporium.infra.settings import KafkaSettings, StackSettings

STRIMZI_API = "kafka.strimzi.io/v1"


@dataclass(frozen=True)
class KafkaCredentials:
    username: pulumi.Input[str]
    password: pulumi.Output[str]  # always a Pulumi secret


@dataclass(frozen=True)
class KafkaArgs:
    environment: str
    kafka: KafkaSettings
    install_operator: bool = True
    # Where the Strimzi cluster runs (``kafka.mode`` strimzi).
    data_namespace: k8s.core.v1.Namespace | None = None
    # Username and password by service (``kafka.mode`` external), a Pulumi secret.
    external_credentials: pulumi.Output[Mapping[str, Mapping[str, str]]] | None = None
    # The environment CA's issuer (the Certificates component), which signs the
    # listener's certificate (``kafka.mode`` strimzi).
    tls_issuer: pulumi.Resource | None = None

    @classmethod
    def from_settings(
        cls,
        settings: StackSettings,
        data_namespace: k8s.core.v1.Namespace | None = None,
        external_credentials: pulumi.Output[Mapping[str, Mapping[str, str]]] | None = None,
        tls_issuer: pulumi.Resource | None = None,
    ) -> KafkaArgs:
        return cls(
            environment=settings.environment,
            kafka=settings.kafka,
            install_operator=settings.install_operators,
            data_namespace=data_namespace,
            external_credentials=external_credentials,
            tls_issuer=tls_issuer,
        )


class Kafka(pulumi.ComponentResource):
    """Pass the Kubernetes provider in ``opts.providers``."""

    bootstrap_servers: str
    credentials: dict[str, KafkaCredentials]

    def __init__(self, name: str, args: KafkaArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("emporium:platform:Kafka", name, None, opts)
        self.bootstrap_servers = model.kafka_bootstrap_servers(args.kafka, args.environment)
        if args.kafka.mode == "external":
            self.credentials = _external(args.external_credentials)
        elif args.data_namespace is None:
            raise ValueError(
                "kafka.mode strimzi needs KafkaArgs.data_namespace (the DataNamespace component)"
            )
        else:
            self.credentials = self._strimzi(name, args, args.data_namespace)
        self.register_outputs({"bootstrap_servers": self.bootstrap_servers})

    def _strimzi(
        self, name: str, args: KafkaArgs, data_namespace: k8s.core.v1.Namespace
    ) -> dict[str, KafkaCredentials]:
        ns = model.data_namespace(args.environment)
        waits: list[pulumi.Resource] = [data_namespace]
        if args.install_operator:
            operator_ns = namespace(model.STRIMZI_NAMESPACE, self)
            waits.append(helm_release(strimzi.release(), self, [operator_ns]))

        listener_certificate = resource(
            model.kafka_listener_certificate(args.environment),
            self,
            depends_on=[data_namespace, *([args.tls_issuer] if args.tls_issuer else [])],
        )
        cluster_label = {"strimzi.io/cluster": model.KAFKA_CLUSTER}
        pools = [
            custom_resource(
                STRIMZI_API, "KafkaNodePool", pool, ns, spec, self, labels=cluster_label, depends_on=waits
            )
            for pool, spec in model.kafka_node_pools(args.kafka).items()
        ]
        cluster = custom_resource(
            STRIMZI_API,
            "Kafka",
            model.KAFKA_CLUSTER,
            ns,
            model.kafka_cluster_spec(args.kafka),
            self,
            depends_on=[*waits, *pools, listener_certificate],
        )
        for topic in model.kafka_topics(args.kafka):
            custom_resource(
                STRIMZI_API,
                "KafkaTopic",
                topic.name,
                ns,
                topic.spec,
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
                opts=pulumi.ResourceOptions(parent=self, depends_on=[data_namespace]),
            )
            custom_resource(
                STRIMZI_API,
                "KafkaUser",
                service,
                ns,
                model.kafka_user_spec(service),
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
