"""Shared rendering and facts for the chart tests (loaded by conftest.py as `chartlib`).

Every scenario (the three environments and each ci/*-values.yaml) is rendered
once per Helm major and session with the real helm binaries that
`make setup` builds; the tests then read the parsed objects.
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from emporium.contracts import manifest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "emporium"
BIN = ROOT / ".cache" / "bin"
HELM_MAJORS = ("helm3", "helm4")
ENVIRONMENTS = ("dev", "staging", "prod")
CI_SCENARIOS = tuple(sorted(p.stem for p in (CHART / "ci").glob("*-values.yaml")))
# The two newest Kubernetes minors the objects are validated against.
KUBE_VERSIONS = ("1.36.0", "1.37.0")
RENDER_KUBE_VERSION = KUBE_VERSIONS[-1]
# The optional kinds render only where the cluster serves their APIs.
OPTIONAL_APIS = (
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
    "kafka.strimzi.io/v1/KafkaTopic",
)

# The service graph, data ownership and topics of the system manifest (docs/manifest.md).
SYSTEM = manifest.system()
SERVICES = SYSTEM.names
DATA_SERVICES = SYSTEM.data_services
KAFKA_SERVICES = SYSTEM.kafka_services
HTTP_SERVICES = tuple(s.name for s in SYSTEM.services.values() if s.serves_http)
CALLS = {s.name: set(s.calls) for s in SYSTEM.services.values()}
SECRET_KEYS = ("DATABASE_URL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD")


def helm(major: str) -> Path:
    path = BIN / major
    if not path.exists():
        pytest.fail(f"{path} is not installed: run make setup")
    return path


def run_helm(major: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(ROOT / ".cache" / "helm"),
        "HELM_CONFIG_HOME": str(ROOT / ".cache" / "helm-config"),
        "HELM_DATA_HOME": str(ROOT / ".cache" / "helm-data"),
    }
    result = subprocess.run(
        [str(helm(major)), *args], capture_output=True, text=True, env=env, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


@dataclass(frozen=True)
class Scenario:
    name: str
    namespace: str
    values_files: tuple[Path, ...]

    @property
    def is_environment(self) -> bool:
        return self.name in ENVIRONMENTS


def scenario(name: str) -> Scenario:
    if name in ENVIRONMENTS:
        return Scenario(name, f"emporium-{name}", (CHART / f"values-{name}.yaml",))
    return Scenario(name, "emporium-dev", (CHART / "ci" / f"{name}.yaml",))


ALL_SCENARIOS = ENVIRONMENTS + CI_SCENARIOS


def template_args(sc: Scenario, *extra: str, api_versions: bool = True) -> list[str]:
    args = [
        "template",
        "emporium",
        str(CHART),
        "--namespace",
        sc.namespace,
        "--kube-version",
        RENDER_KUBE_VERSION,
    ]
    for values in sc.values_files:
        args += ["-f", str(values)]
    if api_versions:
        for api in OPTIONAL_APIS:
            args += ["--api-versions", api]
    return args + list(extra)


@functools.cache
def render_text(
    major: str, name: str, extra: tuple[str, ...] = (), api_versions: bool = True
) -> str:
    return run_helm(major, *template_args(scenario(name), *extra, api_versions=api_versions)).stdout


def parse(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@functools.cache
def _render(major: str, name: str, extra: tuple[str, ...], api_versions: bool) -> tuple[Any, ...]:
    return tuple(parse(render_text(major, name, extra, api_versions)))


def render(
    name: str, *extra: str, major: str = "helm3", api_versions: bool = True
) -> list[dict[str, Any]]:
    """The objects of one scenario (a fresh copy: tests may change them)."""
    import copy

    return copy.deepcopy(list(_render(major, name, tuple(extra), api_versions)))


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def service_of(obj: dict[str, Any]) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/name"]


def is_hook(obj: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (obj["metadata"].get("annotations") or {})
