"""Each component on its own, under Pulumi's mocks."""

from __future__ import annotations

import dataclasses

import pulumi
import pulumi_kubernetes as k8s
import pytest

from emporium.infra import contract, model, policies
from emporium.infra.components.application import ApplicationEnvironment, ApplicationEnvironmentArgs
from emporium.infra.components.cluster import Cluster, ClusterArgs
from emporium.infra.components.data_namespace import DataNamespace, DataNamespaceArgs
from emporium.infra.components.kafka import Kafka, KafkaArgs, KafkaCredentials
from emporium.infra.components.observability import Observability, ObservabilityArgs
from emporium.infra.components.postgres import Postgres, PostgresArgs
from emporium.infra.settings import (
    ClusterSettings,
    EksSettings,
    ExternalKafka,
    KafkaSettings,
    PostgresSettings,
    SettingsError,
    StackSettings,
)

from . import harness

pytestmark = pytest.mark.unit


def _provider() -> k8s.Provider:
    return k8s.Provider("test-k8s", context="test")


def _on(provider: k8s.Provider) -> pulumi.ResourceOptions:
    """How the program hands a component its cluster."""
    return pulumi.ResourceOptions(providers={"kubernetes": provider})


def _data(provider: k8s.Provider) -> k8s.core.v1.Namespace:
    return DataNamespace("data", DataNamespaceArgs("dev"), _on(provider)).namespace


def _all_on_the_given_provider(run: harness.Run) -> None:
    on_cluster = [r for r in run.resources if r.type.startswith("kubernetes:")]
    assert on_cluster
    for resource in on_cluster:
        assert "::test-k8s::" in resource.provider, (resource.type, resource.name, resource.provider)


def _dev(**changes) -> StackSettings:
    return dataclasses.replace(harness.settings_for("dev"), **changes)


def test_kafka_with_strimzi_installs_the_operator_and_the_cluster():
    settings = _dev()

    def program():
        provider = _provider()
        kafka = Kafka(
            "kafka", KafkaArgs.from_settings(settings, data_namespace=_data(provider)), _on(provider)
        )
        assert sorted(kafka.credentials) == sorted(contract.DATA_SERVICES)

    run = harness.run(program)
    _all_on_the_given_provider(run)
    releases = run.of_type(policies.HELM_RELEASE)
    assert [(r.inputs["name"], r.inputs["namespace"]) for r in releases] == [("strimzi", "strimzi-system")]
    assert releases[0].inputs["chart"].startswith("oci://")
    assert len(run.custom("KafkaTopic")) == 2 * len(contract.TOPICS)
    assert len(run.custom("KafkaUser")) == len(contract.DATA_SERVICES)
    for user in run.custom("KafkaUser"):
        ref = user.inputs["spec"]["authentication"]["password"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == model.kafka_password_secret(user.get("metadata.name"))
    for secret in run.of_type(policies.SECRET):
        assert secret.get("metadata.namespace") == "emporium-dev-data"
        assert "stringData" in secret.secret_paths


def test_kafka_without_operator_install_reuses_the_one_on_the_cluster():
    settings = _dev(install_operators=False)

    def program():
        provider = _provider()
        Kafka("kafka", KafkaArgs.from_settings(settings, data_namespace=_data(provider)), _on(provider))

    run = harness.run(program)
    assert run.of_type(policies.HELM_RELEASE) == []
    assert len(run.custom("Kafka")) == 1


def test_external_kafka_creates_nothing_and_hands_over_secret_credentials():
    external = ExternalKafka(bootstrap_servers="b-1.msk.example:9096,b-2.msk.example:9096")
    settings = _dev(kafka=KafkaSettings(mode="external", external=external))
    seen: dict[str, KafkaCredentials] = {}

    def program():
        creds = pulumi.Output.secret(
            {s: {"username": s, "password": f"pw-{s}"} for s in contract.DATA_SERVICES}
        )
        kafka = Kafka(
            "kafka", KafkaArgs.from_settings(settings, external_credentials=creds), _on(_provider())
        )
        seen.update(kafka.credentials)
        assert kafka.bootstrap_servers == external.bootstrap_servers
        return pulumi.Output.all(*(c.password for c in kafka.credentials.values()))

    run = harness.run(program)
    assert [r.type for r in run.resources if r.type.startswith("kubernetes:")] == []
    assert sorted(seen) == sorted(contract.DATA_SERVICES)
    assert model.platform_config(settings)["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"


def test_postgres_with_cloudnative_pg_gives_each_service_its_own_cluster_and_login():
    settings = _dev()
    urls: dict[str, str] = {}

    def program():
        provider = _provider()
        postgres = Postgres(
            "postgres", PostgresArgs.from_settings(settings, data_namespace=_data(provider)), _on(provider)
        )
        return pulumi.Output.all(**postgres.database_urls).apply(urls.update)

    run = harness.run(program)
    clusters = run.custom("Cluster")
    assert sorted(c.get("metadata.name") for c in clusters) == sorted(
        f"{s}-db" for s in contract.DATA_SERVICES
    )
    for cluster in clusters:
        initdb = cluster.inputs["spec"]["bootstrap"]["initdb"]
        assert initdb["database"] == initdb["owner"]
        assert initdb["secret"]["name"] == f"{initdb['owner']}-db-owner"
    for service, url in urls.items():
        assert url.startswith(f"postgresql://{service}:mock-password-postgres-{service}-password@")
        assert url.endswith(
            f"@{service}-db-rw.emporium-dev-data.svc.cluster.local:5432/{service}"
            f"?sslmode=verify-full&sslrootcert={contract.POSTGRES_CA_FILE}"
        )
    owners = [s for s in run.of_type(policies.SECRET) if s.inputs["type"] == "kubernetes.io/basic-auth"]
    assert len(owners) == len(contract.DATA_SERVICES)


@pytest.mark.parametrize(
    ("component", "args"), [(Kafka, KafkaArgs.from_settings), (Postgres, PostgresArgs.from_settings)]
)
def test_in_cluster_kafka_and_postgres_need_the_data_namespace(component, args):
    with pytest.raises(ValueError, match="data_namespace"):
        harness.run(lambda: component("data", args(_dev()), _on(_provider())))


def test_external_postgres_requires_its_urls():
    settings = _dev(postgres=PostgresSettings(mode="external"))
    with pytest.raises(ValueError, match="externalDatabaseUrls"):
        harness.run(lambda: Postgres("postgres", PostgresArgs.from_settings(settings), _on(_provider())))


def test_observability_wires_grafana_so_a_trace_links_to_logs_and_metrics():
    settings = _dev()
    run = harness.run(
        lambda: Observability("observability", ObservabilityArgs.from_settings(settings), _on(_provider()))
    )
    _all_on_the_given_provider(run)
    releases = {r.inputs["name"]: r.inputs for r in run.of_type(policies.HELM_RELEASE)}
    assert sorted(releases) == [
        "grafana",
        "kube-prometheus-stack",
        "loki",
        "otel-collector",
        "otel-node-agent",
        "tempo",
    ]
    sources = {
        d["uid"]: d for d in releases["grafana"]["values"]["datasources"]["datasources.yaml"]["datasources"]
    }
    tempo = sources["tempo"]["jsonData"]
    assert tempo["tracesToLogsV2"]["datasourceUid"] == "loki"
    assert tempo["tracesToMetrics"]["datasourceUid"] == "prometheus"
    assert {f["datasourceUid"] for f in sources["loki"]["jsonData"]["derivedFields"]} == {"tempo"}
    pipelines = releases["otel-collector"]["values"]["config"]["service"]["pipelines"]
    assert pipelines["traces"]["exporters"] == ["otlp/tempo"]
    assert pipelines["metrics"]["exporters"] == ["prometheusremotewrite"]
    assert pipelines["logs"]["exporters"] == ["otlphttp/loki"]
    assert releases["kube-prometheus-stack"]["values"]["prometheus"]["prometheusSpec"][
        "enableRemoteWriteReceiver"
    ]
    for release in releases.values():
        assert policies.violations(policies.HELM_RELEASE, release) == {}
    # Log lines read from the nodes become records with the span's ids, so Loki links to Tempo.
    operators = releases["otel-node-agent"]["values"]["config"]["receivers"]["filelog"]["operators"]
    assert [o["type"] for o in operators] == ["container", "json_parser"]
    assert operators[1]["trace"] == {
        "trace_id": {"parse_from": "attributes.trace_id"},
        "span_id": {"parse_from": "attributes.span_id"},
    }


def test_application_environment_has_quota_limits_and_the_contract_objects():
    settings = _dev()

    def program():
        urls = {s: pulumi.Output.secret(f"postgresql://{s}:pw@h:5432/{s}") for s in contract.DATA_SERVICES}
        creds = {s: KafkaCredentials(s, pulumi.Output.secret("pw")) for s in contract.DATA_SERVICES}
        ApplicationEnvironment(
            "app", ApplicationEnvironmentArgs.from_settings(settings, urls, creds), _on(_provider())
        )

    run = harness.run(program)
    (quota,) = run.of_type("kubernetes:core/v1:ResourceQuota")
    assert quota.inputs["spec"]["hard"]["services.nodeports"] == "0"
    assert quota.inputs["spec"]["hard"]["services.loadbalancers"] == "1"
    (limits,) = run.of_type("kubernetes:core/v1:LimitRange")
    assert limits.inputs["spec"]["limits"][0]["type"] == "Container"
    assert len(run.of_type(policies.SECRET)) == len(contract.DATA_SERVICES)
    assert all("stringData" in s.secret_paths for s in run.of_type(policies.SECRET))


def test_existing_cluster_uses_the_kubeconfig_context():
    run = harness.run(
        lambda: Cluster("cluster", ClusterArgs("dev", ClusterSettings(context="kind-emporium")))
    )
    (provider,) = run.of_type("pulumi:providers:kubernetes")
    assert provider.inputs["context"] == "kind-emporium"
    assert not [r for r in run.resources if r.type.startswith(("aws:", "eks:"))]


def test_eks_cluster_sizes_its_node_group_from_the_settings():
    eks_settings = EksSettings(
        private_subnet_ids=["subnet-a", "subnet-b"],
        min_nodes=2,
        desired_nodes=4,
        max_nodes=8,
        instance_types=["m7i.2xlarge"],
        disk_gib=80,
    )
    run = harness.run(
        lambda: Cluster("cluster", ClusterArgs("prod", ClusterSettings(mode="eks", eks=eks_settings)))
    )
    (group,) = run.of_type("eks:index:ManagedNodeGroup")
    assert group.inputs["scalingConfig"] == {"minSize": 2, "desiredSize": 4, "maxSize": 8}
    assert group.inputs["diskSize"] == 80
    assert group.inputs["subnetIds"] == ["subnet-a", "subnet-b"]
    (cluster,) = run.of_type("eks:index:Cluster")
    assert cluster.inputs["name"] == "emporium-prod"
    assert cluster.inputs["createOidcProvider"] is True
    (role,) = [r for r in run.of_type("aws:iam/role:Role") if "ebs-csi" in r.name]
    assert "system:serviceaccount:kube-system:ebs-csi-controller-sa" in role.inputs["assumeRolePolicy"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"environment": "qa"}, "environment"),
        ({"environment": "dev", "kafak": {}}, "unknown setting"),
        ({"environment": "dev", "cluster": {"mode": "gke"}}, "cluster.mode"),
        ({"environment": "dev", "cluster": {"mode": "eks"}}, "privateSubnetIds"),
        ({"environment": "dev", "kafka": {"brokers": 1, "minInsyncReplicas": 2}}, "minInsyncReplicas"),
        ({"environment": "dev", "kafka": {"mode": "external"}}, "bootstrapServers"),
    ],
)
def test_settings_reject_what_the_program_cannot_use(values, message):
    with pytest.raises(SettingsError, match=message):
        StackSettings.from_config(values)


@pytest.mark.parametrize("install_operators", [True, False])
def test_certificates_make_the_environment_ca_and_its_bundle(install_operators):
    from emporium.infra.components.certificates import Certificates, CertificatesArgs

    settings = _dev(install_operators=install_operators)

    def program():
        Certificates("certificates", CertificatesArgs(settings), _on(_provider()))

    run = harness.run(program)
    _all_on_the_given_provider(run)
    releases = {r.inputs["name"]: r.inputs for r in run.of_type(policies.HELM_RELEASE)}
    if install_operators:
        assert sorted(releases) == ["cert-manager", "trust-manager"]
        assert {r["namespace"] for r in releases.values()} == {model.CERT_MANAGER_NAMESPACE}
        assert releases["cert-manager"]["values"]["crds"] == {"enabled": True, "keep": True}
    else:
        # Installed by whoever installs the operators; the CA is still this stack's.
        assert releases == {}
    kinds = sorted(
        (r.inputs["kind"], r.get("metadata.name"))
        for kind in ("Bundle", "Certificate", "ClusterIssuer")
        for r in run.custom(kind)
    )
    assert kinds == sorted(
        [
            ("Bundle", "emporium-dev-ca-bundle"),
            ("Certificate", "emporium-dev-ca"),
            ("ClusterIssuer", "emporium-dev-ca"),
            ("ClusterIssuer", "emporium-dev-selfsigned"),
        ]
    )


def test_only_the_servers_this_stack_runs_get_the_environment_ca():
    from emporium.infra import chart_values, releases

    external = ExternalKafka(bootstrap_servers="b-1.msk.example:9096")
    managed_kafka = _dev(kafka=KafkaSettings(mode="external", external=external))
    overlay = chart_values.chart_values(managed_kafka)
    # The managed Kafka's CA is the operator's to name (docs/deploy.md); PostgreSQL still runs here.
    assert "kafkaCa" not in overlay["platform"]
    assert overlay["platform"]["postgresCa"]["configMapName"] == model.ca_bundle("dev")
    assert "kafka" not in overlay["networkPolicy"]
    assert model.uses_platform_ca(managed_kafka)

    both_managed = _dev(
        kafka=KafkaSettings(mode="external", external=external),
        postgres=PostgresSettings(mode="external"),
    )
    assert not model.uses_platform_ca(both_managed)
    assert releases.operator_releases(both_managed) == []
    overlay = chart_values.chart_values(both_managed)
    assert set(overlay["platform"]) == {"configMapName"}
    assert model.CERT_MANAGER_NAMESPACE not in model.platform_namespaces(both_managed)
