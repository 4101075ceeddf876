"""Mandatory policies of the platform, as plain validator functions.

``infra/policy/__main__.py`` wraps them in a pulumi-policy ``PolicyPack`` (run with
``pulumi preview --policy-pack policy``); the unit tests call them directly on good
and bad resources and on every resource each stack registers under the mocks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from emporium.infra import model

Report = Callable[..., None]

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
HELM_CHART_V4 = "kubernetes:helm.sh/v4:Chart"
NAMESPACE = "kubernetes:core/v1:Namespace"
SERVICE = "kubernetes:core/v1:Service"
SECRET = "kubernetes:core/v1:Secret"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
AWS_LOAD_BALANCERS = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
WORKLOADS = {
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "kubernetes:core/v1:Pod": ("spec",),
}

EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
CREDENTIAL_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)
CREDENTIAL_WORDS = (
    "password",
    "passwd",
    "token",
    "apikey",
    "api_key",
    "secretkey",
    "secret_key",
    "database_url",
)
INTERNAL_LB_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
    "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
    "networking.gke.io/load-balancer-type": "Internal",
    "service.beta.kubernetes.io/azure-load-balancer-internal": "true",
}
EDGE_LABEL = "emporium.dev/edge"

# Where each chart takes its containers' resources; other charts need top-level ``resources``.
REQUIRED_RESOURCE_PATHS: dict[str, tuple[str, ...]] = {
    "cert-manager": ("resources", "webhook.resources", "cainjector.resources", "startupapicheck.resources"),
    "kube-prometheus-stack": (
        "prometheus.prometheusSpec.resources",
        "alertmanager.alertmanagerSpec.resources",
        "prometheusOperator.resources",
        "kube-state-metrics.resources",
    ),
    "loki": ("singleBinary.resources",),
    "tempo": ("tempo.resources",),
}
DEFAULT_PRIVILEGED_NAMESPACES = sorted(model.PRIVILEGED_NAMESPACES)
# Outputs the program exports as Pulumi secrets (checked by the unit tests).
DEFAULT_SECRET_OUTPUTS = ["databaseUrls", "kubeconfig"]


@dataclass(frozen=True)
class PolicyInfo:
    name: str
    description: str


PINNED_CHARTS = PolicyInfo("pinned-chart-versions", "Every Helm chart is installed at an exact version.")
NO_PUBLIC_LB = PolicyInfo(
    "no-public-load-balancer",
    "No public load balancer except the edge (a Service labelled emporium.dev/edge=true).",
)
RESOURCES_SET = PolicyInfo(
    "resources-set", "Every workload, operand and chart sets CPU and memory requests and limits."
)
RESTRICTED_NAMESPACES = PolicyInfo(
    "restricted-namespaces",
    "Every namespace enforces Pod Security restricted; listed exceptions still warn and audit.",
)
SECRETS_NOT_PLAIN = PolicyInfo(
    "secrets-never-plain",
    "Credentials live only in Kubernetes Secrets and secret stack outputs, never in plain values.",
)
ALL_POLICIES = (PINNED_CHARTS, NO_PUBLIC_LB, RESOURCES_SET, RESTRICTED_NAMESPACES, SECRETS_NOT_PLAIN)


def _get(value: Any, path: str | tuple[str, ...]) -> Any:
    parts = path.split(".") if isinstance(path, str) else path
    for part in parts:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _chart_name(props: Mapping[str, Any]) -> str:
    chart = str(props.get("chart") or "")
    return chart.rstrip("/").rsplit("/", 1)[-1]


# --- pinned-chart-versions ---------------------------------------------------------------


def validate_pinned_chart(resource_type: str, props: Mapping[str, Any], report: Report) -> None:
    if resource_type not in (HELM_RELEASE, HELM_CHART_V4):
        return
    version = props.get("version")
    chart = str(props.get("chart") or "")
    if not version:
        report(f"Helm chart {chart or '?'} has no version: pin an exact chart version.")
    elif not EXACT_VERSION.match(str(version)):
        report(f"Helm chart {chart} version {version!r} is not an exact version.")
    if chart.startswith("oci://") and ":" in chart.removeprefix("oci://").rsplit("/", 1)[-1]:
        report(f"Helm chart {chart}: give the version in 'version', not as an OCI tag.")


# --- no-public-load-balancer -------------------------------------------------------------


def _is_internal(annotations: Mapping[str, Any] | None) -> bool:
    annotations = annotations or {}
    return any(
        str(annotations.get(key, "")).lower() == value.lower()
        for key, value in INTERNAL_LB_ANNOTATIONS.items()
    )


def _load_balancers_in_values(value: Any, path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(value, Mapping):
        if str(value.get("type", "")) == "LoadBalancer":
            yield path or "<root>", value
        for key, item in value.items():
            yield from _load_balancers_in_values(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _load_balancers_in_values(item, f"{path}[{index}]")


def validate_no_public_load_balancer(resource_type: str, props: Mapping[str, Any], report: Report) -> None:
    if resource_type == SERVICE:
        if _get(props, "spec.type") != "LoadBalancer":
            return
        metadata = props.get("metadata") or {}
        if (metadata.get("labels") or {}).get(EDGE_LABEL) == "true":
            return
        if not _is_internal(metadata.get("annotations")):
            report(f"Service {metadata.get('name', '?')} is a public load balancer but not the edge.")
    elif resource_type in (HELM_RELEASE, HELM_CHART_V4):
        for path, service in _load_balancers_in_values(props.get("values") or {}):
            if not _is_internal(service.get("annotations")):
                report(f"Helm values of {_chart_name(props)} create a public load balancer at {path}.")
    elif resource_type in AWS_LOAD_BALANCERS and not props.get("internal", False):
        tags = props.get("tags") or {}
        if tags.get(EDGE_LABEL) != "true":
            report("AWS load balancer is internet-facing but not tagged as the edge.")


# --- resources-set -----------------------------------------------------------------------


def _missing_resources(resources: Any) -> list[str]:
    missing = []
    for section, keys in (("requests", ("cpu", "memory")), ("limits", ("memory",))):
        block = (resources or {}).get(section) if isinstance(resources, Mapping) else None
        for key in keys:
            if not isinstance(block, Mapping) or not block.get(key):
                missing.append(f"{section}.{key}")
    return missing


def validate_resources_set(resource_type: str, props: Mapping[str, Any], report: Report) -> None:
    if resource_type in (HELM_RELEASE, HELM_CHART_V4):
        chart = _chart_name(props)
        values = props.get("values") or {}
        for path in REQUIRED_RESOURCE_PATHS.get(chart, ("resources",)):
            missing = _missing_resources(_get(values, path))
            if missing:
                report(f"Helm values of {chart}: {path} lacks {', '.join(missing)}.")
        return
    if resource_type in WORKLOADS:
        pod = _get(props, WORKLOADS[resource_type]) or {}
        for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
            missing = _missing_resources(container.get("resources"))
            if missing:
                report(f"Container {container.get('name', '?')} lacks {', '.join(missing)}.")
        return
    spec = props.get("spec") or {}
    if resource_type.endswith("kafka.strimzi.io/v1:KafkaNodePool") or resource_type.endswith(
        "postgresql.cnpg.io/v1:Cluster"
    ):
        missing = _missing_resources(spec.get("resources"))
        if missing:
            report(f"{resource_type.rsplit(':', 1)[-1]} lacks {', '.join(missing)}.")
    elif resource_type.endswith("kafka.strimzi.io/v1:Kafka"):
        for operator in ("topicOperator", "userOperator"):
            block = _get(spec, ("entityOperator", operator))
            if block is not None and _missing_resources(block.get("resources")):
                report(f"Kafka entity operator {operator} lacks resources.")


# --- restricted-namespaces ---------------------------------------------------------------


def validate_restricted_namespace(
    resource_type: str,
    props: Mapping[str, Any],
    report: Report,
    privileged: list[str] | None = None,
) -> None:
    if resource_type != NAMESPACE:
        return
    metadata = props.get("metadata") or {}
    name = metadata.get("name", "?")
    labels = metadata.get("labels") or {}
    allowed = set(DEFAULT_PRIVILEGED_NAMESPACES if privileged is None else privileged)
    enforce = labels.get("pod-security.kubernetes.io/enforce")
    if enforce != "restricted" and not (name in allowed and enforce):
        report(f"Namespace {name} does not enforce Pod Security restricted (enforce={enforce!r}).")
    for mode in ("warn", "audit"):
        if labels.get(f"pod-security.kubernetes.io/{mode}") != "restricted":
            report(f"Namespace {name} does not {mode} at Pod Security restricted.")


# --- secrets-never-plain -----------------------------------------------------------------


def _is_credential_key(key: str) -> bool:
    """``KAFKA_SASL_PASSWORD``, ``adminPassword``, ``token``; not ``existingSecret``."""
    for word in CREDENTIAL_WORDS:
        if key.lower().endswith(word):
            start = len(key) - len(word)
            if start == 0 or key[start - 1] in "_.-" or key[start].isupper():
                return True
    return False


def _credentials_in(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(item, str) and item and _is_credential_key(str(key)):
                yield where
            else:
                yield from _credentials_in(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _credentials_in(item, f"{path}[{index}]")
    elif isinstance(value, str) and CREDENTIAL_URL.search(value):
        yield path or "<value>"


def validate_secrets_not_plain(resource_type: str, props: Mapping[str, Any], report: Report) -> None:
    if resource_type == SECRET or resource_type.startswith("random:"):
        return
    if resource_type.startswith("pulumi:providers:"):
        return  # provider configuration (a kubeconfig) is stored encrypted by the engine
    for where in _credentials_in(dict(props)):
        report(f"A credential is set in plain text at {where}; put it in a Kubernetes Secret.")


def validate_stack_outputs(
    outputs: Mapping[str, Any], report: Report, secret_outputs: list[str] | None = None
) -> None:
    """Credentials may only leave the stack through the outputs listed as secret."""
    allowed = set(DEFAULT_SECRET_OUTPUTS if secret_outputs is None else secret_outputs)
    for name, value in outputs.items():
        if name in allowed:
            continue
        for where in _credentials_in({name: value}):
            report(f"Stack output {where} carries a credential; export it as a secret or not at all.")


RESOURCE_VALIDATORS: dict[str, Callable[[str, Mapping[str, Any], Report], None]] = {
    PINNED_CHARTS.name: validate_pinned_chart,
    NO_PUBLIC_LB.name: validate_no_public_load_balancer,
    RESOURCES_SET.name: validate_resources_set,
    RESTRICTED_NAMESPACES.name: validate_restricted_namespace,
    SECRETS_NOT_PLAIN.name: validate_secrets_not_plain,
}


def violations(resource_type: str, props: Mapping[str, Any]) -> dict[str, list[str]]:
    """Run every resource policy on one resource; used by the tests."""
    found: dict[str, list[str]] = {}
    for name, validator in RESOURCE_VALIDATORS.items():
        messages: list[str] = []
        validator(resource_type, props, lambda message, urn=None, m=messages: m.append(message))
        if messages:
            found[name] = messages
    return found
