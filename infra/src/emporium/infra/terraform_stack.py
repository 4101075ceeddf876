"""The Terraform path: the same platform layer on an existing cluster, written with
CDK Terrain and synthesized to Terraform JSON (``infra/terraform``).

It renders the specifications of ``emporium.infra.model`` from the same
``Pulumi.<env>.yaml`` settings, so both paths deploy the same operators, Kafka,
Postgres, observability and application namespaces. Cluster creation (EKS) and
bring-your-own Kafka or Postgres are Pulumi-only (docs/infrastructure.md).
"""

from __future__ import annotations

from typing import Any

import yaml
from cdktn import App, TerraformOutput, TerraformStack, TerraformVariable
from cdktn_provider_helm.provider import HelmProvider
from cdktn_provider_helm.release import Release
from cdktn_provider_kubernetes.config_map_v1 import ConfigMapV1
from cdktn_provider_kubernetes.limit_range_v1 import LimitRangeV1
from cdktn_provider_kubernetes.manifest import Manifest
from cdktn_provider_kubernetes.namespace_v1 import NamespaceV1
from cdktn_provider_kubernetes.provider import KubernetesProvider
from cdktn_provider_kubernetes.resource_quota_v1 import ResourceQuotaV1
from cdktn_provider_kubernetes.secret_v1 import SecretV1
from cdktn_provider_random.password import Password
from cdktn_provider_random.provider import RandomProvider
from constructs import Construct

from emporium.infra import contract, model, releases, versions
from emporium.infra.settings import StackSettings, stack_file


class PlatformStack(TerraformStack):
    def __init__(self, scope: Construct, id_: str, settings: StackSettings) -> None:
        super().__init__(scope, id_)
        if settings.kafka.mode != "strimzi" or settings.postgres.mode != "cnpg":
            raise ValueError("the Terraform path runs Kafka and Postgres in the cluster (strimzi, cnpg)")
        env = settings.environment
        kubeconfig = TerraformVariable(self, "kubeconfig_path", type="string", default="~/.kube/config")
        context = TerraformVariable(
            self, "kube_context", type="string", default=settings.cluster.context or f"emporium-{env}"
        )
        KubernetesProvider(
            self, "kubernetes", config_path=kubeconfig.string_value, config_context=context.string_value
        )
        HelmProvider(
            self,
            "helm",
            kubernetes={"config_path": kubeconfig.string_value, "config_context": context.string_value},
        )
        RandomProvider(self, "random")
        # The provider versions the configuration is validated with (versions.py).
        for name, version in versions.TERRAFORM_PROVIDERS.items():
            self.add_override(
                f"terraform.required_providers.{name}", {"source": f"hashicorp/{name}", "version": version}
            )

        namespaces = {
            name: NamespaceV1(
                self,
                f"ns-{name}",
                metadata=[
                    {
                        "name": name,
                        "labels": model.namespace_labels(name, env if name.startswith("emporium-") else None),
                    }
                ],
            )
            for name in model.platform_namespaces(settings)
        }
        helm_releases: dict[str, Release] = {}
        for spec in releases.all_releases(settings):
            helm_releases[spec.name] = Release(
                self,
                f"release-{spec.name}",
                name=spec.name,
                namespace=spec.namespace,
                chart=spec.pin.chart,
                version=spec.pin.version,
                repository=spec.pin.repository,
                values=[yaml.safe_dump(spec.values, sort_keys=True)],
                create_namespace=False,
                timeout=900,
                depends_on=[namespaces[spec.namespace], *(helm_releases[n] for n in spec.needs)],
            )
        data_ns = model.data_namespace(env)
        operators: list[Any] = [namespaces[data_ns]]
        operators += [
            helm_releases[n]
            for n in ("cert-manager", "trust-manager", "strimzi", "cnpg", "barman-cloud")
            if n in helm_releases
        ]

        def manifest(
            api: str,
            kind: str,
            name: str,
            spec: dict[str, Any],
            labels: dict[str, str] | None = None,
            depends_on: list[Any] | None = None,
            namespace: str | None = data_ns,
        ) -> Manifest:
            metadata: dict[str, Any] = {"name": name, "labels": {**model.MANAGED_BY, **(labels or {})}}
            if namespace is not None:
                metadata["namespace"] = namespace
            return Manifest(
                self,
                f"{kind.lower()}-{name}".replace(".", "-"),
                manifest={"apiVersion": api, "kind": kind, "metadata": metadata, "spec": spec},
                depends_on=depends_on or operators,
            )

        def resource(spec: model.ResourceSpec, depends_on: list[Any]) -> Manifest:
            return manifest(
                spec.api_version,
                spec.kind,
                spec.name,
                spec.spec,
                spec.labels,
                depends_on=depends_on,
                namespace=spec.namespace,
            )

        # The environment's CA, each resource after the one before.
        previous: list[Any] = operators
        ca_issuer: Any = None
        for spec in model.certificate_authority(env):
            created = resource(spec, depends_on=previous)
            previous = [*operators, created]
            if spec.kind == "ClusterIssuer" and spec.name == model.ca_issuer(env):
                ca_issuer = created

        strimzi, cnpg = "kafka.strimzi.io/v1", "postgresql.cnpg.io/v1"
        cluster_label = {"strimzi.io/cluster": model.KAFKA_CLUSTER}
        pools = [
            manifest(strimzi, "KafkaNodePool", name, spec, cluster_label)
            for name, spec in model.kafka_node_pools(settings.kafka).items()
        ]
        listener_certificate = resource(
            model.kafka_listener_certificate(env), depends_on=[*operators, ca_issuer]
        )
        kafka = manifest(
            strimzi,
            "Kafka",
            model.KAFKA_CLUSTER,
            model.kafka_cluster_spec(settings.kafka),
            depends_on=[*operators, *pools, listener_certificate],
        )
        backups: list[Any] = []
        store = model.backup_object_store_spec(settings.postgres)
        if store is not None:
            backups.append(manifest(model.BARMAN_CLOUD_API, "ObjectStore", model.BACKUP_OBJECT_STORE, store))
        for topic in model.kafka_topics(settings.kafka):
            manifest(strimzi, "KafkaTopic", topic.name, topic.spec, cluster_label, depends_on=[kafka])

        app_ns = contract.app_namespace(env)
        for service in contract.DATA_SERVICES:
            kafka_password = Password(self, f"{service}-kafka-password", length=32, special=False)
            db_password = Password(self, f"{service}-db-password", length=32, special=False)
            kafka_secret = SecretV1(
                self,
                f"secret-{service}-kafka",
                metadata={
                    "name": model.kafka_password_secret(service),
                    "namespace": data_ns,
                    "labels": model.MANAGED_BY,
                },
                data={"password": kafka_password.result},
                depends_on=[namespaces[data_ns]],
            )
            manifest(
                strimzi,
                "KafkaUser",
                service,
                model.kafka_user_spec(service),
                cluster_label,
                depends_on=[kafka, kafka_secret],
            )
            owner = SecretV1(
                self,
                f"secret-{service}-db-owner",
                metadata={
                    "name": model.postgres_owner_secret(service),
                    "namespace": data_ns,
                    "labels": model.MANAGED_BY,
                },
                type="kubernetes.io/basic-auth",
                data={"username": service, "password": db_password.result},
                depends_on=[namespaces[data_ns]],
            )
            server_certificate = resource(
                model.postgres_server_certificate(env, service), depends_on=[*operators, ca_issuer]
            )
            cluster = manifest(
                cnpg,
                "Cluster",
                model.postgres_cluster_name(service),
                model.postgres_cluster_spec(service, settings.postgres),
                {"emporium.dev/service": service},
                depends_on=[*operators, owner, server_certificate, *backups],
            )
            schedule = model.postgres_scheduled_backup_spec(service, settings.postgres)
            if schedule is not None:
                manifest(
                    cnpg,
                    "ScheduledBackup",
                    f"{model.postgres_cluster_name(service)}-daily",
                    schedule,
                    depends_on=[cluster],
                )
            url = model.database_url(model.postgres_host(env, service), service, db_password.result)
            SecretV1(
                self,
                f"secret-{service}-app",
                metadata={
                    "name": contract.service_secret_name(service),
                    "namespace": app_ns,
                    "labels": {**model.MANAGED_BY, "emporium.dev/service": service},
                },
                data=dict(
                    zip(contract.SERVICE_SECRET_KEYS, (url, service, kafka_password.result), strict=True)
                ),
                depends_on=[namespaces[app_ns]],
            )

        ConfigMapV1(
            self,
            "platform-config",
            metadata={"name": contract.PLATFORM_CONFIGMAP, "namespace": app_ns, "labels": model.MANAGED_BY},
            data=model.platform_config(settings),
            depends_on=[namespaces[app_ns]],
        )
        ResourceQuotaV1(
            self,
            "quota",
            metadata={"name": "emporium", "namespace": app_ns},
            spec=model.resource_quota_spec(settings.app),
            depends_on=[namespaces[app_ns]],
        )
        limits = model.limit_range_spec()["limits"][0]
        LimitRangeV1(
            self,
            "limits",
            metadata={"name": "emporium", "namespace": app_ns},
            spec={
                "limit": [
                    {
                        "type": limits["type"],
                        "default_request": limits["defaultRequest"],
                        "default": limits["default"],
                        "max": limits["max"],
                    }
                ]
            },
            depends_on=[namespaces[app_ns]],
        )
        TerraformOutput(self, "namespace", value=app_ns)
        TerraformOutput(self, "platform_config_map", value=contract.PLATFORM_CONFIGMAP)
        TerraformOutput(self, "kafka_bootstrap_servers", value=model.kafka_bootstrap(settings))
        TerraformOutput(self, "otlp_endpoint", value=model.otlp_endpoint())


def build_app(environments: tuple[str, ...] = contract.ENVIRONMENTS, outdir: str | None = None) -> App:
    """One Terraform stack per environment, from ``Pulumi.<env>.yaml``."""
    app = App(outdir=outdir) if outdir else App()
    for env in environments:
        PlatformStack(app, f"emporium-{env}", StackSettings.from_stack_file(stack_file(env)))
    return app
