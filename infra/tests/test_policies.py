"""Each policy's validator on a good and a bad resource."""

from __future__ import annotations

import pytest
from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

from emporium.infra import model, policies, releases
from emporium.infra.policy_pack import build_policies

pytestmark = pytest.mark.unit


def _check(validator, resource_type, props, **kwargs) -> list[str]:
    messages: list[str] = []
    validator(resource_type, props, lambda message, urn=None: messages.append(message), **kwargs)
    return messages


def _release(**overrides):
    props = {
        "chart": "grafana",
        "version": "13.2.1",
        "values": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}},
    }
    props.update(overrides)
    return props


def _namespace(name, **labels):
    return {"metadata": {"name": name, "labels": labels}}


RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}


@pytest.mark.parametrize("version", ["13.2.1", "1.2.0", "0.158.3", "2.0.0-rc.1"])
def test_pinned_chart_accepts_exact_versions(version):
    assert _check(policies.validate_pinned_chart, policies.HELM_RELEASE, _release(version=version)) == []


@pytest.mark.parametrize("version", [None, "", "^13.0.0", "13.x", "~1.2", ">=1.0.0", "latest"])
def test_pinned_chart_rejects_missing_or_ranged_versions(version):
    assert _check(policies.validate_pinned_chart, policies.HELM_RELEASE, _release(version=version))


def test_pinned_chart_rejects_an_oci_tag_in_the_chart_reference():
    props = _release(chart="oci://quay.io/strimzi-helm/strimzi-kafka-operator:1.2.0", version="1.2.0")
    assert _check(policies.validate_pinned_chart, policies.HELM_RELEASE, props)


def test_pinned_chart_ignores_other_resources():
    assert _check(policies.validate_pinned_chart, policies.NAMESPACE, {}) == []


def _service(kind="LoadBalancer", labels=None, annotations=None):
    return {
        "metadata": {"name": "web", "labels": labels or {}, "annotations": annotations or {}},
        "spec": {"type": kind},
    }


@pytest.mark.parametrize(
    "props",
    [
        _service("ClusterIP"),
        _service(labels={policies.EDGE_LABEL: "true"}),
        _service(annotations={"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}),
    ],
)
def test_load_balancer_policy_accepts_internal_and_edge_services(props):
    assert _check(policies.validate_no_public_load_balancer, policies.SERVICE, props) == []


def test_load_balancer_policy_rejects_a_public_service_that_is_not_the_edge():
    assert _check(policies.validate_no_public_load_balancer, policies.SERVICE, _service())


def test_load_balancer_policy_reads_helm_values():
    public = _release(values={"service": {"type": "LoadBalancer"}})
    internal = _release(
        values={
            "service": {
                "type": "LoadBalancer",
                "annotations": {"networking.gke.io/load-balancer-type": "Internal"},
            }
        }
    )
    assert _check(policies.validate_no_public_load_balancer, policies.HELM_RELEASE, public)
    assert _check(policies.validate_no_public_load_balancer, policies.HELM_RELEASE, internal) == []


def test_load_balancer_policy_rejects_an_internet_facing_aws_load_balancer():
    lb = "aws:lb/loadBalancer:LoadBalancer"
    assert _check(policies.validate_no_public_load_balancer, lb, {"internal": False})
    assert _check(policies.validate_no_public_load_balancer, lb, {"internal": True}) == []


def test_resources_policy_on_helm_values():
    assert _check(policies.validate_resources_set, policies.HELM_RELEASE, _release()) == []
    assert _check(policies.validate_resources_set, policies.HELM_RELEASE, _release(values={}))
    partial = _release(values={"resources": {"requests": {"cpu": "1"}}})
    (message,) = _check(policies.validate_resources_set, policies.HELM_RELEASE, partial)
    assert "requests.memory" in message
    assert "limits.memory" in message


def test_resources_policy_knows_where_kube_prometheus_stack_takes_them():
    values = releases.kube_prometheus_stack.release(_settings().observability).values
    props = _release(chart="kube-prometheus-stack", values=values)
    assert _check(policies.validate_resources_set, policies.HELM_RELEASE, props) == []
    del values["prometheus"]["prometheusSpec"]["resources"]
    assert _check(policies.validate_resources_set, policies.HELM_RELEASE, props)


def test_resources_policy_knows_where_tempo_takes_them():
    # The Tempo chart reads its container's resources from ``tempo.resources``;
    # a top-level ``resources`` is ignored by the chart.
    values = releases.tempo.release("dev", _settings().observability).values
    props = _release(chart="tempo", values=values)
    assert _check(policies.validate_resources_set, policies.HELM_RELEASE, props) == []
    moved = {**values, "resources": values["tempo"]["resources"]}
    moved["tempo"] = {k: v for k, v in values["tempo"].items() if k != "resources"}
    ignored = _release(chart="tempo", values=moved)
    assert _check(policies.validate_resources_set, policies.HELM_RELEASE, ignored)


def test_resources_policy_on_workloads_and_operands():
    good = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
    deployment = {"spec": {"template": {"spec": {"containers": [{"name": "a", "resources": good}]}}}}
    bare = {"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}
    kind = "kubernetes:apps/v1:Deployment"
    assert _check(policies.validate_resources_set, kind, deployment) == []
    assert _check(policies.validate_resources_set, kind, bare)
    pool = "kubernetes:kafka.strimzi.io/v1:KafkaNodePool"
    assert _check(policies.validate_resources_set, pool, {"spec": {"resources": good}}) == []
    assert _check(policies.validate_resources_set, pool, {"spec": {}})
    cluster = "kubernetes:postgresql.cnpg.io/v1:Cluster"
    assert _check(policies.validate_resources_set, cluster, {"spec": {}})


def test_namespace_policy_requires_restricted():
    validate = policies.validate_restricted_namespace
    assert _check(validate, policies.NAMESPACE, _namespace("emporium-dev", **RESTRICTED)) == []
    assert _check(validate, policies.NAMESPACE, _namespace("emporium-dev"))
    baseline = {**RESTRICTED, "pod-security.kubernetes.io/enforce": "baseline"}
    assert _check(validate, policies.NAMESPACE, _namespace("emporium-dev", **baseline))


def test_namespace_policy_admits_only_the_listed_exception_and_still_audits_it():
    validate = policies.validate_restricted_namespace
    privileged = {**RESTRICTED, "pod-security.kubernetes.io/enforce": "privileged"}
    agents = model.NODE_AGENTS_NAMESPACE
    assert _check(validate, policies.NAMESPACE, _namespace(agents, **privileged)) == []
    assert _check(validate, policies.NAMESPACE, _namespace(agents, **privileged), privileged=[])
    not_audited = {"pod-security.kubernetes.io/enforce": "privileged"}
    assert _check(validate, policies.NAMESPACE, _namespace(agents, **not_audited))


def test_secrets_policy_rejects_credentials_outside_secrets():
    validate = policies.validate_secrets_not_plain
    url = "postgresql://orders:hunter2@orders-db-rw:5432/orders"
    assert _check(validate, policies.CONFIGMAP, {"data": {"DATABASE_URL": url}})
    assert _check(validate, policies.CONFIGMAP, {"data": {"KAFKA_SASL_PASSWORD": "hunter2"}})
    assert _check(validate, policies.HELM_RELEASE, {"values": {"adminPassword": "hunter2"}})
    assert _check(validate, policies.SECRET, {"stringData": {"DATABASE_URL": url}}) == []
    plain = {
        "data": {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}
    }
    assert _check(validate, policies.CONFIGMAP, plain) == []
    # A reference to a Secret is not a credential.
    ref = {"spec": {"password": {"valueFrom": {"secretKeyRef": {"name": "x", "key": "password"}}}}}
    assert _check(validate, "kubernetes:kafka.strimzi.io/v1:KafkaUser", ref) == []


def test_stack_outputs_policy():
    url = "postgresql://orders:hunter2@orders-db-rw:5432/orders"
    messages: list[str] = []
    policies.validate_stack_outputs({"databaseUrls": {"orders": url}}, messages.append)
    assert messages == []
    policies.validate_stack_outputs({"urls": {"orders": url}}, messages.append)
    assert len(messages) == 1


def test_the_pack_registers_every_policy_as_mandatory():
    built = build_policies()
    names = [p.name for p in built]
    assert names == [*(info.name for info in policies.ALL_POLICIES), "secret-stack-outputs"]
    assert sum(isinstance(p, ResourceValidationPolicy) for p in built) == 5
    assert sum(isinstance(p, StackValidationPolicy) for p in built) == 1


def _settings():
    from .harness import settings_for

    return settings_for("dev")
