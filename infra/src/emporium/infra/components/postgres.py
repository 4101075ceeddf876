"""Postgres: the CloudNativePG operator and one database cluster per service that
owns data, or the URLs of existing databases."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from emporium.infra import contract, model
from emporium.infra.components._k8s import custom_resource, helm_release, namespace, resource
from emporium.infra.passwords import GeneratedPassword
from emporium.infra.releases import barman_cloud, cloudnative_pg
from emporium.infra.settings import PostgresSettings, StackSettings

CNPG_API = "postgresql.cnpg.io/v1"


@dataclass(frozen=True)
class PostgresArgs:
    environment: str
    postgres: PostgresSettings
    install_operator: bool = True
    # Where the CloudNativePG clusters run (``postgres.mode`` cnpg).
    data_namespace: k8s.core.v1.Namespace | None = None
    # DATABASE_URL by service (``postgres.mode`` external), a Pulumi secret.
    external_urls: pulumi.Output[Mapping[str, str]] | None = None
    # The environment CA's issuer (the Certificates component), which signs the
    # servers' certificates (``postgres.mode`` cnpg).
    tls_issuer: pulumi.Resource | None = None

    @classmethod
    def from_settings(
        cls,
        settings: StackSettings,
        data_namespace: k8s.core.v1.Namespace | None = None,
        external_urls: pulumi.Output[Mapping[str, str]] | None = None,
        tls_issuer: pulumi.Resource | None = None,
    ) -> PostgresArgs:
        return cls(
            environment=settings.environment,
            postgres=settings.postgres,
            install_operator=settings.install_operators,
            data_namespace=data_namespace,
            external_urls=external_urls,
            tls_issuer=tls_issuer,
        )


class Postgres(pulumi.ComponentResource):
    """Pass the Kubernetes provider in ``opts.providers``."""

    # DATABASE_URL by service, each a Pulumi secret.
    database_urls: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: PostgresArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("emporium:platform:Postgres", name, None, opts)
        if args.postgres.mode == "external":
            external_urls = args.external_urls
            if external_urls is None:
                raise ValueError(
                    "postgres.mode external needs the secret config emporium:externalDatabaseUrls"
                )
            self.database_urls = {
                service: pulumi.Output.secret(external_urls.apply(lambda u, s=service: u[s]))
                for service in contract.DATA_SERVICES
            }
        elif args.data_namespace is None:
            raise ValueError(
                "postgres.mode cnpg needs PostgresArgs.data_namespace (the DataNamespace component)"
            )
        else:
            self.database_urls = self._cloudnative_pg(name, args, args.data_namespace)
        self.register_outputs({"services": list(self.database_urls)})

    def _cloudnative_pg(
        self, name: str, args: PostgresArgs, data_namespace: k8s.core.v1.Namespace
    ) -> dict[str, pulumi.Output[str]]:
        ns = model.data_namespace(args.environment)
        waits: list[pulumi.Resource] = [data_namespace]
        if args.install_operator:
            operator_ns = namespace(model.CNPG_NAMESPACE, self)
            operator = helm_release(cloudnative_pg.release(), self, [operator_ns])
            # After cert-manager (the Certificates component) and the operator.
            plugin_needs = [operator, *([args.tls_issuer] if args.tls_issuer else [])]
            waits += [operator, helm_release(barman_cloud.release(), self, plugin_needs)]
        store = model.backup_object_store_spec(args.postgres)
        if store is not None:
            waits.append(
                custom_resource(
                    model.BARMAN_CLOUD_API,
                    "ObjectStore",
                    model.BACKUP_OBJECT_STORE,
                    ns,
                    store,
                    self,
                    depends_on=waits,
                )
            )
        issuer = [args.tls_issuer] if args.tls_issuer else []

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
                opts=pulumi.ResourceOptions(parent=self, depends_on=[data_namespace]),
            )
            certificate = resource(
                model.postgres_server_certificate(args.environment, service),
                self,
                depends_on=[data_namespace, *issuer],
            )
            cluster = custom_resource(
                CNPG_API,
                "Cluster",
                model.postgres_cluster_name(service),
                ns,
                model.postgres_cluster_spec(service, args.postgres),
                self,
                labels={"emporium.dev/service": service},
                depends_on=[*waits, owner, certificate],
            )
            schedule = model.postgres_scheduled_backup_spec(service, args.postgres)
            if schedule is not None:
                custom_resource(
                    CNPG_API,
                    "ScheduledBackup",
                    f"{model.postgres_cluster_name(service)}-daily",
                    ns,
                    schedule,
                    self,
                    depends_on=[cluster],
                )
            host = model.postgres_host(args.environment, service)
            urls[service] = pulumi.Output.secret(
                password.apply(lambda p, s=service, h=host: model.database_url(h, s, p))
            )
        return urls
