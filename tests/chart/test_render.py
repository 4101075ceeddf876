"""helm lint --strict and helm template, with Helm 3 and Helm 4, of every
environment and every ci/*-values.yaml scenario."""

from __future__ import annotations

import chartlib
import pytest
from chartlib import CHART, ENVIRONMENTS, HELM_MAJORS, RENDER_KUBE_VERSION

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("major", HELM_MAJORS)
@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_lint_strict(major: str, env: str) -> None:
    result = chartlib.run_helm(
        major,
        "lint",
        "--strict",
        str(CHART),
        "-f",
        str(CHART / f"values-{env}.yaml"),
        "--namespace",
        f"emporium-{env}",
        "--kube-version",
        RENDER_KUBE_VERSION,
    )
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("major", HELM_MAJORS)
@pytest.mark.parametrize("name", chartlib.ALL_SCENARIOS)
def test_template_renders(major: str, name: str) -> None:
    objects = chartlib.render(name, major=major)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ServiceAccount", "ConfigMap"} <= kinds


@pytest.mark.parametrize("name", chartlib.ALL_SCENARIOS)
def test_helm3_and_helm4_render_the_same_objects(name: str) -> None:
    def key(o: dict) -> tuple[str, str]:
        return o["kind"], o["metadata"]["name"]

    helm3 = sorted(chartlib.render(name, major="helm3"), key=key)
    helm4 = sorted(chartlib.render(name, major="helm4"), key=key)
    assert [key(o) for o in helm3] == [key(o) for o in helm4]
    assert helm3 == helm4


def test_object_counts_per_environment(record_property: pytest.RecordProperty) -> None:
    """The figures the release notes quote; also fails if an environment loses a kind."""
    counts = {}
    for env in ENVIRONMENTS:
        objects = chartlib.render(env, api_versions=False)
        kinds: dict[str, int] = {}
        for o in objects:
            kinds[o["kind"]] = kinds.get(o["kind"], 0) + 1
        counts[env] = kinds
        record_property(f"objects_{env}", len(objects))
        print(f"{env}: {len(objects)} objects {dict(sorted(kinds.items()))}")
    services, data_services = len(chartlib.SERVICES), len(chartlib.DATA_SERVICES)
    for env in ENVIRONMENTS:
        assert counts[env]["Deployment"] == services
        # The default deny, one per service, one per migration Job.
        assert counts[env]["NetworkPolicy"] == 1 + services + data_services
        assert counts[env]["Job"] == data_services
    assert "HorizontalPodAutoscaler" not in counts["dev"]
    assert counts["staging"]["HorizontalPodAutoscaler"] == services
    assert counts["prod"]["HorizontalPodAutoscaler"] == services


def test_readme_values_table_is_generated_from_values_yaml(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """README.md is what helm-docs writes from the `# --` comments; a value
    added without documentation, or a stale table, fails here."""
    import shutil
    import subprocess

    helm_docs = chartlib.BIN / "helm-docs"
    if not helm_docs.exists():
        pytest.fail(f"{helm_docs} is not installed: run make setup")
    copy = tmp_path / "emporium"
    shutil.copytree(CHART, copy)
    subprocess.run(
        [
            str(helm_docs),
            "--chart-search-root",
            str(copy),
            "--template-files",
            "README.md.gotmpl",
            "--sort-values-order",
            "file",
        ],
        check=True,
        capture_output=True,
        timeout=60,
        cwd=copy,
    )
    generated = (copy / "README.md").read_text()
    assert generated == (CHART / "README.md").read_text(), (
        "charts/emporium/README.md is stale: run scripts/test-chart.sh --write-readme"
    )
    undocumented = [
        line for line in generated.splitlines() if line.startswith("| ") and line.endswith("|  |")
    ]
    assert not undocumented, f"values without a '# --' comment: {undocumented}"
