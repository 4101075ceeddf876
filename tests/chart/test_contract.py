"""Contract assertions on the rendered chart: probes, security, secrets,
network edges, sizing, hooks, and the names of docs/configuration.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import chartlib
import pytest
import yaml
from chartlib import (
    CALLS,
    CHART,
    DATA_SERVICES,
    ENVIRONMENTS,
    HTTP_SERVICES,
    ROOT,
    SECRET_KEYS,
    SERVICES,
    SYSTEM,
    by_kind,
    is_hook,
    service_of,
)

pytestmark = pytest.mark.unit


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in ("Deployment", "Job")
    ]


def quantity(value: str | int | float) -> float:
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


# --- probes and ports ------------------------------------------------------


def test_every_deployment_probes_the_right_paths_and_ports(any_scenario: str) -> None:
    objects = chartlib.render(any_scenario)
    deployments = by_kind(objects, "Deployment")
    assert deployments
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["grpc"] == 50051, name
        assert ports["admin"] == 8081, name
        for probe, path in (
            ("startupProbe", "/livez"),
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
        ):
            get = container[probe]["httpGet"]
            assert (get["path"], get["port"]) == (path, "admin"), f"{name} {probe}"
        service = by_kind(objects, "Service")[name]
        service_ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
        assert service_ports["grpc"] == (50051, "grpc")
        assert service_ports["admin"] == (8081, "admin")
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        config = by_kind(objects, "ConfigMap")[name]["data"]
        assert (config["GRPC_PORT"], config["ADMIN_PORT"]) == ("50051", "8081")
        if "http" in ports:
            assert config["HTTP_PORT"] == str(ports["http"]) == "8080"
            assert service_ports["http"] == (8080, "http")


def test_only_the_services_with_an_http_port_serve_http() -> None:
    for name, deployment in by_kind(chartlib.render("prod"), "Deployment").items():
        ports = {
            p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        assert ("http" in ports) == (service_of(deployment) in HTTP_SERVICES), name


def test_grace_period_outlasts_the_drain(any_scenario: str) -> None:
    objects = chartlib.render(any_scenario)
    for name, deployment in by_kind(objects, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        drain = int(by_kind(objects, "ConfigMap")[name]["data"]["SHUTDOWN_GRACE_SECONDS"])
        pause = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pod["terminationGracePeriodSeconds"] > drain + pause, name


# --- security --------------------------------------------------------------


def test_nothing_runs_as_root(any_scenario: str) -> None:
    for name, pod in pod_specs(chartlib.render(any_scenario)):
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert context["runAsUser"] != 0, name
        assert context["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(host_namespace), name
        for container in pod["containers"] + pod.get("initContainers", []):
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, name
            assert security.get("runAsUser", 1) != 0, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["privileged"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in security["capabilities"], name
            assert container["resources"]["requests"], name
            assert container["resources"]["limits"], name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: /tmp must be scratch space"
            assert all(v.keys() & {"emptyDir", "secret", "configMap"} for v in volumes.values())


def test_service_accounts_mount_no_token() -> None:
    objects = chartlib.render("prod")
    accounts = by_kind(objects, "ServiceAccount")
    assert set(accounts) == {f"emporium-{s}" for s in SERVICES}
    assert all(a["automountServiceAccountToken"] is False for a in accounts.values())
    for name, deployment in by_kind(objects, "Deployment").items():
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == name


def test_the_chart_creates_no_namespace_and_stays_in_its_own(any_scenario: str) -> None:
    sc = chartlib.scenario(any_scenario)
    for obj in chartlib.render(any_scenario):
        assert obj["kind"] != "Namespace"
        expected = (
            "kafka"
            if obj["kind"] == "KafkaTopic" and any_scenario == "monitoring-and-topics-values"
            else sc.namespace
        )
        assert obj["metadata"].get("namespace") == expected, (
            f"{obj['kind']}/{obj['metadata']['name']}"
        )


# --- secrets ---------------------------------------------------------------

CREDENTIAL_IN_URL = re.compile(r"://[^/@\s:]+:[^/@\s]+@")


def test_no_secret_value_in_a_configmap(any_scenario: str) -> None:
    for name, config in by_kind(chartlib.render(any_scenario), "ConfigMap").items():
        for key, value in (config.get("data") or {}).items():
            assert key not in SECRET_KEYS, f"{name}: {key} belongs in a Secret"
            assert not re.search(r"PASSWORD|SECRET|TOKEN", key), f"{name}: {key}"
            assert not CREDENTIAL_IN_URL.search(str(value)), f"{name}: {key} holds a credential"


def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [item for key, value in node.items() for item in _walk(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [item for i, value in enumerate(node) for item in _walk(value, f"{path}[{i}]")]
    return [(path, node)]


VALUES_FILES = sorted([*CHART.glob("values*.yaml"), *CHART.glob("ci/*.yaml")])


@pytest.mark.parametrize("path", VALUES_FILES, ids=lambda p: p.name)
def test_no_secret_value_in_a_values_file(path: Path) -> None:
    for key_path, value in _walk(yaml.safe_load(path.read_text()) or {}):
        if not isinstance(value, str) or not value:
            continue
        key = key_path.rsplit(".", 1)[-1]
        assert not CREDENTIAL_IN_URL.search(value), f"{path.name}{key_path} holds a credential"
        assert not re.search(
            r"(?i)password|passwd|token|apikey|api_key|KAFKA_SASL_USERNAME", key
        ), f"{path.name}{key_path}: credentials are passed at install time, never in a values file"
        assert not value.startswith("-----BEGIN"), f"{path.name}{key_path} holds key material"


def test_secrets_come_from_the_infrastructure_by_default() -> None:
    objects = chartlib.render("prod")
    assert not by_kind(objects, "Secret")
    for name, deployment in by_kind(objects, "Deployment").items():
        env_from = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        secrets = [s["secretRef"]["name"] for s in env_from if "secretRef" in s]
        config_maps = [c["configMapRef"]["name"] for c in env_from if "configMapRef" in c]
        service = service_of(deployment)
        assert secrets == ([f"emporium-{service}"] if service in DATA_SERVICES else []), name
        # The platform ConfigMap first, then the service's own: the later wins.
        assert config_maps == ["emporium-platform", name]
        assert not deployment["spec"]["template"]["spec"]["containers"][0].get("env")


def test_chart_managed_secrets_are_hooks_that_roll_the_pods() -> None:
    objects = chartlib.render("chart-managed-secret-values")
    secrets = by_kind(objects, "Secret")
    assert set(secrets) == {f"emporium-{s}" for s in DATA_SERVICES}
    for secret in secrets.values():
        assert secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        weight = int(secret["metadata"]["annotations"]["helm.sh/hook-weight"])
        assert weight < 0
    changed = chartlib.render(
        "chart-managed-secret-values",
        "--set",
        "services.orders.secret.stringData.DATABASE_URL=postgresql://orders@other:5432/orders",
    )
    before = by_kind(objects, "Deployment")["emporium-orders"]["spec"]["template"]["metadata"][
        "annotations"
    ]
    after = by_kind(changed, "Deployment")["emporium-orders"]["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert before["checksum/secret"] != after["checksum/secret"]


def test_a_config_change_rolls_the_pods() -> None:
    base = by_kind(chartlib.render("dev"), "Deployment")
    changed = by_kind(
        chartlib.render("dev", "--set", "services.gateway.env.CACHE_TTL_SECONDS=9"), "Deployment"
    )
    checksum = lambda d: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]  # noqa: E731
    assert checksum(base["emporium-gateway"]) != checksum(changed["emporium-gateway"])
    assert checksum(base["emporium-catalog"]) == checksum(changed["emporium-catalog"])


# --- the configuration contract --------------------------------------------


def contract_variables() -> set[str]:
    """Every variable name in the tables of docs/configuration.md."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    names = set(re.findall(r"^\| `([A-Z<][A-Z0-9_<>]*)` \|", text, flags=re.MULTILINE))
    return names


def test_configmaps_use_only_contract_names(environment: str) -> None:
    known = contract_variables()
    assert {"DATABASE_URL", "CATALOG_ADDR", "SHUTDOWN_GRACE_SECONDS"} <= known
    per_service_suffixes = tuple(n.removeprefix("<NAME>") for n in known if n.startswith("<NAME>"))
    objects = chartlib.render(environment)
    services = by_kind(objects, "Service")
    configs = {
        n: c
        for n, c in by_kind(objects, "ConfigMap").items()
        if c["metadata"]["labels"].get("app.kubernetes.io/component") == "server"
    }
    assert set(configs) == {f"emporium-{s}" for s in SERVICES}
    assert per_service_suffixes
    for name, config in configs.items():
        for key, value in config["data"].items():
            assert key in known or key.endswith(per_service_suffixes), (
                f"{name}: {key} is not in docs/configuration.md"
            )
            if key.endswith("_ADDR"):
                host, port = value.rsplit(":", 1)
                assert host in services, f"{name}: {key}={value}"
                assert port == "50051", f"{name}: {key}={value}"
        assert config["data"]["ENVIRONMENT"] == environment
        assert (
            f"deployment.environment.name={environment}"
            in config["data"]["OTEL_RESOURCE_ATTRIBUTES"]
        )
        assert (
            f"k8s.namespace.name=emporium-{environment}"
            in config["data"]["OTEL_RESOURCE_ATTRIBUTES"]
        )


def test_each_service_runs_its_own_command() -> None:
    for deployment in by_kind(chartlib.render("prod"), "Deployment").values():
        assert deployment["spec"]["template"]["spec"]["containers"][0]["command"] == [
            f"emporium-{service_of(deployment)}"
        ]
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(
            f"/{service_of(deployment)}:0.1.0"
        )


def test_migrations_run_as_hooks_for_the_services_that_own_data(environment: str) -> None:
    objects = chartlib.render(environment)
    jobs = by_kind(objects, "Job")
    assert {service_of(j) for j in jobs.values()} == set(DATA_SERVICES)
    for job in jobs.values():
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == [f"emporium-{service_of(job)}", "migrate"]
        assert pod["restartPolicy"] == "Never"
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["DATABASE_MIGRATE_ON_START"] == "false"
        assert {"secretRef": {"name": f"emporium-{service_of(job)}"}} in container["envFrom"]
        # The Job's pods are not the Service's: different selector labels.
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == "migration"
    # The Job's own NetworkPolicy is a hook created before it.
    hook_policies = [p for p in by_kind(objects, "NetworkPolicy").values() if is_hook(p)]
    assert len(hook_policies) == len(DATA_SERVICES)
    for policy in hook_policies:
        assert int(policy["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0


# --- network policy --------------------------------------------------------


def _selected_service(peer: dict[str, Any]) -> str | None:
    labels = (peer.get("podSelector") or {}).get("matchLabels") or {}
    if "namespaceSelector" in peer or "ipBlock" in peer:
        return None
    return labels.get("app.kubernetes.io/name")


def test_network_policies_allow_exactly_the_service_graph(environment: str) -> None:
    objects = chartlib.render(environment)
    policies = {
        service_of(p): p
        for p in by_kind(objects, "NetworkPolicy").values()
        if not is_hook(p) and "app.kubernetes.io/name" in p["metadata"]["labels"]
    }
    assert set(policies) == set(SERVICES)

    deny = by_kind(objects, "NetworkPolicy")["emporium-default-deny"]
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"]
    assert "egress" not in deny["spec"]

    callers: dict[str, set[str]] = {s: set() for s in SERVICES}
    for caller, callees in CALLS.items():
        for callee in callees:
            callers[callee].add(caller)

    data_namespace = f"emporium-{environment}-data"
    for service, policy in policies.items():
        spec = policy["spec"]
        data_peers = [
            peer
            for rule in spec["egress"]
            for peer in rule["to"]
            if rule["ports"][0]["port"] in (5432, 9093)
        ]
        assert all(
            p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == data_namespace
            for p in data_peers
        ), f"{service}: data egress leaves {data_namespace}"
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == service
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        grpc_in = {
            _selected_service(peer)
            for rule in spec["ingress"]
            for peer in rule.get("from", [])
            if [p["port"] for p in rule["ports"]] == [50051]
        }
        grpc_out = {
            _selected_service(peer)
            for rule in spec["egress"]
            for peer in rule.get("to", [])
            if [p["port"] for p in rule["ports"]] == [50051]
        }
        assert grpc_in == callers[service], f"{service}: gRPC callers"
        assert grpc_out == CALLS[service], f"{service}: gRPC callees"

        egress_ports = {p["port"] for rule in spec["egress"] for p in rule["ports"]}
        ingress_ports = {p["port"] for rule in spec["ingress"] for p in rule["ports"]}
        assert 53 in egress_ports, f"{service}: DNS"
        assert (5432 in egress_ports) == (service in DATA_SERVICES), f"{service}: PostgreSQL"
        assert (9093 in egress_ports) == (service in DATA_SERVICES), f"{service}: Kafka (TLS)"
        assert 9092 not in egress_ports, f"{service}: egress to a plaintext Kafka port"
        assert 8081 in ingress_ports, f"{service}: metrics scraping"
        assert (8080 in ingress_ports) == (service in HTTP_SERVICES), f"{service}: edge HTTP"
        allowed = {53, 50051, 5432, 9093, 4317}
        assert egress_ports <= allowed, f"{service}: unexpected egress {egress_ports - allowed}"
        # Every rule names its peers: an empty 'to' or 'from' would allow everyone.
        for rule in spec["egress"]:
            assert rule["to"], service
        for rule in spec["ingress"]:
            assert rule["from"], service


# --- sizing and availability -----------------------------------------------


def test_dev_fits_a_small_cluster() -> None:
    objects = chartlib.render("dev")
    cpu = memory = 0.0
    for deployment in by_kind(objects, "Deployment").values():
        limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        replicas = deployment["spec"]["replicas"]
        cpu += replicas * quantity(limits["cpu"])
        memory += replicas * quantity(limits["memory"])
    # The hooks run one at a time before the Deployments change.
    job_limits = max(
        quantity(j["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"])
        for j in by_kind(objects, "Job").values()
    )
    print(
        f"dev limits: {cpu:.2f} CPU, {memory / 2**30:.2f} GiB"
        f" (+{job_limits / 2**20:.0f} MiB for a migration)"
    )
    assert cpu <= 2.0
    assert memory + job_limits <= 4 * 2**30
    assert not by_kind(objects, "HorizontalPodAutoscaler")


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_highly_available_environments(env: str) -> None:
    objects = chartlib.render(env)
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    pdbs = by_kind(objects, "PodDisruptionBudget")
    for name, deployment in by_kind(objects, "Deployment").items():
        assert "replicas" not in deployment["spec"], f"{name}: the HPA owns the replica count"
        hpa = hpas[name]
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert hpa["spec"]["minReplicas"] >= 2
        assert (
            pdbs[name]["spec"]["selector"]["matchLabels"]
            == deployment["spec"]["selector"]["matchLabels"]
        )
        assert pdbs[name]["spec"]["maxUnavailable"] == 1
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_prod_spreads_across_zones_and_nodes() -> None:
    objects = chartlib.render("prod")
    for name, deployment in by_kind(objects, "Deployment").items():
        spread = {
            c["topologyKey"]: c
            for c in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        }
        assert spread["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "DoNotSchedule", name
        assert "kubernetes.io/hostname" in spread, name
        for constraint in spread.values():
            assert (
                constraint["labelSelector"]["matchLabels"]
                == deployment["spec"]["selector"]["matchLabels"]
            )
    assert (
        by_kind(objects, "HorizontalPodAutoscaler")["emporium-gateway"]["spec"]["minReplicas"] >= 3
    )


def test_replicas_are_set_when_no_hpa_owns_them() -> None:
    deployments = by_kind(
        chartlib.render("dev", "--set", "services.orders.autoscaling.enabled=true"), "Deployment"
    )
    assert "replicas" not in deployments["emporium-orders"]["spec"]
    assert deployments["emporium-catalog"]["spec"]["replicas"] == 1


# --- optional kinds --------------------------------------------------------


def test_optional_kinds_need_the_api_in_the_cluster() -> None:
    with_apis = {o["kind"] for o in chartlib.render("monitoring-and-topics-values")}
    without = {
        o["kind"] for o in chartlib.render("monitoring-and-topics-values", api_versions=False)
    }
    assert {"ServiceMonitor", "PrometheusRule", "KafkaTopic"} <= with_apis
    assert not {"ServiceMonitor", "PrometheusRule", "KafkaTopic"} & without
    assert not {"ServiceMonitor", "PrometheusRule", "KafkaTopic"} & {
        o["kind"] for o in chartlib.render("dev")
    }


def test_topics_as_code_cover_every_topic_and_its_dead_letter_twin() -> None:
    topics = by_kind(chartlib.render("monitoring-and-topics-values"), "KafkaTopic")
    expected = {
        name: partitions
        for t in SYSTEM.topics.values()
        for name, partitions in ((t.name, t.partitions), (t.dlq, t.dlq_partitions))
    }
    assert set(topics) == set(expected)
    for name, topic in topics.items():
        assert topic["spec"]["topicName"] == name
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "emporium"
        assert topic["spec"]["partitions"] == expected[name]


def test_service_monitors_scrape_the_admin_port() -> None:
    objects = chartlib.render("monitoring-and-topics-values")
    monitors = by_kind(objects, "ServiceMonitor")
    assert set(monitors) == {f"emporium-{s}" for s in SERVICES}
    services = by_kind(objects, "Service")
    for name, monitor in monitors.items():
        assert monitor["spec"]["endpoints"] == [
            {"port": "admin", "path": "/metrics", "interval": "30s", "scheme": "http"}
        ]
        assert (
            monitor["spec"]["selector"]["matchLabels"].items()
            <= services[name]["metadata"]["labels"].items()
        )


def exposed_metrics() -> set[str]:
    """Names of the Prometheus metrics the services' code defines."""
    names: set[str] = set()
    for source in (ROOT / "services").glob("*/src/emporium/**/*.py"):
        names |= set(re.findall(r'"(emporium_[a-z_]+)"', source.read_text()))
    assert "emporium_ready" in names
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression; histogram series map to their metric."""
    return {
        re.sub(r"_(bucket|count|sum)$", "", m) if not m.endswith("_total") else m
        for m in re.findall(r"\b(emporium_[a-z_]+)\{", expr)
    }


def test_alerts_use_metrics_the_services_expose() -> None:
    rule = by_kind(chartlib.render("monitoring-and-topics-values"), "PrometheusRule")["emporium"]
    exposed = exposed_metrics()
    for group in rule["spec"]["groups"]:
        for alert in group["rules"]:
            used = metric_names(alert["expr"])
            assert used, alert["alert"]
            assert used <= exposed, f"{alert['alert']}: {used - exposed} not defined by any service"


def test_dashboards_use_metrics_the_services_expose() -> None:
    config = by_kind(chartlib.render("monitoring-and-topics-values"), "ConfigMap")[
        "emporium-dashboards"
    ]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    exposed = exposed_metrics()
    used = set()
    for text in config["data"].values():
        used |= metric_names(text)
    assert used
    assert used <= exposed, used - exposed


def test_ingress_routes_to_the_gateway_http_port() -> None:
    objects = chartlib.render("ingress-and-extras-values")
    (ingress,) = by_kind(objects, "Ingress").values()
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "shop-gateway", "port": {"name": "http"}}
    assert "shop-gateway" in by_kind(objects, "Service")
    assert ingress["spec"]["tls"][0]["secretName"] == "shop-tls"


# --- values schema ---------------------------------------------------------


@pytest.mark.parametrize("major", chartlib.HELM_MAJORS)
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("defaults.replicaz=1", "additional properties 'replicaz' not allowed"),
        ("services.gateway.replicas=-1", "minimum: got -1, want 0"),
        ("image.tag=v1:bad", "'v1:bad' does not match pattern"),
        ("services.catalog.replicas=two", "got string, want integer"),
        ("environment=qa", "value must be one of 'dev', 'staging', 'prod'"),
        ("services.gateway.env.DATABASE_URL=x", "invalid propertyName 'DATABASE_URL'"),
        ("defaults.topologySpread.zones=Always", "value must be one of"),
    ],
)
def test_a_wrong_value_fails_with_the_schema_message(
    major: str, setting: str, message: str
) -> None:
    args = chartlib.template_args(chartlib.scenario("dev"))
    flag = "--set-string" if setting.endswith("=two") else "--set"
    result = chartlib.run_helm(major, *args, flag, setting, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


def test_a_call_to_an_unknown_service_fails_clearly() -> None:
    args = chartlib.template_args(chartlib.scenario("dev"))
    result = chartlib.run_helm(
        "helm3", *args, "--set", "services.orders.calls={catalog,payments}", check=False
    )
    assert result.returncode != 0
    assert 'services.orders.calls: "payments" is not an entry of services' in result.stderr


# --- NOTES -----------------------------------------------------------------


def test_notes_tell_how_to_reach_the_storefront_and_check_health() -> None:
    # Helm 4 renders NOTES in a client-only dry run; Helm 3.22's install
    # insists on reaching an API server even then (the cluster tests cover it).
    result = chartlib.run_helm(
        "helm4",
        "install",
        "emporium",
        str(CHART),
        "--dry-run=client",
        "--namespace",
        "emporium-dev",
        "-f",
        str(CHART / "values-dev.yaml"),
    )
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "port-forward service/emporium-gateway 8080:8080" in notes
    assert "/healthz" in notes
    assert "/readyz" in notes
    assert "emporium-platform" in notes


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_environment_fits_the_quota_the_infrastructure_sets(env: str) -> None:
    """At the most replicas the HPAs may reach, plus one surge pod per
    Deployment during a rollout and one migration Job, the release stays
    within the ResourceQuota of infra/Pulumi.<env>.yaml."""
    stack = ROOT / "infra" / f"Pulumi.{env}.yaml"
    if not stack.exists():
        pytest.skip(f"{stack.relative_to(ROOT)} is not in this checkout")
    quota = yaml.safe_load(stack.read_text())["config"]["emporium:app"]
    objects = chartlib.render(env)
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    totals = {"requests.cpu": 0.0, "requests.memory": 0.0, "limits.cpu": 0.0, "limits.memory": 0.0}
    pods = 0
    for name, deployment in by_kind(objects, "Deployment").items():
        replicas = (
            hpas[name]["spec"]["maxReplicas"] if name in hpas else deployment["spec"]["replicas"]
        )
        count = replicas + 1  # maxSurge 1
        pods += count
        resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                totals[f"{kind}.{resource}"] += count * quantity(resources[kind][resource])
    job = max(
        by_kind(objects, "Job").values(),
        key=lambda j: quantity(
            j["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"]
        ),
    )
    job_resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            totals[f"{kind}.{resource}"] += quantity(job_resources[kind][resource])
    pods += 1
    limits = {
        "requests.cpu": quota["requestsCpu"],
        "requests.memory": quota["requestsMemory"],
        "limits.cpu": quota["limitsCpu"],
        "limits.memory": quota["limitsMemory"],
    }
    print(
        f"{env} at most: {pods} pods, "
        + ", ".join(
            f"{k} {v:.2f}" if "cpu" in k else f"{k} {v / 2**30:.2f}Gi" for k, v in totals.items()
        )
    )
    for key, used in totals.items():
        assert used <= quantity(limits[key]), f"{env}: {key} {used} exceeds the quota {limits[key]}"
    assert pods <= int(quota["pods"])
