"""The CDK Terrain path checked by a real engine: every stack's synthesized JSON
goes through `tofu init` and `tofu validate` with the kubernetes, helm and
random providers that `make setup` builds (scripts/install-tofu.sh) and serves
from a local filesystem mirror, so nothing is downloaded. Validation loads each
provider's schema: an argument the provider does not have fails it.

Without OpenTofu the tests skip with "run make setup"; with
EMPORIUM_REQUIRE_PLATFORM=1 (as in `make test`) they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

from emporium.infra import contract, versions
from emporium.infra.settings import INFRA_DIR
from emporium.infra.terraform_stack import build_app

pytestmark = pytest.mark.engine

ROOT = INFRA_DIR.parent
CACHE = ROOT / ".cache"
TOFU = CACHE / "bin" / "tofu"
CLI_CONFIG = CACHE / "tofu.tofurc"
MIRROR = CACHE / "tofu-mirror"


def test_the_validated_provider_versions_are_the_built_ones(pins: dict[str, str]) -> None:
    built = {name: pins[f"TOFU_PROVIDER_{name.upper()}_VERSION"] for name in versions.TERRAFORM_PROVIDERS}
    assert built == versions.TERRAFORM_PROVIDERS


@pytest.fixture(scope="module")
def tofu(
    pins: dict[str, str], unavailable: Callable[[str], NoReturn]
) -> Callable[..., subprocess.CompletedProcess[str]]:
    if not TOFU.is_file() or not CLI_CONFIG.is_file():
        unavailable(f"OpenTofu {pins['OPENTOFU_VERSION']} and its providers are not built: run make setup")
    for name, version in versions.TERRAFORM_PROVIDERS.items():
        provider = MIRROR / "registry.opentofu.org" / "hashicorp" / name / version
        if not provider.is_dir():
            unavailable(f"the {name} provider {version} is not in the local mirror: run make setup")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "TF_CLI_CONFIG_FILE": str(CLI_CONFIG),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
    }

    def run(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(TOFU), f"-chdir={workdir}", *args, "-no-color"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    version = subprocess.run(
        [str(TOFU), "version", "-json"], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(version.stdout)["terraform_version"] == pins["OPENTOFU_VERSION"].removeprefix("v")
    return run


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each environment's Terraform JSON, as `terraform/main.py` writes it."""
    out = tmp_path_factory.mktemp("cdktf.out")
    build_app(outdir=str(out)).synth()
    return {
        env: json.loads((out / "stacks" / f"emporium-{env}" / "cdk.tf.json").read_text())
        for env in contract.ENVIRONMENTS
    }


@pytest.fixture(scope="module")
def initialized(tofu, tmp_path_factory: pytest.TempPathFactory, synthesized) -> Path:
    """A working directory where `tofu init` installed the providers from the
    mirror; each validation copies it and swaps in its configuration."""
    workdir = tmp_path_factory.mktemp("tofu-init")
    (workdir / "cdk.tf.json").write_text(json.dumps(synthesized["dev"]))
    result = tofu(workdir, "init", "-backend=false")
    assert result.returncode == 0, result.stdout + result.stderr
    for name, version in versions.TERRAFORM_PROVIDERS.items():
        assert f"Installed hashicorp/{name} v{version}" in result.stdout, result.stdout
    return workdir


def _validate(tofu, initialized: Path, workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
    shutil.copytree(initialized, workdir, symlinks=True)
    (workdir / "cdk.tf.json").write_text(json.dumps(config))
    result = tofu(workdir, "validate", "-json")
    report = json.loads(result.stdout)
    assert (result.returncode == 0) == report["valid"], result.stdout + result.stderr
    return report


def _errors(report: dict[str, Any]) -> list[str]:
    return [
        f"{d['summary']}: {d.get('detail', '')}" for d in report["diagnostics"] if d["severity"] == "error"
    ]


@pytest.mark.parametrize("env", contract.ENVIRONMENTS)
def test_every_stack_is_valid_for_the_engine(tofu, initialized, synthesized, tmp_path, env):
    config = synthesized[env]
    assert config["resource"]["helm_release"]
    assert config["resource"]["kubernetes_manifest"]
    report = _validate(tofu, initialized, tmp_path / "work", config)
    assert report["valid"], _errors(report)
    assert report["error_count"] == 0
    # Deprecated arguments show up here before a provider release removes them.
    assert report["warning_count"] == 0, report["diagnostics"]


def _with_provider_argument(config: dict[str, Any]) -> dict[str, Any]:
    config["provider"]["kubernetes"][0]["no_such_argument"] = "x"
    return config


def _with_resource_argument(config: dict[str, Any]) -> dict[str, Any]:
    release = next(iter(config["resource"]["helm_release"].values()))
    release["no_such_argument"] = "x"
    return config


def _with_misspelt_block(config: dict[str, Any]) -> dict[str, Any]:
    namespace = next(iter(config["resource"]["kubernetes_namespace_v1"].values()))
    namespace["metadatum"] = namespace.pop("metadata")
    return config


@pytest.mark.parametrize(
    ("break_it", "named"),
    [
        (_with_provider_argument, "no_such_argument"),
        (_with_resource_argument, "no_such_argument"),
        (_with_misspelt_block, "metadatum"),
    ],
    ids=["provider-argument", "resource-argument", "resource-block"],
)
def test_an_argument_the_provider_does_not_have_fails_validation(
    tofu, initialized, synthesized, tmp_path, break_it, named
):
    config = break_it(json.loads(json.dumps(synthesized["dev"])))
    report = _validate(tofu, initialized, tmp_path / "work", config)
    assert not report["valid"]
    errors = _errors(report)
    assert any(named in error for error in errors), errors
