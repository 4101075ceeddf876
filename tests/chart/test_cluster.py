"""The chart against a real Kubernetes API server (pytest-helm-charts).

For each environment: prepare the namespace as the infrastructure would
(Pod Security `restricted`, ConfigMap emporium-platform, Secrets
emporium-<service>), `helm upgrade --install` with that environment's
values, wait for every Deployment to be available, upgrade with a changed
setting and see the pods roll, then roll back and see the old setting
return.

Needs KUBECONFIG; without it every test here is skipped, never passed.
What the cluster runs is set with environment variables:

- EMPORIUM_TEST_IMAGE_REGISTRY / EMPORIUM_TEST_IMAGE_TAG: where the images
  are (default: the chart's placeholder registry, which only a cluster that
  does not pull, such as KWOK, can "run").
- EMPORIUM_TEST_DATABASE_URL: a template with `{service}` for each
  service's DATABASE_URL (default: a placeholder on host `postgres`).
- EMPORIUM_TEST_KAFKA_BOOTSTRAP_SERVERS (default `kafka:9092`).
- EMPORIUM_TEST_VALUES: an extra values file layered last (for example to
  relax zone spreading on a cluster whose nodes carry no zone label).
- EMPORIUM_TEST_HELM: helm3 (default) or helm4.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import chartlib
import pytest
from chartlib import CHART, DATA_SERVICES, ENVIRONMENTS, SERVICES

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        not os.environ.get("KUBECONFIG"),
        reason="no Kubernetes API server: KUBECONFIG is not set (install, upgrade and rollback "
        "of each environment need one)",
    ),
]

READY_TIMEOUT = int(os.environ.get("EMPORIUM_TEST_READY_TIMEOUT", "600"))


def helm_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    major = os.environ.get("EMPORIUM_TEST_HELM", "helm3")
    return chartlib.run_helm(major, *args, "--kubeconfig", os.environ["KUBECONFIG"], check=check)


def install_args(env: str, namespace: str, *extra: str) -> list[str]:
    args = [
        "upgrade",
        "--install",
        "emporium",
        str(CHART),
        "--namespace",
        namespace,
        "-f",
        str(CHART / f"values-{env}.yaml"),
        "--wait",
        "--timeout",
        f"{READY_TIMEOUT}s",
    ]
    if registry := os.environ.get("EMPORIUM_TEST_IMAGE_REGISTRY"):
        args += ["--set", f"image.registry={registry}"]
    if tag := os.environ.get("EMPORIUM_TEST_IMAGE_TAG"):
        args += ["--set", f"image.tag={tag}"]
    if extra_values := os.environ.get("EMPORIUM_TEST_VALUES"):
        args += ["-f", extra_values]
    return args + list(extra)


def create(kube_client: Any, kind: type, obj: dict[str, Any]) -> None:
    kind(kube_client, obj).create()


@pytest.fixture(scope="module", params=ENVIRONMENTS)
def release(
    request: pytest.FixtureRequest, kube_cluster: Any, namespace_factory: Any
) -> Iterator[dict[str, str]]:
    """One installed environment in its own throw-away namespace."""
    import pykube

    env = request.param
    namespace = f"emporium-{env}-{uuid.uuid4().hex[:6]}"
    # What the infrastructure does for emporium-<env>.
    namespace_factory(
        namespace,
        extra_metadata={
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            }
        },
    )
    client = kube_cluster.kube_client
    create(
        client,
        pykube.ConfigMap,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "emporium-platform", "namespace": namespace},
            "data": {
                "KAFKA_BOOTSTRAP_SERVERS": os.environ.get(
                    "EMPORIUM_TEST_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"
                ),
                "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "",
                "OTEL_TRACES_EXPORTER": "none",
                "ENVIRONMENT": env,
            },
        },
    )
    url_template = os.environ.get(
        "EMPORIUM_TEST_DATABASE_URL", "postgresql://{service}@postgres:5432/{service}"
    )
    for service in DATA_SERVICES:
        create(
            client,
            pykube.Secret,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": f"emporium-{service}", "namespace": namespace},
                "stringData": {
                    "DATABASE_URL": url_template.format(service=service),
                    "KAFKA_SASL_USERNAME": "",
                    "KAFKA_SASL_PASSWORD": "",
                },
            },
        )
    helm_cli(*install_args(env, namespace))
    yield {"env": env, "namespace": namespace}
    helm_cli("uninstall", "emporium", "--namespace", namespace, "--wait", check=False)


def deployment_names() -> list[str]:
    return [f"emporium-{s}" for s in SERVICES]


def gateway_config(kube_cluster: Any, namespace: str) -> dict[str, str]:
    import pykube

    return (
        pykube.ConfigMap.objects(kube_cluster.kube_client, namespace=namespace)
        .get(name="emporium-gateway")
        .obj["data"]
    )


def test_install_becomes_ready(kube_cluster: Any, release: dict[str, str]) -> None:
    from pytest_helm_charts.k8s.deployment import wait_for_deployments_to_run

    deployments = wait_for_deployments_to_run(
        kube_cluster.kube_client, deployment_names(), release["namespace"], READY_TIMEOUT
    )
    assert len(deployments) == len(SERVICES)
    if release["env"] == "prod":
        assert all(d.obj["status"]["availableReplicas"] >= 2 for d in deployments)
    history = json.loads(
        helm_cli("history", "emporium", "--namespace", release["namespace"], "-o", "json").stdout
    )
    assert history[-1]["status"] == "deployed"


def test_upgrade_rolls_the_changed_service(kube_cluster: Any, release: dict[str, str]) -> None:
    import pykube
    from pytest_helm_charts.k8s.deployment import wait_for_deployments_to_run

    namespace = release["namespace"]
    client = kube_cluster.kube_client
    before = pykube.Deployment.objects(client, namespace=namespace).get(name="emporium-gateway").obj
    helm_cli(
        *install_args(
            release["env"], namespace, "--set", "services.gateway.env.CACHE_TTL_SECONDS=7"
        )
    )
    assert gateway_config(kube_cluster, namespace)["CACHE_TTL_SECONDS"] == "7"
    wait_for_deployments_to_run(client, deployment_names(), namespace, READY_TIMEOUT)
    after = pykube.Deployment.objects(client, namespace=namespace).get(name="emporium-gateway").obj
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    assert (
        after["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        != before["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    )


def test_rollback_restores_the_previous_release(kube_cluster: Any, release: dict[str, str]) -> None:
    from pytest_helm_charts.k8s.deployment import wait_for_deployments_to_run

    namespace = release["namespace"]
    helm_cli(
        "rollback",
        "emporium",
        "1",
        "--namespace",
        namespace,
        "--wait",
        "--timeout",
        f"{READY_TIMEOUT}s",
    )
    assert gateway_config(kube_cluster, namespace)["CACHE_TTL_SECONDS"] == "5"
    wait_for_deployments_to_run(
        kube_cluster.kube_client, deployment_names(), namespace, READY_TIMEOUT
    )
    history = json.loads(
        helm_cli("history", "emporium", "--namespace", namespace, "-o", "json").stdout
    )
    assert [h["revision"] for h in history][-1] == 3
    assert history[-1]["status"] == "deployed"
