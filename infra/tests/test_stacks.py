"""The whole program per stack, under Pulumi's mocks."""

from __future__ import annotations

import pytest

from emporium.infra import contract, model, passwords, policies, versions

from . import harness

pytestmark = pytest.mark.unit

STACKS = ["dev", "staging", "prod"]


def _crs(run: harness.Run, kind: str) -> list[harness.Registered]:
    return run.custom(kind)


def _by_name(resources: list[harness.Registered]) -> dict[str, harness.Registered]:
    return {r.get("metadata.name"): r for r in resources}


@pytest.mark.parametrize("stack", STACKS)
def test_every_policy_passes_on_every_resource(stack_runs, stack):
    run = stack_runs[stack]
    failures = {
        f"{r.type} {r.name}": found for r in run.resources if (found := policies.violations(r.type, r.inputs))
    }
    assert failures == {}
    messages: list[str] = []
    policies.validate_stack_outputs(run.exports, lambda m, urn=None: messages.append(m))
    assert messages == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_helm_release_is_pinned_to_the_versions_module(stack_runs, stack):
    releases = stack_runs[stack].of_type(policies.HELM_RELEASE)
    pins = {(pin.chart, pin.version) for pin in versions.ALL_CHARTS}
    assert releases, "no Helm release registered"
    for release in releases:
        assert (release.inputs["chart"], release.inputs["version"]) in pins
        assert policies.EXACT_VERSION.match(release.inputs["version"])


@pytest.mark.parametrize("stack", STACKS)
def test_every_namespace_carries_the_restricted_labels(stack_runs, stack):
    namespaces = _by_name(stack_runs[stack].of_type(policies.NAMESPACE))
    assert contract.app_namespace(stack) in namespaces
    for name, namespace in namespaces.items():
        labels = namespace.get("metadata.labels")
        expected = "privileged" if name in model.PRIVILEGED_NAMESPACES else "restricted"
        assert labels["pod-security.kubernetes.io/enforce"] == expected, name
        assert labels["pod-security.kubernetes.io/warn"] == "restricted", name
        assert labels["pod-security.kubernetes.io/audit"] == "restricted", name
    # The exception holds only the node log agent.
    agents = [
        r.inputs["name"]
        for r in stack_runs[stack].of_type(policies.HELM_RELEASE)
        if r.inputs["namespace"] in model.PRIVILEGED_NAMESPACES
    ]
    assert agents == ["otel-node-agent"]


@pytest.mark.parametrize("stack", STACKS)
def test_credentials_are_pulumi_secrets_never_plain_outputs(stack_runs, stack):
    run = stack_runs[stack]
    secrets = run.of_type(policies.SECRET)
    assert len(secrets) == 3 * len(contract.DATA_SERVICES)
    for secret in secrets:
        assert "stringData" in secret.secret_paths, f"{secret.name} sent in plain text"
    drawn = run.of_type(passwords.TYPE)
    assert len(drawn) == 2 * len(contract.DATA_SERVICES)
    generated = {f"mock-password-{p.name}" for p in drawn}
    assert "databaseUrls" in run.secret_exports
    if stack != "dev":
        assert "kubeconfig" in run.secret_exports
    for name, value in run.exports.items():
        if name in run.secret_exports:
            continue
        assert not any(password in repr(value) for password in generated), name
    urls = run.exports["databaseUrls"]
    assert sorted(urls) == sorted(contract.DATA_SERVICES)
    assert all(any(p in url for p in generated) for url in urls.values())


@pytest.mark.parametrize("stack", STACKS)
def test_the_chart_finds_its_secrets_and_settings(stack_runs, stack):
    run = stack_runs[stack]
    namespace = contract.app_namespace(stack)
    secrets = {
        r.get("metadata.name"): r
        for r in run.of_type(policies.SECRET)
        if r.get("metadata.namespace") == namespace
    }
    assert sorted(secrets) == sorted(contract.service_secret_name(s) for s in contract.DATA_SERVICES)
    for service in contract.DATA_SERVICES:
        data = secrets[contract.service_secret_name(service)].inputs["stringData"]
        assert sorted(data) == sorted(contract.SERVICE_SECRET_KEYS)
        assert data["KAFKA_SASL_USERNAME"] == service
        assert data["DATABASE_URL"].startswith(f"postgresql://{service}:")
        host = model.postgres_host(stack, service)
        # Verified TLS: the CA the chart mounts, and the name the certificate carries.
        assert data["DATABASE_URL"].endswith(
            f"@{host}:5432/{service}?sslmode=verify-full&sslrootcert={contract.POSTGRES_CA_FILE}"
        )
    (config,) = [r for r in run.of_type(policies.CONFIGMAP) if r.get("metadata.namespace") == namespace]
    assert config.get("metadata.name") == contract.PLATFORM_CONFIGMAP
    assert sorted(config.inputs["data"]) == sorted(contract.PLATFORM_CONFIG_KEYS)
    assert config.inputs["data"]["ENVIRONMENT"] == stack
    assert config.inputs["data"]["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config.inputs["data"]["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert config.inputs["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == run.exports["otlpEndpoint"]
    assert run.exports["serviceSecrets"] == {
        s: contract.service_secret_name(s) for s in contract.DATA_SERVICES
    }


@pytest.mark.parametrize("stack", STACKS)
def test_each_kafka_user_may_do_exactly_what_its_service_does(stack_runs, stack):
    users = _by_name(_crs(stack_runs[stack], "KafkaUser"))
    assert sorted(users) == sorted(contract.DATA_SERVICES)
    for service, user in users.items():
        access = contract.TOPIC_ACCESS[service]
        spec = user.inputs["spec"]
        assert spec["authentication"]["type"] == "scram-sha-512"
        granted: dict[tuple[str, str], set[str]] = {}
        for acl in spec["authorization"]["acls"]:
            assert acl["resource"]["patternType"] == "literal"
            key = (acl["resource"]["type"], acl["resource"]["name"])
            granted.setdefault(key, set()).update(acl["operations"])
        expected = {("topic", t): {"Describe", "Read"} for t in access.consumes}
        for topic in access.produces:
            expected.setdefault(("topic", topic), set()).update({"Describe", "Write"})
        expected[("group", service)] = {"Describe", "Read"}
        assert granted == expected, service


@pytest.mark.parametrize("stack", STACKS)
def test_topics_and_dead_letter_twins_exist_with_the_stack_sizing(stack_runs, stack):
    settings = harness.settings_for(stack)
    topics = _by_name(_crs(stack_runs[stack], "KafkaTopic"))
    assert sorted(topics) == sorted(contract.all_topics())
    for name, topic in topics.items():
        spec = topic.inputs["spec"]
        dead_letter = name.endswith(".dlq")
        assert spec["partitions"] == (
            settings.kafka.dlq_partitions if dead_letter else settings.kafka.partitions
        )
        assert spec["replicas"] == min(3, settings.kafka.brokers)
        assert spec["config"]["min.insync.replicas"] == settings.kafka.min_insync_replicas
        hours = settings.kafka.dlq_retention_hours if dead_letter else settings.kafka.retention_hours
        assert spec["config"]["retention.ms"] == hours * 3_600_000


def test_prod_runs_three_brokers_across_zones_with_isr_two(stack_runs):
    run = stack_runs["prod"]
    pools = _by_name(_crs(run, "KafkaNodePool"))
    assert pools["broker"].inputs["spec"]["replicas"] == 3
    assert pools["broker"].inputs["spec"]["roles"] == ["broker"]
    assert pools["controller"].inputs["spec"]["replicas"] == 3
    (kafka,) = _crs(run, "Kafka")
    spec = kafka.inputs["spec"]["kafka"]
    assert spec["rack"] == {"topologyKey": "topology.kubernetes.io/zone"}
    assert spec["config"]["min.insync.replicas"] == 2
    assert spec["config"]["default.replication.factor"] == 3
    assert spec["template"]["podDisruptionBudget"] == {"maxUnavailable": 1}
    assert spec["version"] == versions.KAFKA_VERSION


def test_prod_runs_three_postgres_instances_per_service_with_pdbs_and_backups(stack_runs):
    run = stack_runs["prod"]
    clusters = _by_name(_crs(run, "Cluster"))
    assert sorted(clusters) == sorted(model.postgres_cluster_name(s) for s in contract.DATA_SERVICES)
    for name, cluster in clusters.items():
        spec = cluster.inputs["spec"]
        assert spec["instances"] == 3, name
        assert spec["enablePDB"] is True
        assert spec["affinity"]["podAntiAffinityType"] == "required"
        # Backups through the Barman Cloud plugin, not the deprecated in-tree support.
        assert "backup" not in spec
        assert spec["plugins"] == [
            {
                "name": "barman-cloud.cloudnative-pg.io",
                "isWALArchiver": True,
                "parameters": {"barmanObjectName": model.BACKUP_OBJECT_STORE},
            }
        ]
    (store,) = _crs(run, "ObjectStore")
    assert store.get("metadata.name") == model.BACKUP_OBJECT_STORE
    assert store.get("metadata.namespace") == "emporium-prod-data"
    assert store.inputs["apiVersion"] == "barmancloud.cnpg.io/v1"
    store_spec = store.inputs["spec"]
    assert store_spec["retentionPolicy"] == "30d"
    assert store_spec["configuration"]["destinationPath"] == "s3://emporium-prod-backups/postgres"
    assert store_spec["configuration"]["s3Credentials"] == {"inheritFromIAMRole": True}
    # The cluster name is the plugin's server name: one folder per cluster.
    assert "serverName" not in store_spec["configuration"]
    schedules = _by_name(_crs(run, "ScheduledBackup"))
    assert sorted(s.inputs["spec"]["cluster"]["name"] for s in schedules.values()) == sorted(clusters)
    for schedule in schedules.values():
        assert schedule.inputs["spec"]["method"] == "plugin"
        assert schedule.inputs["spec"]["pluginConfiguration"] == {"name": "barman-cloud.cloudnative-pg.io"}
    plugin = _by_name_release(run)["barman-cloud"]
    assert plugin["crds"] == {"create": True}
    (release,) = [r for r in run.of_type(policies.HELM_RELEASE) if r.inputs["name"] == "barman-cloud"]
    # In the operator's namespace, as the plugin requires.
    assert release.inputs["namespace"] == model.CNPG_NAMESPACE
    releases = _by_name_release(run)
    assert releases["grafana"]["podDisruptionBudget"] == {"maxUnavailable": 1}
    assert releases["otel-collector"]["podDisruptionBudget"]["enabled"] is True


def _by_name_release(run: harness.Run) -> dict[str, dict]:
    return {r.inputs["name"]: r.inputs["values"] for r in run.of_type(policies.HELM_RELEASE)}


def test_prod_and_staging_run_on_eks_with_their_node_sizing(stack_runs):
    for stack, (desired, instance) in {"staging": (3, "m7i.large"), "prod": (6, "m7i.xlarge")}.items():
        run = stack_runs[stack]
        (group,) = run.of_type("eks:index:ManagedNodeGroup")
        assert group.inputs["scalingConfig"]["desiredSize"] == desired
        assert group.inputs["instanceTypes"] == [instance]
        (cluster,) = run.of_type("eks:index:Cluster")
        assert cluster.inputs["endpointPublicAccess"] is False
        assert cluster.inputs["skipDefaultNodeGroup"] is True
        assert run.of_type("aws:eks/addon:Addon")[0].inputs["addonName"] == "aws-ebs-csi-driver"


def test_dev_is_minimal(stack_runs):
    run = stack_runs["dev"]
    (pool,) = _crs(run, "KafkaNodePool")
    assert pool.inputs["spec"]["replicas"] == 1
    assert pool.inputs["spec"]["roles"] == ["controller", "broker"]
    (kafka,) = _crs(run, "Kafka")
    assert "rack" not in kafka.inputs["spec"]["kafka"]
    assert kafka.inputs["spec"]["kafka"]["template"]["podDisruptionBudget"] == {"maxUnavailable": 0}
    for cluster in _crs(run, "Cluster"):
        spec = cluster.inputs["spec"]
        assert spec["instances"] == 1
        assert spec["enablePDB"] is False
        assert "backup" not in spec
        assert "plugins" not in spec
    assert _crs(run, "ScheduledBackup") == []
    assert _crs(run, "ObjectStore") == []
    assert not [r for r in run.resources if r.type.startswith(("aws:", "eks:"))]
    releases = _by_name_release(run)
    assert "podDisruptionBudget" not in releases["grafana"]
    assert len(run.resources) < len(stack_runs["prod"].resources)


def test_stack_exports_give_the_chart_what_it_needs(stack_runs):
    exports = stack_runs["staging"].exports
    assert exports["namespace"] == "emporium-staging"
    assert exports["platformConfigMap"] == contract.PLATFORM_CONFIGMAP
    assert exports["kafkaBootstrapServers"] == (
        "emporium-kafka-bootstrap.emporium-staging-data.svc.cluster.local:9093"
    )
    assert exports["chartValues"]["environment"] == "staging"


@pytest.mark.parametrize("stack", STACKS)
def test_kafka_listens_with_tls_and_scram_on_a_certificate_of_the_environment_ca(stack_runs, stack):
    run = stack_runs[stack]
    (kafka,) = _crs(run, "Kafka")
    (listener,) = kafka.inputs["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True
    assert listener["port"] == model.KAFKA_LISTENER_PORT == 9093
    assert listener["authentication"] == {"type": "scram-sha-512"}
    chain = listener["configuration"]["brokerCertChainAndKey"]
    certificates = _by_name(_crs(run, "Certificate"))
    certificate = certificates[chain["secretName"]].inputs["spec"]
    assert certificate["secretName"] == chain["secretName"]
    assert certificate["privateKey"]["encoding"] == "PKCS8"
    assert certificate["issuerRef"] == {
        "name": model.ca_issuer(stack),
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    # The address the services are given is a name on the certificate (hostname verified).
    bootstrap_host = run.exports["kafkaBootstrapServers"].rsplit(":", 1)[0]
    assert bootstrap_host in certificate["dnsNames"]
    # Strimzi advertises every broker as <pod>.<cluster>-kafka-brokers.<ns>.svc.
    assert f"*.emporium-kafka-brokers.emporium-{stack}-data.svc" in certificate["dnsNames"]


@pytest.mark.parametrize("stack", STACKS)
def test_every_postgres_cluster_serves_a_certificate_of_the_environment_ca(stack_runs, stack):
    run = stack_runs[stack]
    certificates = _by_name(_crs(run, "Certificate"))
    for service in contract.DATA_SERVICES:
        (cluster,) = [
            c for c in _crs(run, "Cluster") if c.get("metadata.name") == model.postgres_cluster_name(service)
        ]
        tls = cluster.inputs["spec"]["certificates"]
        assert tls["serverTLSSecret"] == tls["serverCASecret"] == f"{service}-db-server-tls"
        certificate = certificates[tls["serverTLSSecret"]].inputs["spec"]
        assert model.postgres_host(stack, service) in certificate["dnsNames"]
        assert f"{service}-db-ro.emporium-{stack}-data.svc" in certificate["dnsNames"]
        assert certificate["issuerRef"]["name"] == model.ca_issuer(stack)
        assert certificate["secretTemplate"] == {"labels": {"cnpg.io/reload": ""}}


@pytest.mark.parametrize("stack", STACKS)
def test_the_environment_ca_reaches_the_application_namespace_without_its_key(stack_runs, stack):
    run = stack_runs[stack]
    issuers = _by_name(_crs(run, "ClusterIssuer"))
    assert issuers[model.selfsigned_issuer(stack)].inputs["spec"] == {"selfSigned": {}}
    ca_secret = issuers[model.ca_issuer(stack)].inputs["spec"]["ca"]["secretName"]
    (ca,) = [c for c in _crs(run, "Certificate") if c.get("metadata.name") == model.ca_issuer(stack)]
    assert ca.get("metadata.namespace") == model.CERT_MANAGER_NAMESPACE
    assert ca.inputs["spec"]["isCA"] is True
    assert ca.inputs["spec"]["secretName"] == ca_secret
    (bundle,) = _crs(run, "Bundle")
    assert bundle.get("metadata.name") == model.ca_bundle(stack)
    # Only the certificate (ca.crt), never tls.key, and only into this environment's namespace.
    assert bundle.inputs["spec"]["sources"] == [{"secret": {"name": ca_secret, "key": "ca.crt"}}]
    target = bundle.inputs["spec"]["target"]
    assert target["configMap"] == {"key": "ca.crt"}
    assert target["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": contract.app_namespace(stack)}
    }
    platform = run.exports["chartValues"]["platform"]
    for name in ("kafkaCa", "postgresCa"):
        assert platform[name] == {"configMapName": model.ca_bundle(stack), "secretName": "", "key": "ca.crt"}
    network = run.exports["chartValues"]["networkPolicy"]
    assert network["kafka"]["ports"] == [9093]
    assert network["postgres"]["ports"] == [5432]
    releases = {r.inputs["name"]: r.inputs for r in run.of_type(policies.HELM_RELEASE)}
    assert releases["trust-manager"]["namespace"] == releases["cert-manager"]["namespace"]
    # trust-manager writes ConfigMaps only: no read access to Secrets in other namespaces.
    assert releases["trust-manager"]["values"]["secretTargets"] == {"enabled": False}
