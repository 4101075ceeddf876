"""Postgres: the CloudNativePG operator and one database cluster per service that
owns data, or the URLs of existing databases."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s

from emporium.infra import contract, model
from emporium.infra.components._k8s import custom_resource, helm_release, namespace
from emporium.infra.passwords import GeneratedPassword
from emporium.infra.settings import StackSettings

CNPG_API = "postgresql.cnpg.io/v1"


class Postgres(pulumi.ComponentResource):
    # DATABASE_URL by service, each a Pulumi secret.
    database_urls: dict[str, pulumi.Output[str]]

    def __init__(
        self,
        name: str,
        settings: StackSettings,
        provider: k8s.Provider,
        data_namespace: k8s.core.v1.Namespace | None,
        external_urls: pulumi.Output[Mapping[str, str]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("emporium:platform:Postgres", name, None, opts)
        if settings.postgres.mode == "external":
            if external_urls is None:
                raise ValueError(
                    "postgres.mode external needs the secret config emporium:externalDatabaseUrls"
                )
            self.database_urls = {
                service: pulumi.Output.secret(external_urls.apply(lambda u, s=service: u[s]))
                for service in contract.DATA_SERVICES
            }
        else:
            assert data_namespace is not None
            self.database_urls = self._cloudnative_pg(name, settings, provider, data_namespace)
        self.register_outputs({"services": list(self.database_urls)})

    def _cloudnative_pg(
        self,
        name: str,
        settings: StackSettings,
        provider: k8s.Provider,
        data_namespace: k8s.core.v1.Namespace,
    ) -> dict[str, pulumi.Output[str]]:
        ns = model.data_namespace(settings.environment)
        waits: list[pulumi.Resource] = [data_namespace]
        if settings.install_operators:
            operator_ns = namespace(model.CNPG_NAMESPACE, provider, self)
            waits.append(helm_release(model.cnpg_release(), provider, self, [operator_ns]))

        urls: dict[str, pulumi.Output[str]] = {}
        for service in contract.DATA_SERVICES:
            child = pulumi.ResourceOptions(parent=self)
            generated = GeneratedPassword(f"{name}-{service}-password", opts=child)
            password = pulumi.Output.secret(generated.result)
            owner = k8s.core.v1.Secret(
                f"{name}-{service}-owner",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=model.postgres_owner_secret(service), namespace=ns, labels=model.MANAGED_BY
                ),
                type="kubernetes.io/basic-auth",
                string_data={"username": service, "password": password},
                opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[data_namespace]),
            )
            cluster = custom_resource(
                CNPG_API,
                "Cluster",
                model.postgres_cluster_name(service),
                ns,
                model.postgres_cluster_spec(service, settings.postgres),
                provider,
                self,
                labels={"emporium.dev/service": service},
                depends_on=[*waits, owner],
            )
            schedule = model.postgres_scheduled_backup_spec(service, settings.postgres)
            if schedule is not None:
                custom_resource(
                    CNPG_API,
                    "ScheduledBackup",
                    f"{model.postgres_cluster_name(service)}-daily",
                    ns,
                    schedule,
                    provider,
                    self,
                    depends_on=[cluster],
                )
            host = model.postgres_host(settings, service)
            urls[service] = pulumi.Output.secret(
                password.apply(lambda p, s=service, h=host: model.database_url(h, s, p))
            )
        return urls
