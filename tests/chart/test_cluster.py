"""The chart against a real Kubernetes API server (pytest-helm-charts).

`scripts/test-chart.sh` starts the local control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and KWOK's fake nodes in three zones;
docs/cluster.md) and exports its KUBECONFIG; any other cluster works the same
(docs/deploy.md). With Helm 3 and Helm 4, for each environment:

- the namespace is prepared as the infrastructure prepares it: labels
  (Pod Security `restricted`), ResourceQuota, LimitRange, ConfigMap
  emporium-platform and Secrets emporium-<service>, all computed by the
  infrastructure's own model (infra/src/emporium/infra) from that
  environment's stack file, the CA bundle ConfigMap trust-manager writes
  there (a CA certificate made here), and the infrastructure's chart values
  overlay (pruned to the keys the previous chart version knew, for it);
- before installing, every Secret and ConfigMap a pod of the chart names
  exists (a real kubelet would fail the pod; KWOK would not);
- `helm upgrade --install --wait` of that environment's values file: every
  Deployment available, every migration hook Job complete, prod's replicas
  spread over zones; then an upgrade that changes a setting rolls the pods,
  and `helm rollback` restores it;
- an upgrade from the previous chart version (from git history) to this one,
  then a rollback: selectors never change;
- guards: a values typo is refused by the schema, a failing migration stops
  the upgrade with the old pods serving, and the API server refuses a pod
  that breaks `restricted`.

Without KUBECONFIG the module is skipped, unless EMPORIUM_REQUIRE_PLATFORM=1
(as in `make test`), where it fails. What the cluster runs is set with:

- EMPORIUM_TEST_IMAGE_REGISTRY / EMPORIUM_TEST_IMAGE_TAG: where the images
  are (default: the chart's placeholder registry, which only a cluster that
  does not pull, such as KWOK, can "run").
- EMPORIUM_TEST_VALUES: an extra values file layered last.
- EMPORIUM_TEST_HELM: run only this major (helm3 or helm4; default both).
- EMPORIUM_TEST_READY_TIMEOUT: seconds helm waits (default 300).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import chartlib
import pytest
import yaml
from chartlib import CHART, ENVIRONMENTS, ROOT, SERVICES

READY_TIMEOUT = int(os.environ.get("EMPORIUM_TEST_READY_TIMEOUT", "300"))
# A test runs up to three helm operations that each wait up to READY_TIMEOUT.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(3 * READY_TIMEOUT + 300)]
MAJORS = tuple(m for m in chartlib.HELM_MAJORS if os.environ.get("EMPORIUM_TEST_HELM", m) == m)
RELEASE = "emporium"
# The kind of the chart's selectors: Kubernetes refuses to change them.
SELECTOR_KINDS = ("Deployment", "Service", "PodDisruptionBudget")


@pytest.fixture(scope="module", autouse=True)
def api_server() -> str:
    kubeconfig = os.environ.get("KUBECONFIG", "")
    if not kubeconfig:
        message = (
            "no Kubernetes API server: KUBECONFIG is not set (scripts/test-chart.sh starts the "
            "local one; or `python3 scripts/platformctl.py cluster-up` and export "
            "KUBECONFIG=$(python3 scripts/platformctl.py cluster-kubeconfig))"
        )
        if os.environ.get("EMPORIUM_REQUIRE_PLATFORM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return kubeconfig


# --- what the infrastructure creates for an environment --------------------------


def _infra() -> Any:
    """The infrastructure's contract and model (plain data, no Pulumi needed)."""
    import emporium

    infra_pkg = str(ROOT / "infra" / "src" / "emporium")
    if infra_pkg not in list(emporium.__path__):
        emporium.__path__.append(infra_pkg)
    from emporium.infra import chart_values, contract, model, settings

    return contract, model, settings, chart_values


@dataclass(frozen=True)
class Prepared:
    """What the infrastructure put into one application namespace."""

    env: str
    namespace: str
    secrets: frozenset[str]
    config_maps: frozenset[str]
    overlay: Path


def prepare_namespace(
    client: Any, namespace_factory: Any, env: str, workdir: Path, prefix: str, quota: bool = True
) -> Prepared:
    import pykube

    contract, model, settings_mod, chart_values = _infra()
    stack = settings_mod.StackSettings.from_stack_file(settings_mod.stack_file(env))
    namespace = f"{prefix}-{env}-{uuid.uuid4().hex[:5]}"
    namespace_factory(
        namespace,
        extra_metadata={"labels": model.namespace_labels(contract.app_namespace(env), env)},
    )
    wait_for_service_account(client, namespace)
    labels = model.MANAGED_BY
    meta = {"namespace": namespace, "labels": labels}
    if quota:
        pykube.object_factory(client, "v1", "ResourceQuota")(
            client,
            {
                "metadata": {"name": "emporium", **meta},
                "spec": model.resource_quota_spec(stack.app),
            },
        ).create()
    pykube.object_factory(client, "v1", "LimitRange")(
        client, {"metadata": {"name": "emporium", **meta}, "spec": model.limit_range_spec()}
    ).create()
    pykube.ConfigMap(
        client,
        {
            "metadata": {"name": contract.PLATFORM_CONFIGMAP, **meta},
            "data": model.platform_config(stack),
        },
    ).create()
    # What trust-manager writes from the environment's Bundle: the CA certificate.
    ca = workdir / f"{namespace}-ca"
    ca.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
         "-subj", f"/CN=Emporium {env} platform CA"],
        cwd=ca, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    pykube.ConfigMap(
        client,
        {
            "metadata": {"name": model.ca_bundle(env), "namespace": namespace},
            "data": {contract.CA_BUNDLE_KEY: (ca / "ca.crt").read_text()},
        },
    ).create()
    secret_names = set()
    for service in contract.DATA_SERVICES:
        name = contract.service_secret_name(service)
        url = model.database_url(
            model.postgres_host(env, service), service, secrets.token_urlsafe(16)
        )
        values = (url, service, secrets.token_urlsafe(16))
        pykube.Secret(
            client,
            {
                "metadata": {"name": name, **meta},
                "type": "Opaque",
                "stringData": dict(zip(contract.SERVICE_SECRET_KEYS, values, strict=True)),
            },
        ).create()
        secret_names.add(name)
    overlay = workdir / f"{namespace}.infra-values.yaml"
    overlay.write_text(yaml.safe_dump(chart_values.chart_values(stack), sort_keys=False))
    return Prepared(
        env,
        namespace,
        frozenset(secret_names),
        frozenset({contract.PLATFORM_CONFIGMAP, model.ca_bundle(env)}),
        overlay,
    )


def wait_for_service_account(client: Any, namespace: str) -> None:
    """The controller manager gives every new namespace its `default`
    ServiceAccount; a pod created before that is refused."""
    import pykube

    deadline = time.monotonic() + 30
    while not list(
        pykube.ServiceAccount.objects(client, namespace=namespace).filter(
            field_selector={"metadata.name": "default"}
        )
    ):
        assert time.monotonic() < deadline, f"no ServiceAccount default in {namespace} after 30s"
        time.sleep(0.2)


# --- helm --------------------------------------------------------------------------


def helm(major: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(ROOT / ".cache" / "helm"),
        "HELM_CONFIG_HOME": str(ROOT / ".cache" / "helm-config"),
        "HELM_DATA_HOME": str(ROOT / ".cache" / "helm-data"),
    }
    result = subprocess.run(
        [str(chartlib.helm(major)), *args, "--kubeconfig", os.environ["KUBECONFIG"]],
        capture_output=True,
        text=True,
        env=env,
        timeout=READY_TIMEOUT + 120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{major} {' '.join(args)} failed:\n{result.stderr}")
    return result


def _known_to(defaults: Any, values: Any) -> Any:
    """``values`` without the keys a chart's values.yaml does not have (where it
    has a map): what the infrastructure's overlay was before those keys existed."""
    if not isinstance(defaults, dict) or not isinstance(values, dict) or not defaults:
        return values
    return {k: _known_to(defaults[k], v) for k, v in values.items() if k in defaults}


def overlay_for(prepared: Prepared, chart: Path) -> Path:
    """The infrastructure's overlay as a chart of another version can take it."""
    if chart == CHART:
        return prepared.overlay
    defaults = yaml.safe_load((chart / "values.yaml").read_text())
    pruned = prepared.overlay.with_name(f"{prepared.overlay.stem}.{chart.parent.parent.name}.yaml")
    values = _known_to(defaults, yaml.safe_load(prepared.overlay.read_text()))
    pruned.write_text(yaml.safe_dump(values, sort_keys=False))
    return pruned


def values_args(prepared: Prepared, chart: Path = CHART) -> list[str]:
    overlay = overlay_for(prepared, chart)
    args = ["-f", str(chart / f"values-{prepared.env}.yaml"), "-f", str(overlay)]
    if registry := os.environ.get("EMPORIUM_TEST_IMAGE_REGISTRY"):
        args += ["--set", f"image.registry={registry}"]
    if tag := os.environ.get("EMPORIUM_TEST_IMAGE_TAG"):
        args += ["--set", f"image.tag={tag}"]
    if extra := os.environ.get("EMPORIUM_TEST_VALUES"):
        args += ["-f", extra]
    return args


def upgrade(
    major: str, prepared: Prepared, *extra: str, chart: Path = CHART, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return helm(
        major,
        "upgrade",
        "--install",
        RELEASE,
        str(chart),
        "--namespace",
        prepared.namespace,
        *values_args(prepared, chart),
        "--wait",
        "--timeout",
        f"{READY_TIMEOUT}s",
        *extra,
        check=check,
    )


def history(major: str, namespace: str) -> list[dict[str, Any]]:
    out = helm(major, "history", RELEASE, "--namespace", namespace, "-o", "json").stdout
    return list(json.loads(out))


def rendered(major: str, prepared: Prepared) -> list[dict[str, Any]]:
    text = helm(
        major,
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        prepared.namespace,
        *values_args(prepared),
        "--kube-version",
        chartlib.RENDER_KUBE_VERSION,
    ).stdout
    return chartlib.parse(text)


# --- reading the cluster ---------------------------------------------------------


def deployment_names() -> list[str]:
    return [f"emporium-{s}" for s in SERVICES]


def wait_available(client: Any, namespace: str) -> list[Any]:
    from pytest_helm_charts.k8s.deployment import wait_for_deployments_to_run

    deployments = wait_for_deployments_to_run(client, deployment_names(), namespace, READY_TIMEOUT)
    assert sorted(d.name for d in deployments) == sorted(deployment_names())
    return list(deployments)


def live_selectors(client: Any, namespace: str) -> dict[str, Any]:
    import pykube

    found: dict[str, Any] = {}
    for kind in (pykube.Deployment, pykube.Service, pykube.PodDisruptionBudget):
        for obj in kind.objects(client, namespace=namespace):
            spec = obj.obj["spec"]
            found[f"{obj.kind}/{obj.name}"] = spec.get("selector")
    return found


def migration_jobs(client: Any, namespace: str) -> list[Any]:
    import pykube

    return list(
        pykube.Job.objects(client, namespace=namespace).filter(
            selector={"app.kubernetes.io/component": "migration"}
        )
    )


def condition(obj: Any, kind: str) -> bool:
    return any(
        c["type"] == kind and c["status"] == "True"
        for c in obj.obj.get("status", {}).get("conditions", [])
    )


def pod_references(pod_spec: dict[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of every Secret and ConfigMap a pod spec needs to start."""
    refs: set[tuple[str, str]] = set()
    containers = pod_spec.get("containers", []) + pod_spec.get("initContainers", [])
    for c in containers:
        for source in c.get("envFrom", []):
            for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                if key in source and not source[key].get("optional"):
                    refs.add((kind, source[key]["name"]))
        for var in c.get("env", []):
            ref = var.get("valueFrom", {})
            for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                if key in ref and not ref[key].get("optional"):
                    refs.add((kind, ref[key]["name"]))
    for volume in pod_spec.get("volumes", []):
        if "secret" in volume and not volume["secret"].get("optional"):
            refs.add(("Secret", volume["secret"]["secretName"]))
        if "configMap" in volume and not volume["configMap"].get("optional"):
            refs.add(("ConfigMap", volume["configMap"]["name"]))
        for source in volume.get("projected", {}).get("sources", []):
            for key, kind in (("secret", "Secret"), ("configMap", "ConfigMap")):
                if key in source and not source[key].get("optional"):
                    refs.add((kind, source[key]["name"]))
    for pull in pod_spec.get("imagePullSecrets", []):
        refs.add(("Secret", pull["name"]))
    return refs


def missing_references(objects: list[dict[str, Any]], existing: set[tuple[str, str]]) -> list[str]:
    """What a pod of the chart names that will not exist when it starts.

    A hook (the migration Jobs run before anything else of the release is
    created) may only name what already exists in the namespace; the other
    pods may also name what the chart creates itself.
    """
    created = {(o["kind"], o["metadata"]["name"]) for o in objects if not chartlib.is_hook(o)}
    missing = []
    for obj in objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec")
        if spec is None:
            continue
        available = existing if chartlib.is_hook(obj) else existing | created
        for kind, name in sorted(pod_references(spec) - available):
            missing.append(f"{obj['kind']}/{obj['metadata']['name']} needs {kind}/{name}")
    return missing


def existing_references(client: Any, namespace: str) -> set[tuple[str, str]]:
    import pykube

    found = {("Secret", s.name) for s in pykube.Secret.objects(client, namespace=namespace)}
    found |= {("ConfigMap", c.name) for c in pykube.ConfigMap.objects(client, namespace=namespace)}
    return found


# --- one environment, installed ----------------------------------------------------


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="emporium-cluster-") as tmp:
        yield Path(tmp)


@dataclass
class Release:
    major: str
    prepared: Prepared
    missing_before_install: list[str]
    install_seconds: float

    @property
    def namespace(self) -> str:
        return self.prepared.namespace

    @property
    def env(self) -> str:
        return self.prepared.env


@pytest.fixture(
    scope="module",
    params=[(m, e) for m in MAJORS for e in ENVIRONMENTS],
    ids=[f"{m}-{e}" for m in MAJORS for e in ENVIRONMENTS],
)
def release(
    request: pytest.FixtureRequest, kube_cluster: Any, namespace_factory: Any, workdir: Path
) -> Release:
    major, env = request.param
    client = kube_cluster.kube_client
    prepared = prepare_namespace(client, namespace_factory, env, workdir, "emporium")
    missing = missing_references(
        rendered(major, prepared), existing_references(client, prepared.namespace)
    )
    started = time.monotonic()
    upgrade(major, prepared)
    return Release(major, prepared, missing, time.monotonic() - started)


def test_every_secret_and_configmap_a_pod_names_exists_before_install(release: Release) -> None:
    # KWOK starts a pod whatever it names; a kubelet would stop it with
    # CreateContainerConfigError. So the chart is checked against what the
    # infrastructure had created in the namespace before `helm install`.
    assert release.missing_before_install == []


def test_install_becomes_ready(kube_cluster: Any, release: Release) -> None:
    import pykube

    client = kube_cluster.kube_client
    deployments = wait_available(client, release.namespace)
    if release.env == "prod":
        assert all(d.obj["status"]["availableReplicas"] >= 2 for d in deployments)
    # Every migration hook ran to completion before the release was deployed.
    jobs = migration_jobs(client, release.namespace)
    assert sorted(j.name for j in jobs) == sorted(
        f"emporium-{s}-migrate" for s in chartlib.DATA_SERVICES
    ), [j.name for j in jobs]
    assert all(condition(j, "Complete") for j in jobs), [j.obj["status"] for j in jobs]
    # Zone spreading was satisfiable and was applied.
    zones = {n.name: n.labels["topology.kubernetes.io/zone"] for n in pykube.Node.objects(client)}
    for d in deployments:
        pods = pykube.Pod.objects(client, namespace=release.namespace).filter(
            selector=d.obj["spec"]["selector"]["matchLabels"]
        )
        used = {zones[p.obj["spec"]["nodeName"]] for p in pods if p.ready}
        if d.replicas >= 2 and release.env == "prod":
            assert len(used) >= 2, f"{d.name}: all replicas in {used}"
    assert history(release.major, release.namespace)[-1]["status"] == "deployed"


def gateway_config(client: Any, namespace: str) -> dict[str, str]:
    import pykube

    return dict(
        pykube.ConfigMap.objects(client, namespace=namespace)
        .get(name="emporium-gateway")
        .obj["data"]
    )


def test_upgrade_rolls_the_changed_service(kube_cluster: Any, release: Release) -> None:
    import pykube

    client = kube_cluster.kube_client
    before = pykube.Deployment.objects(client, namespace=release.namespace).get(
        name="emporium-gateway"
    )
    selectors = live_selectors(client, release.namespace)
    upgrade(release.major, release.prepared, "--set", "services.gateway.env.CACHE_TTL_SECONDS=7")
    assert gateway_config(client, release.namespace)["CACHE_TTL_SECONDS"] == "7"
    wait_available(client, release.namespace)
    after = pykube.Deployment.objects(client, namespace=release.namespace).get(
        name="emporium-gateway"
    )
    assert after.obj["metadata"]["generation"] > before.obj["metadata"]["generation"]
    annotations = "spec", "template", "metadata", "annotations"
    assert (
        _dig(after.obj, annotations)["checksum/config"]
        != _dig(before.obj, annotations)["checksum/config"]
    )
    assert live_selectors(client, release.namespace) == selectors


def test_rollback_restores_the_previous_release(kube_cluster: Any, release: Release) -> None:
    client = kube_cluster.kube_client
    helm(
        release.major,
        "rollback",
        RELEASE,
        "1",
        "--namespace",
        release.namespace,
        "--wait",
        "--timeout",
        f"{READY_TIMEOUT}s",
    )
    assert gateway_config(client, release.namespace)["CACHE_TTL_SECONDS"] == "5"
    wait_available(client, release.namespace)
    revisions = history(release.major, release.namespace)
    assert revisions[-1]["revision"] == 3
    assert revisions[-1]["status"] == "deployed"


def _dig(obj: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


# --- upgrade from the previous chart version ----------------------------------------


def previous_chart(workdir: Path) -> tuple[Path, str]:
    """The newest committed chart whose version differs from the working tree's."""
    current = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]

    def git(*args: str) -> bytes:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, check=True, timeout=60
        ).stdout

    for commit in git("log", "--format=%H", "--", "charts/emporium/Chart.yaml").decode().split():
        version = yaml.safe_load(git("show", f"{commit}:charts/emporium/Chart.yaml"))["version"]
        if version != current:
            target = workdir / f"chart-{version}"
            if not target.exists():
                archive = git("archive", "--format=tar", commit, "charts/emporium")
                with tarfile.open(fileobj=BytesIO(archive)) as tar:
                    tar.extractall(target, filter="data")
            return target / "charts" / "emporium", version
    pytest.fail(f"no chart version other than {current} in git history")


@pytest.mark.parametrize("major", MAJORS)
@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_upgrade_from_the_previous_chart_version_and_back(
    kube_cluster: Any, namespace_factory: Any, workdir: Path, major: str, env: str
) -> None:
    client = kube_cluster.kube_client
    old_chart, old_version = previous_chart(workdir)
    # No ResourceQuota here: the previous chart's sizes were made for the
    # quota of its time (chart 0.1.1's staging needs more than today's
    # limits.cpu 8). Today's quota is checked against today's chart by the
    # install tests; this test is about what the chart changes between versions.
    prepared = prepare_namespace(client, namespace_factory, env, workdir, "upgrade", quota=False)
    # The release as it was installed with the previous chart and its values.
    upgrade(major, prepared, chart=old_chart)
    wait_available(client, prepared.namespace)
    old_selectors = live_selectors(client, prepared.namespace)
    assert history(major, prepared.namespace)[-1]["chart"] == f"emporium-{old_version}"

    upgrade(major, prepared)
    wait_available(client, prepared.namespace)
    revisions = history(major, prepared.namespace)
    current = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    assert revisions[-1]["chart"] == f"emporium-{current}"
    assert revisions[-1]["status"] == "deployed"
    new_selectors = live_selectors(client, prepared.namespace)
    common = set(old_selectors) & set(new_selectors)
    assert common, "no object of the previous chart version is left"
    assert {k: old_selectors[k] for k in common} == {k: new_selectors[k] for k in common}

    helm(
        major,
        "rollback",
        RELEASE,
        "1",
        "--namespace",
        prepared.namespace,
        "--wait",
        "--timeout",
        f"{READY_TIMEOUT}s",
    )
    wait_available(client, prepared.namespace)
    revisions = history(major, prepared.namespace)
    assert revisions[-1]["chart"] == f"emporium-{old_version}"
    assert revisions[-1]["status"] == "deployed"
    assert live_selectors(client, prepared.namespace) == old_selectors


# --- the guards --------------------------------------------------------------------


@pytest.mark.parametrize("major", MAJORS)
@pytest.mark.parametrize(
    ("setting", "typo"),
    [
        ("services.gateway.replcas=3", "replcas"),
        ("imagee.tag=1.0.0", "imagee"),
        ("migrations.backofLimit=1", "backofLimit"),
    ],
)
def test_a_values_typo_is_refused_by_the_schema(
    kube_cluster: Any,
    namespace_factory: Any,
    workdir: Path,
    major: str,
    setting: str,
    typo: str,
) -> None:
    prepared = prepare_namespace(
        kube_cluster.kube_client, namespace_factory, "dev", workdir, "typo"
    )
    result = upgrade(major, prepared, "--set", setting, check=False)
    assert result.returncode != 0
    assert "schema" in result.stderr.lower(), result.stderr
    assert typo in result.stderr, result.stderr
    # Nothing was created: no release, no Deployment.
    status = helm(major, "status", RELEASE, "--namespace", prepared.namespace, check=False)
    assert status.returncode != 0
    assert "not found" in status.stderr
    import pykube

    assert not list(
        pykube.Deployment.objects(kube_cluster.kube_client, namespace=prepared.namespace)
    )


@pytest.mark.parametrize("major", MAJORS)
def test_a_failed_migration_stops_the_upgrade_and_the_old_pods_keep_serving(
    kube_cluster: Any, namespace_factory: Any, workdir: Path, major: str
) -> None:
    import pykube

    client = kube_cluster.kube_client
    prepared = prepare_namespace(client, namespace_factory, "staging", workdir, "migration")
    upgrade(major, prepared)
    wait_available(client, prepared.namespace)

    def snapshot() -> dict[str, Any]:
        return {
            d.name: (d.obj["metadata"]["generation"], d.obj["spec"]["template"])
            for d in pykube.Deployment.objects(client, namespace=prepared.namespace)
        }

    before = snapshot()
    orders_config = (
        pykube.ConfigMap.objects(client, namespace=prepared.namespace)
        .get(name="emporium-orders")
        .obj["data"]
    )
    # The new release changes orders' settings, and its migration exits 1
    # (KWOK fails a Job pod whose container sets KWOK_JOB_RESULT=failed).
    result = upgrade(
        major,
        prepared,
        "--set",
        "services.orders.env.KWOK_JOB_RESULT=failed",
        "--set",
        "services.orders.logLevel=DEBUG",
        check=False,
    )
    assert result.returncode != 0, result.stdout
    assert "emporium-orders-migrate" in result.stderr, result.stderr
    job = pykube.Job.objects(client, namespace=prepared.namespace).get(
        name="emporium-orders-migrate"
    )
    assert condition(job, "Failed"), job.obj["status"]
    # Nothing of the new release reached the Deployments or their settings.
    assert snapshot() == before
    assert (
        pykube.ConfigMap.objects(client, namespace=prepared.namespace)
        .get(name="emporium-orders")
        .obj["data"]
        == orders_config
    )
    deployments = wait_available(client, prepared.namespace)
    assert all(d.ready for d in deployments)
    revisions = history(major, prepared.namespace)
    assert [r["status"] for r in revisions[-2:]] == ["deployed", "failed"]


def test_the_api_server_refuses_a_pod_that_breaks_restricted(
    kube_cluster: Any, namespace_factory: Any
) -> None:
    """Pod Security admission is really on: a namespace without any label gets
    the cluster's default level, `restricted`, and kube-system is exempt."""
    import pykube
    from pykube.exceptions import HTTPError

    client = kube_cluster.kube_client
    namespace = f"psa-{uuid.uuid4().hex[:5]}"
    namespace_factory(namespace)
    wait_for_service_account(client, namespace)

    def pod(name: str, ns: str, security: dict[str, Any]) -> Any:
        return pykube.Pod(
            client,
            {
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example.com/app:1",
                            "securityContext": security,
                        }
                    ]
                },
            },
        )

    restricted = {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    breaking = {"privileged": True}
    with pytest.raises(HTTPError) as refused:
        pod("privileged", namespace, breaking).create()
    assert refused.value.code == 403
    assert 'violates PodSecurity "restricted:latest"' in str(refused.value)
    assert "privileged" in str(refused.value)
    # The same API server admits a pod that meets the level ...
    allowed = pod("restricted", namespace, restricted)
    allowed.create()
    allowed.delete()
    # ... and kube-system, the one exemption, admits the breaking one.
    exempt = pod(f"psa-exempt-{uuid.uuid4().hex[:5]}", "kube-system", breaking)
    exempt.create()
    exempt.delete()
