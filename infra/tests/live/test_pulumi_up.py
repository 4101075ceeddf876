"""`pulumi up` of the dev stack's Kubernetes side against a real API server,
then the chart installed on what it created, then `pulumi destroy`.

The Pulumi CLI and the kubernetes provider plugin are the ones `make setup`
builds; the program runs through the Automation API with a local file backend
under .run/ and a passphrase generated per run. The operators' and the
observability stack's Helm releases are off (``installOperators: false``,
``observability.enabled: false``): their charts cannot be downloaded here.
Their custom resources are still applied, validated by the API server against
the operators' real CRDs (tests/fixtures/crds): Strimzi's, CloudNativePG's,
cert-manager's and trust-manager's (the TLS certificates and the CA bundle)
and the Barman Cloud plugin's (backups, switched on here for that).
docs/infrastructure.md, "Apply it for real", says what this proves and what
it does not.

The tests of this module run in order and share one stack.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from emporium.infra import automation, chart_values, contract, model, settings, versions

from .conftest import ROOT, Tools
from .kube import Kube, install_crds, load_documents, secret_data

pytestmark = pytest.mark.cluster

STACK = "dev"
APP_NS = contract.app_namespace(STACK)
DATA_NS = f"{APP_NS}-data"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "crds"
# The operator release inside the pinned CloudNativePG chart (its appVersion).
CNPG_OPERATOR_FOR_CHART = {"0.29.0": "1.30.0"}
MANAGER = "emporium-live-test"


def crd_files() -> list[Path]:
    cnpg = CNPG_OPERATOR_FOR_CHART.get(versions.CLOUDNATIVE_PG.version)
    assert cnpg, (
        f"CloudNativePG chart {versions.CLOUDNATIVE_PG.version}: vendor its operator's CRDs "
        "into tests/fixtures/crds and name its appVersion here"
    )
    dirs = [
        FIXTURES / f"strimzi-{versions.STRIMZI.version}",
        FIXTURES / f"cloudnative-pg-{cnpg}",
        FIXTURES / f"cert-manager-{versions.CERT_MANAGER.version}",
        FIXTURES / f"trust-manager-{versions.TRUST_MANAGER.version}",
        FIXTURES / f"plugin-barman-cloud-{versions.BARMAN_CLOUD_PLUGIN.app_version}",
    ]
    for directory in dirs:
        assert directory.is_dir(), f"{directory.name}: CRDs of the pinned operator are not vendored"
    return sorted(f for d in dirs for f in d.glob("*.yaml"))


@pytest.fixture(scope="module")
def crds(kube: Kube) -> Iterator[list[str]]:
    t0 = time.monotonic()
    names = install_crds(kube, load_documents(crd_files()), MANAGER)
    print(f"CRDs installed in {time.monotonic() - t0:.1f}s: {', '.join(names)}")
    yield names
    for name in names:
        kube.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")


# Backups on, so the plugin's resources are validated too (nothing is uploaded:
# no operator runs here).
BACKUP = {"destinationPath": "s3://emporium-live-test/postgres", "retention": "7d"}


def _forget_namespaces(kube: Kube) -> None:
    """Objects a crashed earlier run left behind would make every create fail."""
    for spec in model.certificate_authority(STACK):
        group_version, plural = spec.api_version, f"{spec.kind.lower()}s"
        where = f"namespaces/{spec.namespace}/" if spec.namespace else ""
        kube.delete(f"/apis/{group_version}/{where}{plural}/{spec.name}")
    for ns in (APP_NS, DATA_NS):
        kube.delete(f"/api/v1/namespaces/{ns}")
    for ns in (APP_NS, DATA_NS):
        kube.wait_for(
            f"namespace {ns} to be gone", lambda n=ns: kube.find(f"/api/v1/namespaces/{n}") is None, 120
        )


@pytest.fixture(scope="module")
def cert_manager_namespace(kube: Kube) -> Iterator[str]:
    """Where an installed cert-manager keeps the environments' CAs: with
    ``installOperators: false`` the stack expects it to exist."""
    ns = model.CERT_MANAGER_NAMESPACE
    created = kube.find(f"/api/v1/namespaces/{ns}") is None
    if created:
        manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        kube.apply(f"/api/v1/namespaces/{ns}", manifest, MANAGER)
    yield ns
    if created:
        kube.delete(f"/api/v1/namespaces/{ns}")


@dataclass
class Deployed:
    stack: auto.Stack
    outputs: dict[str, Any]
    run_dir: Path
    destroyed: bool = False


@pytest.fixture(scope="module")
def dev(
    tools: Tools, kube: Kube, kubeconfig: Path, crds: list[str], cert_manager_namespace: str
) -> Iterator[Deployed]:
    _forget_namespaces(kube)
    run_dir = ROOT / ".run" / "infra-live" / uuid.uuid4().hex[:12]
    backend = automation.LocalBackend(
        state_dir=run_dir / "state",
        workspace_dir=run_dir / "workspace",
        passphrase=secrets.token_urlsafe(32),
        pulumi_root=tools.pulumi_root,
        pulumi_home=tools.pulumi_home,
        env={"KUBECONFIG": str(kubeconfig)},
    )
    overrides = {
        "emporium:cluster": {"context": kube.context_name},
        # Their charts cannot be downloaded here; the custom resources still apply.
        "emporium:installOperators": False,
        "emporium:observability": {"enabled": False},
        "emporium:postgres": {"backup": BACKUP},
    }
    stack = automation.open_stack(STACK, backend, overrides)
    t0 = time.monotonic()
    result = stack.up(on_output=print, color="never")
    print(f"pulumi up: {time.monotonic() - t0:.1f}s, {result.summary.resource_changes}")
    deployed = Deployed(stack, {k: v.value for k, v in result.outputs.items()}, run_dir)
    yield deployed
    if not deployed.destroyed:
        stack.destroy(on_output=print, color="never")
    stack.workspace.remove_stack(STACK)
    shutil.rmtree(run_dir, ignore_errors=True)


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return obj["metadata"].get("labels") or {}


def test_up_creates_the_namespaces_with_pod_security_and_guard_rails(dev: Deployed, kube: Kube) -> None:
    assert dev.outputs["namespace"] == APP_NS
    for ns in (APP_NS, DATA_NS):
        labels = _labels(kube.get(f"/api/v1/namespaces/{ns}"))
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted", ns
        assert labels["emporium.dev/environment"] == STACK, ns
    quotas = kube.items(f"/api/v1/namespaces/{APP_NS}/resourcequotas")
    assert [q["metadata"]["name"] for q in quotas] == ["emporium"]
    hard = quotas[0]["spec"]["hard"]
    assert hard["requests.cpu"] == "2"
    assert hard["limits.memory"] == "8Gi"
    assert hard["pods"] == "30"
    limits = kube.items(f"/api/v1/namespaces/{APP_NS}/limitranges")
    assert [r["metadata"]["name"] for r in limits] == ["emporium"]
    assert limits[0]["spec"]["limits"], "a LimitRange without limits"


def test_up_creates_the_secrets_and_settings_the_chart_reads(dev: Deployed, kube: Kube) -> None:
    config = kube.get(f"/api/v1/namespaces/{APP_NS}/configmaps/{contract.PLATFORM_CONFIGMAP}")
    assert sorted(config["data"]) == sorted(contract.PLATFORM_CONFIG_KEYS)
    assert config["data"]["ENVIRONMENT"] == STACK
    assert config["data"]["KAFKA_BOOTSTRAP_SERVERS"] == dev.outputs["kafkaBootstrapServers"]
    assert sorted(dev.outputs["serviceSecrets"].values()) == sorted(
        contract.service_secret_name(s) for s in contract.DATA_SERVICES
    )
    users = {
        u["metadata"]["name"]: u
        for u in kube.items(f"/apis/kafka.strimzi.io/v1/namespaces/{DATA_NS}/kafkausers")
    }
    databases = {
        _labels(c)["emporium.dev/service"]: c
        for c in kube.items(f"/apis/postgresql.cnpg.io/v1/namespaces/{DATA_NS}/clusters")
    }
    drawn: list[str] = []
    for service in contract.DATA_SERVICES:
        data = secret_data(
            kube.get(f"/api/v1/namespaces/{APP_NS}/secrets/{contract.service_secret_name(service)}")
        )
        assert sorted(data) == sorted(contract.SERVICE_SECRET_KEYS), service
        # The generated passwords are in real use: the Secrets the operators
        # read (followed from the custom resources, as Strimzi's User Operator
        # and CloudNativePG do) hold the values of the service's own Secret.
        ref = users[service]["spec"]["authentication"]["password"]["valueFrom"]["secretKeyRef"]
        kafka_password = secret_data(kube.get(f"/api/v1/namespaces/{DATA_NS}/secrets/{ref['name']}"))[
            ref["key"]
        ]
        assert data["KAFKA_SASL_USERNAME"] == service
        assert data["KAFKA_SASL_PASSWORD"] == kafka_password
        assert len(kafka_password) >= 32
        assert kafka_password.isalnum()
        initdb = databases[service]["spec"]["bootstrap"]["initdb"]
        owner = secret_data(kube.get(f"/api/v1/namespaces/{DATA_NS}/secrets/{initdb['secret']['name']}"))
        assert owner["username"] == initdb["owner"] == service
        assert f"://{service}:{owner['password']}@" in data["DATABASE_URL"]
        assert owner["password"] != kafka_password
        drawn += [kafka_password, owner["password"]]
    # The state holds them only encrypted (the passphrase secrets provider).
    states = list(dev.run_dir.glob(f"state/.pulumi/stacks/**/{STACK}.json"))
    assert len(states) == 1, states
    state = states[0].read_text()
    assert "ciphertext" in state
    leaked = sum(password in state for password in drawn)
    assert leaked == 0, f"{leaked} of {len(drawn)} passwords are in the state in clear text"


def test_up_creates_the_strimzi_and_cloudnative_pg_resources(dev: Deployed, kube: Kube) -> None:
    def names(group_version: str, plural: str) -> list[str]:
        return sorted(
            o["metadata"]["name"] for o in kube.items(f"/apis/{group_version}/namespaces/{DATA_NS}/{plural}")
        )

    assert names("kafka.strimzi.io/v1", "kafkas") == ["emporium"]
    assert names("kafka.strimzi.io/v1", "kafkanodepools")
    assert names("kafka.strimzi.io/v1", "kafkatopics") == sorted(contract.all_topics())
    assert names("kafka.strimzi.io/v1", "kafkausers") == sorted(contract.DATA_SERVICES)
    clusters = kube.items(f"/apis/postgresql.cnpg.io/v1/namespaces/{DATA_NS}/clusters")
    assert sorted(_labels(c)["emporium.dev/service"] for c in clusters) == sorted(contract.DATA_SERVICES)


def test_up_creates_the_tls_certificates_the_ca_bundle_and_the_backups(dev: Deployed, kube: Kube) -> None:
    """As the API server stored them after validating them against the CRDs."""

    def named(path: str) -> dict[str, dict[str, Any]]:
        return {o["metadata"]["name"]: o for o in kube.items(path)}

    certificates = named(f"/apis/cert-manager.io/v1/namespaces/{DATA_NS}/certificates")
    assert sorted(certificates) == sorted(
        [
            model.KAFKA_LISTENER_TLS_SECRET,
            *(model.postgres_server_tls_secret(s) for s in contract.DATA_SERVICES),
        ]
    )
    (kafka,) = kube.items(f"/apis/kafka.strimzi.io/v1/namespaces/{DATA_NS}/kafkas")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True
    assert listener["port"] == 9093
    chain = listener["configuration"]["brokerCertChainAndKey"]
    bootstrap = dev.outputs["kafkaBootstrapServers"].rsplit(":", 1)
    assert bootstrap[1] == "9093"
    assert bootstrap[0] in certificates[chain["secretName"]]["spec"]["dnsNames"]

    issuers = named("/apis/cert-manager.io/v1/clusterissuers")
    assert issuers[model.ca_issuer(STACK)]["spec"]["ca"]["secretName"] == model.ca_issuer(STACK)
    assert "selfSigned" in issuers[model.selfsigned_issuer(STACK)]["spec"]
    ca = kube.get(
        f"/apis/cert-manager.io/v1/namespaces/{model.CERT_MANAGER_NAMESPACE}/certificates/{model.ca_issuer(STACK)}"
    )
    assert ca["spec"]["isCA"] is True
    bundle = kube.get(f"/apis/trust.cert-manager.io/v1alpha1/bundles/{model.ca_bundle(STACK)}")
    assert bundle["spec"]["target"]["configMap"] == {"key": "ca.crt"}

    for cluster in kube.items(f"/apis/postgresql.cnpg.io/v1/namespaces/{DATA_NS}/clusters"):
        name = cluster["metadata"]["name"]
        assert cluster["spec"]["certificates"]["serverTLSSecret"] in certificates, name
        (plugin,) = cluster["spec"]["plugins"]
        assert plugin["name"] == "barman-cloud.cloudnative-pg.io"
        assert plugin["isWALArchiver"] is True
        assert plugin["parameters"] == {"barmanObjectName": model.BACKUP_OBJECT_STORE}
        assert "backup" not in cluster["spec"], f"{name}: the deprecated in-tree backup is configured"
    (store,) = kube.items(f"/apis/barmancloud.cnpg.io/v1/namespaces/{DATA_NS}/objectstores")
    assert store["metadata"]["name"] == model.BACKUP_OBJECT_STORE
    assert store["spec"]["retentionPolicy"] == "7d"
    assert store["spec"]["configuration"]["destinationPath"] == BACKUP["destinationPath"]
    schedules = kube.items(f"/apis/postgresql.cnpg.io/v1/namespaces/{DATA_NS}/scheduledbackups")
    assert len(schedules) == len(contract.DATA_SERVICES)
    for schedule in schedules:
        assert schedule["spec"]["method"] == "plugin"
        assert schedule["spec"]["pluginConfiguration"]["name"] == "barman-cloud.cloudnative-pg.io"
    for service in contract.DATA_SERVICES:
        data = secret_data(
            kube.get(f"/api/v1/namespaces/{APP_NS}/secrets/{contract.service_secret_name(service)}")
        )
        assert "sslmode=verify-full" in data["DATABASE_URL"]
        assert f"sslrootcert={contract.POSTGRES_CA_FILE}" in data["DATABASE_URL"]


def _missing(sent: Any, stored: Any, path: str = "spec") -> list[str]:
    """Where ``stored`` lacks or changed what was ``sent`` (the server may add defaults)."""
    if isinstance(sent, dict):
        if not isinstance(stored, dict):
            return [path]
        return [m for k, v in sent.items() for m in _missing(v, stored.get(k), f"{path}.{k}")]
    if isinstance(sent, list):
        if not isinstance(stored, list) or len(stored) != len(sent):
            return [path]
        return [
            m
            for i, (a, b) in enumerate(zip(sent, stored, strict=True))
            for m in _missing(a, b, f"{path}[{i}]")
        ]
    return [] if sent == stored else [f"{path}: sent {sent!r}, stored {stored!r}"]


def test_the_api_server_kept_every_field_of_every_custom_resource(dev: Deployed, kube: Kube) -> None:
    """A field a CRD does not declare is pruned on write, silently: every field
    the model sends must come back, so a misspelt or misplaced one fails here."""
    stack = settings.StackSettings.from_stack_file(settings.stack_file(STACK))
    postgres = dataclasses.replace(
        stack.postgres,
        backup=settings.BackupSettings(
            destination_path=BACKUP["destinationPath"], retention=BACKUP["retention"]
        ),
    )
    specs: list[model.ResourceSpec] = [
        *model.certificate_authority(STACK),
        model.kafka_listener_certificate(STACK),
        model.ResourceSpec(
            "kafka.strimzi.io/v1",
            "Kafka",
            model.KAFKA_CLUSTER,
            DATA_NS,
            model.kafka_cluster_spec(stack.kafka),
        ),
        *(
            model.ResourceSpec("kafka.strimzi.io/v1", "KafkaNodePool", name, DATA_NS, spec)
            for name, spec in model.kafka_node_pools(stack.kafka).items()
        ),
        *(
            model.ResourceSpec("kafka.strimzi.io/v1", "KafkaUser", s, DATA_NS, model.kafka_user_spec(s))
            for s in contract.DATA_SERVICES
        ),
        model.ResourceSpec(
            model.BARMAN_CLOUD_API,
            "ObjectStore",
            model.BACKUP_OBJECT_STORE,
            DATA_NS,
            model.backup_object_store_spec(postgres) or {},
        ),
    ]
    for service in contract.DATA_SERVICES:
        cluster = model.postgres_cluster_name(service)
        specs += [
            model.postgres_server_certificate(STACK, service),
            model.ResourceSpec(
                "postgresql.cnpg.io/v1",
                "Cluster",
                cluster,
                DATA_NS,
                model.postgres_cluster_spec(service, postgres),
            ),
            model.ResourceSpec(
                "postgresql.cnpg.io/v1",
                "ScheduledBackup",
                f"{cluster}-daily",
                DATA_NS,
                model.postgres_scheduled_backup_spec(service, postgres) or {},
            ),
        ]
    pruned: dict[str, list[str]] = {}
    for spec in specs:
        where = f"namespaces/{spec.namespace}/" if spec.namespace else ""
        stored = kube.get(f"/apis/{spec.api_version}/{where}{spec.kind.lower()}s/{spec.name}")
        if missing := _missing(spec.spec, stored["spec"]):
            pruned[f"{spec.kind}/{spec.name}"] = missing
    assert pruned == {}
    assert len(specs) > 20


def test_a_second_up_changes_nothing(dev: Deployed, kube: Kube) -> None:
    before = secret_data(kube.get(f"/api/v1/namespaces/{APP_NS}/secrets/emporium-orders"))
    t0 = time.monotonic()
    preview = dev.stack.preview(color="never")
    print(f"pulumi preview: {time.monotonic() - t0:.1f}s, {preview.change_summary}")
    assert set(preview.change_summary) == {"same"}, preview.change_summary
    assert secret_data(kube.get(f"/api/v1/namespaces/{APP_NS}/secrets/emporium-orders")) == before


# --- then the chart, with what `pulumi up` created ------------------------------------


def _helm(tools: Tools, major: str, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tools.helm[major]), *args, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _values_overlay(dev: Deployed) -> Path:
    """The documented step: the stack's outputs through chart_values into a values file."""
    outputs = {name: output.value for name, output in dev.stack.outputs().items()}
    overlay = dev.run_dir / "values-dev.infra.yaml"
    overlay.write_text(yaml.safe_dump(chart_values.from_stack_outputs(outputs), sort_keys=False))
    return overlay


def _install(
    tools: Tools, major: str, kubeconfig: Path, dev: Deployed, chart: Path
) -> subprocess.CompletedProcess[str]:
    return _helm(
        tools,
        major,
        kubeconfig,
        "upgrade",
        "--install",
        "emporium",
        str(chart),
        "--namespace",
        APP_NS,
        "-f",
        str(ROOT / "charts" / "emporium" / "values-dev.yaml"),
        "-f",
        str(_values_overlay(dev)),
        "--wait",
        "--timeout",
        "5m",
    )


def _checksum(data: dict[str, str]) -> str:
    # What the chart's `toJson | sha256sum` of the Secret's data gives.
    return hashlib.sha256(json.dumps(data, separators=(",", ":"), sort_keys=True).encode()).hexdigest()


@pytest.fixture(scope="module")
def ca_bundle(dev: Deployed, kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> str:
    """What trust-manager writes into the application namespace from the Bundle
    (no trust-manager runs here): a CA certificate under ``ca.crt``."""
    directory = tmp_path_factory.mktemp("ca")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=Emporium dev platform CA"],
        cwd=directory, check=True, capture_output=True,
    )  # fmt: skip
    name = model.ca_bundle(STACK)
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": APP_NS},
        "data": {"ca.crt": (directory / "ca.crt").read_text()},
    }
    kube.apply(f"/api/v1/namespaces/{APP_NS}/configmaps/{name}", manifest, MANAGER)
    return name


@pytest.mark.parametrize("major", ["helm3", "helm4"])
def test_the_chart_installs_on_the_secrets_and_settings_pulumi_created(
    dev: Deployed, kube: Kube, kubeconfig: Path, tools: Tools, major: str, ca_bundle: str
) -> None:
    t0 = time.monotonic()
    installed = _install(tools, major, kubeconfig, dev, ROOT / "charts" / "emporium")
    print(f"{major} upgrade --install --wait: {time.monotonic() - t0:.1f}s")
    assert installed.returncode == 0, installed.stderr
    try:
        deployments = {
            d["metadata"]["name"]: d for d in kube.items(f"/apis/apps/v1/namespaces/{APP_NS}/deployments")
        }
        for service in contract.DATA_SERVICES:
            deployment = next(d for n, d in deployments.items() if n.endswith(service))
            assert deployment["status"].get("readyReplicas") == deployment["spec"]["replicas"], service
            pod = deployment["spec"]["template"]
            env_from = pod["spec"]["containers"][0]["envFrom"]
            assert {"configMapRef": {"name": contract.PLATFORM_CONFIGMAP}} in env_from
            assert {"secretRef": {"name": contract.service_secret_name(service)}} in env_from
            # The environment's CA, where DATABASE_URL's sslrootcert and KAFKA_SSL_CA_FILE look.
            mounts = {m["name"]: m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
            assert f"{mounts['postgres-ca']}/ca.crt" == contract.POSTGRES_CA_FILE
            assert f"{mounts['kafka-ca']}/ca.crt" == contract.KAFKA_CA_FILE
            for volume in ("postgres-ca", "kafka-ca"):
                assert volumes[volume]["configMap"]["name"] == ca_bundle, service
            # The chart read the Secret pulumi created (its checksum rolls the pods).
            secret = kube.get(f"/api/v1/namespaces/{APP_NS}/secrets/{contract.service_secret_name(service)}")
            assert pod["metadata"]["annotations"]["checksum/secret"] == _checksum(secret["data"]), service
        managed = [
            s["metadata"]["name"]
            for s in kube.items(f"/api/v1/namespaces/{APP_NS}/secrets")
            if _labels(s).get("app.kubernetes.io/managed-by") == "Helm"
        ]
        assert managed == [], f"the chart created Secrets of its own: {managed}"
    finally:
        uninstalled = _helm(
            tools, major, kubeconfig, "uninstall", "emporium", "--namespace", APP_NS, "--wait"
        )
        assert uninstalled.returncode == 0, uninstalled.stderr


def test_a_secret_key_the_chart_expects_under_another_name_fails_the_install(
    dev: Deployed, kubeconfig: Path, tools: Tools, tmp_path: Path
) -> None:
    chart = tmp_path / "emporium"
    shutil.copytree(ROOT / "charts" / "emporium", chart)
    helper = chart / "templates" / "_secretkeys.tpl"
    helper.write_text(helper.read_text().replace('"DATABASE_URL"', '"DB_URL"'))
    installed = _install(tools, "helm3", kubeconfig, dev, chart)
    assert installed.returncode != 0, "the chart installed though the Secret lacks the key it reads"
    assert "has no key DB_URL" in installed.stderr, installed.stderr


def test_a_secret_key_pulumi_writes_under_another_name_fails_the_install(
    dev: Deployed, kube: Kube, kubeconfig: Path, tools: Tools, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed = tuple("DB_URL" if k == "DATABASE_URL" else k for k in contract.SERVICE_SECRET_KEYS)
    monkeypatch.setattr(contract, "SERVICE_SECRET_KEYS", renamed)
    t0 = time.monotonic()
    dev.stack.up(color="never")
    print(f"pulumi up with DATABASE_URL renamed: {time.monotonic() - t0:.1f}s")
    try:
        data = secret_data(kube.get(f"/api/v1/namespaces/{APP_NS}/secrets/emporium-orders"))
        assert sorted(data) == sorted(renamed), "the program did not write the renamed key"
        installed = _install(tools, "helm3", kubeconfig, dev, ROOT / "charts" / "emporium")
        assert installed.returncode != 0, "the chart installed though the Secret lacks DATABASE_URL"
        assert "has no key DATABASE_URL" in installed.stderr, installed.stderr
    finally:
        monkeypatch.undo()
        dev.stack.up(color="never")
    data = secret_data(kube.get(f"/api/v1/namespaces/{APP_NS}/secrets/emporium-orders"))
    assert sorted(data) == sorted(contract.SERVICE_SECRET_KEYS)


def test_destroy_leaves_the_namespaces_gone(dev: Deployed, kube: Kube) -> None:
    t0 = time.monotonic()
    result = dev.stack.destroy(color="never")
    dev.destroyed = True
    print(f"pulumi destroy: {time.monotonic() - t0:.1f}s, {result.summary.resource_changes}")
    for ns in (APP_NS, DATA_NS):
        kube.wait_for(
            f"namespace {ns} to be gone", lambda n=ns: kube.find(f"/api/v1/namespaces/{n}") is None, 120
        )
    assert dev.stack.outputs() == {}
