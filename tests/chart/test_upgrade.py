"""Selector labels never change between chart versions: Kubernetes refuses
to change a Deployment's selector, so such a change would break
`helm upgrade` for every installed release.

Two checks: the current selectors against the golden file recorded for the
chart's major version, and against the previous chart version found in git
history (rendered with its own helm template)."""

from __future__ import annotations

import os
import re
import subprocess
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

import chartlib
import pytest
import yaml
from chartlib import CHART, ROOT

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).with_name("golden") / "selectors.yaml"
SELECTOR_KINDS = ("Deployment", "Service", "PodDisruptionBudget")


def selectors(objects: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    found = {}
    for obj in objects:
        if obj["kind"] == "Deployment" or obj["kind"] == "PodDisruptionBudget":
            found[f"{obj['kind']}/{obj['metadata']['name']}"] = obj["spec"]["selector"][
                "matchLabels"
            ]
        elif obj["kind"] == "Service":
            found[f"{obj['kind']}/{obj['metadata']['name']}"] = obj["spec"]["selector"]
    return found


def chart_version(chart_yaml: str) -> str:
    return yaml.safe_load(chart_yaml)["version"]


def current_selectors() -> dict[str, dict[str, str]]:
    return selectors(chartlib.render("prod"))


def test_selectors_match_the_golden_file_of_this_major() -> None:
    current = current_selectors()
    version = chart_version((CHART / "Chart.yaml").read_text())
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(
            yaml.safe_dump({"chartVersion": version, "selectors": current}, sort_keys=True)
        )
    golden = yaml.safe_load(GOLDEN.read_text())
    if version.split(".")[0] != str(golden["chartVersion"]).split(".")[0]:
        pytest.fail(
            f"chart major changed ({golden['chartVersion']} -> {version}): document the manual "
            "upgrade step in docs/deploy.md, then record the new selectors with "
            "UPDATE_GOLDEN=1 uv run pytest tests/chart/test_upgrade.py"
        )
    assert current == golden["selectors"], (
        "selector labels changed within a major version; existing releases could not upgrade"
    )


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def previous_chart_commit() -> tuple[str, str] | None:
    """The newest commit whose Chart.yaml has another version than the working tree's."""
    current = chart_version((CHART / "Chart.yaml").read_text())
    try:
        commits = _git("log", "--format=%H", "--", "charts/emporium/Chart.yaml").split()
    except (OSError, subprocess.CalledProcessError):
        return None
    for commit in commits:
        text = _git("show", f"{commit}:charts/emporium/Chart.yaml")
        if chart_version(text) != current:
            return commit, chart_version(text)
    return None


def test_selectors_match_the_previous_chart_version() -> None:
    previous = previous_chart_commit()
    if previous is None:
        pytest.skip(
            "no earlier chart version in git history yet (this is the first); "
            "the golden file check covers this version"
        )
    commit, version = previous
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "charts/emporium"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        old_chart = Path(tmp) / "charts" / "emporium"
        text = chartlib.run_helm(
            "helm3",
            "template",
            "emporium",
            str(old_chart),
            "--namespace",
            "emporium-prod",
            "-f",
            str(old_chart / "values-prod.yaml"),
            "--kube-version",
            chartlib.RENDER_KUBE_VERSION,
        ).stdout
    old = selectors(chartlib.parse(text))
    current = current_selectors()
    common = set(old) & set(current)
    assert common, f"no object of chart {version} is still rendered"
    changed = {k: (old[k], current[k]) for k in common if old[k] != current[k]}
    assert not changed, f"selectors changed since chart {version}: {changed}"


def test_selectors_are_minimal_and_stable_labels_only() -> None:
    for key, labels in current_selectors().items():
        assert set(labels) == {
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
        }, key
        assert not any(re.search(r"version|chart", k) for k in labels), key
