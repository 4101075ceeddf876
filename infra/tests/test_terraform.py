"""The Terraform path, synthesized with CDK Terrain and checked with its helpers
for the same properties as the Pulumi tests."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

from cdktn import Testing
from cdktn_provider_helm.release import Release
from cdktn_provider_kubernetes.config_map_v1 import ConfigMapV1
from cdktn_provider_kubernetes.manifest import Manifest
from cdktn_provider_kubernetes.namespace_v1 import NamespaceV1
from cdktn_provider_kubernetes.secret_v1 import SecretV1

from emporium.infra import contract, model, policies, versions
from emporium.infra.releases import all_releases
from emporium.infra.settings import StackSettings, stack_file
from emporium.infra.terraform_stack import PlatformStack, build_app

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def synthesized() -> dict[str, str]:
    out = {}
    for env in contract.ENVIRONMENTS:
        app = Testing.app()
        stack = PlatformStack(app, f"emporium-{env}", StackSettings.from_stack_file(stack_file(env)))
        out[env] = Testing.synth(stack)
    return out


def _resources(synth: str, kind: str) -> list[dict]:
    return list(json.loads(synth).get("resource", {}).get(kind, {}).values())


def _manifests(synth: str, kind: str) -> list[dict]:
    return [
        m["manifest"] for m in _resources(synth, Manifest.TF_RESOURCE_TYPE) if m["manifest"]["kind"] == kind
    ]


def test_the_app_writes_one_terraform_configuration_per_environment(tmp_path):
    # Validating with `terraform validate` needs the binary and its providers; the
    # synthesized JSON is checked structurally here and by the tests below.
    build_app(outdir=str(tmp_path)).synth()
    for env in contract.ENVIRONMENTS:
        document = json.loads((tmp_path / "stacks" / f"emporium-{env}" / "cdk.tf.json").read_text())
        assert set(document["provider"]) == {"kubernetes", "helm", "random"}
        assert document["variable"]["kube_context"]["default"]


@pytest.mark.parametrize("env", contract.ENVIRONMENTS)
def test_every_helm_release_is_pinned(synthesized, env):
    synth = synthesized[env]
    releases = _resources(synth, Release.TF_RESOURCE_TYPE)
    settings = StackSettings.from_stack_file(stack_file(env))
    assert sorted(r["name"] for r in releases) == sorted(r.name for r in all_releases(settings))
    pins = {(p.chart, p.version) for p in versions.ALL_CHARTS}
    for release in releases:
        assert (release["chart"], release["version"]) in pins
    assert Testing.to_have_resource_with_properties(
        synth, Release.TF_RESOURCE_TYPE, {"name": "strimzi", "version": versions.STRIMZI.version}
    )


@pytest.mark.parametrize("env", contract.ENVIRONMENTS)
def test_every_namespace_carries_the_restricted_labels(synthesized, env):
    for namespace in _resources(synthesized[env], NamespaceV1.TF_RESOURCE_TYPE):
        (metadata,) = namespace["metadata"]
        messages: list[str] = []
        policies.validate_restricted_namespace(
            policies.NAMESPACE, {"metadata": metadata}, lambda m, urn=None, sink=messages: sink.append(m)
        )
        assert messages == [], metadata["name"]
    assert Testing.to_have_resource_with_properties(
        synthesized[env],
        NamespaceV1.TF_RESOURCE_TYPE,
        {"metadata": [{"name": f"emporium-{env}", "labels": model.namespace_labels(f"emporium-{env}", env)}]},
    )


@pytest.mark.parametrize("env", contract.ENVIRONMENTS)
def test_the_chart_finds_its_secrets_and_settings(synthesized, env):
    synth = synthesized[env]
    app_secrets = [
        s
        for s in _resources(synth, SecretV1.TF_RESOURCE_TYPE)
        if s["metadata"]["namespace"] == f"emporium-{env}"
    ]
    assert sorted(s["metadata"]["name"] for s in app_secrets) == sorted(
        contract.service_secret_name(s) for s in contract.DATA_SERVICES
    )
    for secret in app_secrets:
        assert sorted(secret["data"]) == sorted(contract.SERVICE_SECRET_KEYS)
        # Generated passwords are references to random_password, never literals.
        assert "${random_password." in secret["data"]["KAFKA_SASL_PASSWORD"]
        assert "${random_password." in secret["data"]["DATABASE_URL"]
    assert Testing.to_have_resource_with_properties(
        synth,
        ConfigMapV1.TF_RESOURCE_TYPE,
        {"metadata": {"name": contract.PLATFORM_CONFIGMAP}, "data": {"ENVIRONMENT": env}},
    )
    (config,) = _resources(synth, ConfigMapV1.TF_RESOURCE_TYPE)
    assert sorted(config["data"]) == sorted(contract.PLATFORM_CONFIG_KEYS)


@pytest.mark.parametrize("env", contract.ENVIRONMENTS)
def test_kafka_users_topics_and_policies_match_the_pulumi_path(synthesized, env, stack_runs):
    synth = synthesized[env]
    users = {u["metadata"]["name"]: u["spec"] for u in _manifests(synth, "KafkaUser")}
    assert users == {s: model.kafka_user_spec(s) for s in contract.DATA_SERVICES}
    assert sorted(t["metadata"]["name"] for t in _manifests(synth, "KafkaTopic")) == sorted(
        contract.all_topics()
    )
    pulumi_kinds = {
        (r.inputs["kind"], r.get("metadata.name")): r.inputs["spec"]
        for r in stack_runs[env].resources
        if r.type.startswith("kubernetes:") and "spec" in r.inputs and "kind" in r.inputs
    }
    kinds = ("Kafka", "KafkaNodePool", "Cluster", "ScheduledBackup", "ObjectStore")
    kinds += ("Certificate", "ClusterIssuer", "Bundle")
    compared = [m for kind in kinds for m in _manifests(synth, kind)]
    assert {m["kind"] for m in compared} >= {"Kafka", "Cluster", "Certificate", "ClusterIssuer", "Bundle"}
    for m in compared:
        assert pulumi_kinds[(m["kind"], m["metadata"]["name"])] == m["spec"]
        assert policies.violations(f"kubernetes:x/v1:{m['kind']}", m) == {}


def test_prod_sizing(synthesized):
    synth = synthesized["prod"]
    pools = {p["metadata"]["name"]: p["spec"] for p in _manifests(synth, "KafkaNodePool")}
    assert pools["broker"]["replicas"] == 3
    (kafka,) = _manifests(synth, "Kafka")
    assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == 2
    assert kafka["spec"]["kafka"]["rack"]["topologyKey"] == "topology.kubernetes.io/zone"
    clusters = _manifests(synth, "Cluster")
    assert [c["spec"]["instances"] for c in clusters] == [3] * len(contract.DATA_SERVICES)
    assert all(c["spec"]["enablePDB"] for c in clusters)
    assert len(_manifests(synth, "ScheduledBackup")) == len(contract.DATA_SERVICES)


def test_dev_sizing(synthesized):
    synth = synthesized["dev"]
    (pool,) = _manifests(synth, "KafkaNodePool")
    assert pool["spec"]["replicas"] == 1
    assert [c["spec"]["instances"] for c in _manifests(synth, "Cluster")] == [1] * len(contract.DATA_SERVICES)
    assert _manifests(synth, "ScheduledBackup") == []
