"""Emporium's platform for one environment: read the stack's settings, compose the
components, export what the chart needs (docs/infrastructure.md)."""

import pulumi

from emporium.infra import chart_values, contract, model
from emporium.infra.components.certificates import Certificates, CertificatesArgs
from emporium.infra.components.application import ApplicationEnvironment, ApplicationEnvironmentArgs
from emporium.infra.components.cluster import Cluster, ClusterArgs
from emporium.infra.components.data_namespace import DataNamespace, DataNamespaceArgs
from emporium.infra.components.kafka import Kafka, KafkaArgs
from emporium.infra.components.observability import Observability, ObservabilityArgs
from emporium.infra.components.postgres import Postgres, PostgresArgs
from emporium.infra.settings import CONFIG_NAMESPACE, StackSettings

config = pulumi.Config(CONFIG_NAMESPACE)
settings = StackSettings.from_pulumi_config(config)
env = settings.environment

cluster = Cluster("cluster", ClusterArgs.from_settings(settings))
# Every Kubernetes resource below goes to this cluster.
on_cluster = pulumi.ResourceOptions(providers={"kubernetes": cluster.provider})
needs_data_namespace = settings.kafka.mode == "strimzi" or settings.postgres.mode == "cnpg"
data = DataNamespace("data", DataNamespaceArgs(env), on_cluster) if needs_data_namespace else None
# The environment's CA, for the TLS servers this stack runs (Strimzi, CloudNativePG).
certificates = (
    Certificates("certificates", CertificatesArgs(settings), on_cluster)
    if model.uses_platform_ca(settings)
    else None
)
tls_issuer = certificates.issuer if certificates else None
kafka = Kafka(
    "kafka",
    KafkaArgs.from_settings(
        settings,
        data_namespace=data.namespace if data else None,
        external_credentials=config.get_secret_object("externalKafkaCredentials"),
        tls_issuer=tls_issuer,
    ),
    on_cluster,
)
postgres = Postgres(
    "postgres",
    PostgresArgs.from_settings(
        settings,
        data_namespace=data.namespace if data else None,
        external_urls=config.get_secret_object("externalDatabaseUrls"),
        tls_issuer=tls_issuer,
    ),
    on_cluster,
)
if settings.observability.enabled:
    Observability("observability", ObservabilityArgs.from_settings(settings), on_cluster)
app = ApplicationEnvironment(
    "app",
    ApplicationEnvironmentArgs.from_settings(settings, postgres.database_urls, kafka.credentials),
    on_cluster,
)

pulumi.export("environment", env)
pulumi.export("namespace", app.namespace)
pulumi.export("platformConfigMap", contract.PLATFORM_CONFIGMAP)
pulumi.export("serviceSecrets", app.secret_names)
pulumi.export("kafkaBootstrapServers", kafka.bootstrap_servers)
pulumi.export("otlpEndpoint", chart_values.otlp_endpoint())
pulumi.export("chartValues", chart_values.chart_values(settings))
# Credentials leave the stack only as secrets (``pulumi stack output --show-secrets``).
pulumi.export("databaseUrls", pulumi.Output.secret(postgres.database_urls))
if cluster.kubeconfig is not None:
    pulumi.export("kubeconfig", cluster.kubeconfig)
