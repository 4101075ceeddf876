"""The CA bundles the services verify Kafka and PostgreSQL with: mounted
read-only where the infrastructure's DATABASE_URL (``sslrootcert``) and
KAFKA_SSL_CA_FILE look, from a ConfigMap (the infrastructure's trust-manager
Bundle) or a Secret (a managed service's CA), and nowhere they are not used."""

from __future__ import annotations

from typing import Any

import chartlib
import pytest
from chartlib import DATA_SERVICES, ROOT, SERVICES, by_kind, is_hook, service_of

pytestmark = pytest.mark.unit


def _infra_contract() -> Any:
    """infra's contract module (plain data): the paths DATABASE_URL names."""
    import emporium

    infra_pkg = str(ROOT / "infra" / "src" / "emporium")
    if infra_pkg not in list(emporium.__path__):
        emporium.__path__.append(infra_pkg)
    from emporium.infra import contract, model

    return contract, model


def _pods(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {
        service_of(o): o["spec"]["template"]["spec"]
        for o in objects
        if o["kind"] == kind and "app.kubernetes.io/name" in o["metadata"]["labels"]
    }


def _mounts(pod: dict[str, Any]) -> dict[str, str]:
    (container,) = pod["containers"]
    mounts = container.get("volumeMounts", [])
    return {m["name"]: m["mountPath"] for m in mounts if m.get("readOnly")}


def _volumes(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod["volumes"]}


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_the_infrastructure_overlay_mounts_the_environment_ca_where_services_look(env: str) -> None:
    contract, model = _infra_contract()
    bundle = model.ca_bundle(env)
    overlay = (
        f"--set=platform.kafkaCa.configMapName={bundle}",
        f"--set=platform.postgresCa.configMapName={bundle}",
    )
    objects = chartlib.render(env, *overlay)
    configs = {
        service_of(c): c["data"]
        for c in by_kind(objects, "ConfigMap").values()
        if "app.kubernetes.io/name" in c["metadata"]["labels"]
    }
    deployments = _pods(objects, "Deployment")
    assert set(deployments) == set(SERVICES)
    for service, pod in deployments.items():
        mounts, volumes = _mounts(pod), _volumes(pod)
        if service in DATA_SERVICES:
            assert f"{mounts['kafka-ca']}/ca.crt" == contract.KAFKA_CA_FILE
            assert f"{mounts['postgres-ca']}/ca.crt" == contract.POSTGRES_CA_FILE
            for name in ("kafka-ca", "postgres-ca"):
                source = volumes[name]["configMap"]
                assert source["name"] == bundle, service
                assert source["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
            assert configs[service]["KAFKA_SSL_CA_FILE"] == contract.KAFKA_CA_FILE
            assert configs[service]["PGSSLROOTCERT"] == contract.POSTGRES_CA_FILE
        else:
            # The gateway talks to neither.
            assert not {"kafka-ca", "postgres-ca"} & set(volumes), service
            assert "KAFKA_SSL_CA_FILE" not in configs[service]
            assert "PGSSLROOTCERT" not in configs[service]
    # The migration Jobs connect with the same DATABASE_URL: they need the CA too.
    jobs = [o for o in objects if o["kind"] == "Job" and is_hook(o)]
    assert len(jobs) == len(DATA_SERVICES)
    for job in jobs:
        pod = job["spec"]["template"]["spec"]
        assert f"{_mounts(pod)['postgres-ca']}/ca.crt" == contract.POSTGRES_CA_FILE
        assert _volumes(pod)["postgres-ca"]["configMap"]["name"] == bundle


def test_without_a_ca_bundle_nothing_is_mounted() -> None:
    for pod in _pods(chartlib.render("dev"), "Deployment").values():
        assert set(_volumes(pod)) == {"tmp"}


def test_a_managed_services_ca_can_come_from_a_secret() -> None:
    """ci/minimal-values.yaml: the Kafka CA from a Secret, PostgreSQL's from a ConfigMap."""
    objects = chartlib.render("minimal-values")
    pod = _pods(objects, "Deployment")["catalog"]
    volumes = _volumes(pod)
    assert volumes["kafka-ca"]["secret"]["secretName"] == "emporium-kafka-ca"
    assert volumes["kafka-ca"]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    assert volumes["postgres-ca"]["configMap"]["name"] == "emporium-dev-ca-bundle"


def test_a_ca_from_both_a_configmap_and_a_secret_is_refused() -> None:
    result = chartlib.run_helm(
        "helm3",
        *chartlib.template_args(
            chartlib.scenario("dev"),
            "--set=platform.postgresCa.configMapName=a",
            "--set=platform.postgresCa.secretName=b",
        ),
        check=False,
    )
    assert result.returncode != 0
    assert "postgresCa" in result.stderr, result.stderr
