"""Fixtures of the live infrastructure tests: the Pulumi CLI and kubernetes
plugin that `make setup` installs, and the local Kubernetes control plane.

Without them the tests skip, naming what is missing; with
EMPORIUM_REQUIRE_PLATFORM=1 (as in `make test`) they fail instead.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from emporium.infra.settings import INFRA_DIR

from .kube import Kube

ROOT = INFRA_DIR.parent
CACHE = ROOT / ".cache"


@dataclass(frozen=True)
class Tools:
    pulumi_root: Path  # holds bin/pulumi
    pulumi_home: Path
    helm: dict[str, Path]


@pytest.fixture(scope="session")
def tools(pins: dict[str, str], unavailable: Callable[[str], NoReturn]) -> Tools:
    pulumi_root = CACHE / "pulumi-build" / f"cli-{pins['PULUMI_CLI_VERSION']}"
    pulumi_home = CACHE / "pulumi-home"
    plugin = pulumi_home / "plugins" / f"resource-kubernetes-v{pins['PULUMI_KUBERNETES_PLUGIN_VERSION']}"
    helm = {name: CACHE / "bin" / name for name in ("helm3", "helm4")}
    for path, what in (
        (pulumi_root / "bin" / "pulumi", f"the Pulumi CLI {pins['PULUMI_CLI_VERSION']}"),
        (pulumi_root / "bin" / "pulumi-resource-pulumi-python", "the Python dynamic provider launcher"),
        (plugin, "the kubernetes provider plugin"),
        *((path, name) for name, path in helm.items()),
    ):
        if not path.exists():
            unavailable(f"{what} is not installed ({path.relative_to(ROOT)}): run make setup")
    return Tools(pulumi_root=pulumi_root, pulumi_home=pulumi_home, helm=helm)


def _platformctl(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "platformctl.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def kubeconfig(unavailable: Callable[[str], NoReturn]) -> Iterator[Path]:
    """The local control plane's admin kubeconfig; started here when it is not running."""
    found = _platformctl("cluster-kubeconfig", timeout=60)
    started = False
    if found.returncode != 0:
        t0 = time.monotonic()
        up = _platformctl("cluster-up", timeout=600)
        if up.returncode != 0:
            unavailable(
                f"the local Kubernetes control plane did not start: {(up.stderr or up.stdout)[-2000:]}"
            )
        started = True
        print(f"cluster-up took {time.monotonic() - t0:.1f}s")
        found = _platformctl("cluster-kubeconfig", timeout=60)
        if found.returncode != 0:
            unavailable(f"no kubeconfig from the local control plane: {found.stderr[-2000:]}")
    yield Path(found.stdout.strip().splitlines()[-1])
    if started:
        _platformctl("cluster-down", timeout=300)


@pytest.fixture(scope="session")
def kube(kubeconfig: Path) -> Kube:
    return Kube(kubeconfig)
