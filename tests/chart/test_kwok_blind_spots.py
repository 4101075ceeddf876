"""What the local cluster cannot show, checked another way.

KWOK's fake kubelets start every pod, whatever image and command it names,
so a chart that names an image `make images` never builds, or a command
that image does not have, would still become "Ready" there. These checks
compare the rendered chart with scripts/images.sh and the services' entry
points instead. (The Secrets and ConfigMaps a pod names are checked against
the live namespace in test_cluster.py, before each install.)
"""

from __future__ import annotations

import subprocess
import tomllib
from typing import Any

import chartlib
import pytest
import yaml
from chartlib import CHART, ENVIRONMENTS, ROOT

pytestmark = pytest.mark.unit


def pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        f"{o['kind']}/{o['metadata']['name']}": o["spec"]["template"]["spec"]
        for o in objects
        if o.get("spec", {}).get("template", {}).get("spec")
    }


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def images_script_names(registry: str, tag: str) -> set[str]:
    out = subprocess.run(
        [str(ROOT / "scripts" / "images.sh"), "--list", "--registry", registry, "--tag", tag],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return set(out.split())


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_images_named_by_the_chart_are_the_ones_make_images_builds(env: str) -> None:
    images = {
        c["image"] for spec in pod_specs(chartlib.render(env)).values() for c in containers(spec)
    }
    repositories = {image.rsplit(":", 1)[0] for image in images}
    registries = {repo.rsplit("/", 1)[0] for repo in repositories}
    tags = {image.rsplit(":", 1)[1] for image in images}
    assert len(registries) == 1, registries
    assert len(tags) == 1, tags
    built = images_script_names(registries.pop(), tags.pop())
    # Every image a pod runs is one `make images` builds, and every service
    # image it builds is run by the chart.
    assert images == built


def test_the_default_tag_is_what_make_images_tags() -> None:
    app_version = str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])
    images = {
        c["image"] for spec in pod_specs(chartlib.render("dev")).values() for c in containers(spec)
    }
    values = yaml.safe_load((CHART / "values-dev.yaml").read_text()) or {}
    if not (values.get("image") or {}).get("tag"):
        assert {i.rsplit(":", 1)[1] for i in images} == {app_version}
    default = subprocess.run(
        [str(ROOT / "scripts" / "images.sh"), "--list"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert {i.rsplit(":", 1)[1] for i in default} == {app_version}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_command_the_chart_runs_is_an_entry_point_of_its_image(env: str) -> None:
    for name, spec in pod_specs(chartlib.render(env)).items():
        for c in containers(spec):
            service = c["image"].rsplit(":", 1)[0].rsplit("/", 1)[1]
            project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
            scripts = set(project["project"].get("scripts", {}))
            command = c.get("command") or []
            assert command, f"{name}: no command; the image has no default worth relying on"
            assert command[0] in scripts, f"{name} runs {command[0]}; {service} installs {scripts}"
