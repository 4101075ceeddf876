"""Every rendered object validated, strictly, against the Kubernetes OpenAPI
schemas of the two newest minors (bundled by kubernetes-validate), and the
CRD kinds against their CRD schemas (tests/chart/crds)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import chartlib
import jsonschema
import kubernetes_validate
import pytest
from chartlib import KUBE_VERSIONS

pytestmark = pytest.mark.unit

CRDS = Path(__file__).with_name("crds")
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_ServiceMonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_v1_PrometheusRule.json",
    ("kafka.strimzi.io/v1", "KafkaTopic"): "kafka.strimzi.io_v1_KafkaTopic.json",
}


@functools.cache
def crd_validator(file: str) -> jsonschema.Draft7Validator:
    schema = json.loads((CRDS / file).read_text())
    # Structure only: the published patterns are Go (RE2) syntax, and one of
    # them, "^(?i)(abort|warn)?$", is not a valid Python regex.
    meta = jsonschema.Draft7Validator(jsonschema.Draft7Validator.META_SCHEMA)
    assert not list(meta.iter_errors(schema)), f"{file} is not a JSON schema"
    return jsonschema.Draft7Validator(schema)


def validate(obj: dict[str, Any], kube_version: str) -> list[str]:
    crd = CRD_KINDS.get((obj["apiVersion"], obj["kind"]))
    if crd:
        return [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in crd_validator(crd).iter_errors(obj)
        ]
    try:
        kubernetes_validate.validate(obj, kube_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'/'.join(map(str, error.path))}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"no schema for {obj['apiVersion']} {obj['kind']}: {error}"]
    return []


def test_kubernetes_validate_knows_the_pinned_minors() -> None:
    bundled = set(
        kubernetes_validate.utils.all_versions()
        if hasattr(kubernetes_validate.utils, "all_versions")
        else []
    )
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    for version in KUBE_VERSIONS:
        assert (root / f"v{version}-local-strict").is_dir() or version in bundled


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_object_is_valid(any_scenario: str, kube_version: str) -> None:
    errors = {}
    for obj in chartlib.render(any_scenario):
        problems = validate(obj, kube_version)
        if problems:
            errors[f"{obj['kind']}/{obj['metadata']['name']}"] = problems
    assert not errors, json.dumps(errors, indent=2)


def test_crd_kinds_are_rendered_and_checked() -> None:
    """The scenario with every optional kind really produces them, so the CRD
    validation above is not vacuous."""
    kinds = {(o["apiVersion"], o["kind"]) for o in chartlib.render("monitoring-and-topics-values")}
    assert set(CRD_KINDS) <= kinds


def test_crd_validation_rejects_a_wrong_object() -> None:
    topic = next(
        o for o in chartlib.render("monitoring-and-topics-values") if o["kind"] == "KafkaTopic"
    )
    topic["spec"]["partitions"] = 0
    topic["spec"]["partitionz"] = 3
    problems = validate(topic, KUBE_VERSIONS[-1])
    assert any("partitionz" in p for p in problems)
    assert any("partitions" in p for p in problems)


def test_strict_validation_rejects_an_unknown_field() -> None:
    deployment = next(o for o in chartlib.render("dev") if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbez"] = {}
    assert validate(deployment, KUBE_VERSIONS[-1])
