"""Run the Pulumi program through the Automation API, with a local file backend.

The program (``infra/__main__.py``) runs inline, in this process, so the CLI
needs no Python language host; state lives in a ``file://`` directory and
secrets are encrypted with a passphrase. The live infrastructure test drives
``pulumi up``/``destroy`` of a stack against a Kubernetes API server with it
(docs/infrastructure.md, "Apply it for real"); with an installed Pulumi the
same is ``pulumi up`` in ``infra/``.

The stack's settings are a copy of ``infra/Pulumi.<stack>.yaml`` in the
workspace directory with ``overrides`` merged in (nested mappings key by key),
so that ``pulumi stack init`` never writes into the committed stack file.
"""

from __future__ import annotations

import runpy
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto

from emporium.infra.settings import INFRA_DIR

PROJECT = "emporium"


def program() -> None:
    """The infra program itself, as an inline Automation API program."""
    runpy.run_path(str(INFRA_DIR / "__main__.py"), run_name="__main__")


@dataclass(frozen=True)
class LocalBackend:
    """Where one set of stacks keeps its state, and how the CLI is found."""

    state_dir: Path
    workspace_dir: Path
    passphrase: str
    # A directory with bin/pulumi; None uses the pulumi on PATH.
    pulumi_root: Path | None = None
    # Plugins (the kubernetes provider) are looked up here; None uses ~/.pulumi.
    pulumi_home: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"file://{self.state_dir}"

    def environment(self) -> dict[str, str]:
        return {
            "PULUMI_BACKEND_URL": self.url,
            "PULUMI_CONFIG_PASSPHRASE": self.passphrase,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            # Offline: a missing plugin is an error, not a download attempt.
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            **self.env,
        }


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def stack_settings(stack: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The committed stack file with ``overrides`` (full keys, e.g. ``emporium:cluster``)."""
    document = yaml.safe_load((INFRA_DIR / f"Pulumi.{stack}.yaml").read_text()) or {}
    document["config"] = _merge(document.get("config") or {}, overrides)
    return document


def open_stack(stack: str, backend: LocalBackend, overrides: Mapping[str, Any] | None = None) -> auto.Stack:
    """Create or select ``stack`` of the inline program in ``backend``."""
    backend.state_dir.mkdir(parents=True, exist_ok=True)
    backend.workspace_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(INFRA_DIR / "Pulumi.yaml", backend.workspace_dir / "Pulumi.yaml")
    settings_file = backend.workspace_dir / f"Pulumi.{stack}.yaml"
    document = stack_settings(stack, overrides or {})
    if settings_file.exists():
        # Keep the salt `pulumi stack init` wrote for the passphrase.
        previous = yaml.safe_load(settings_file.read_text()) or {}
        if "encryptionsalt" in previous:
            document["encryptionsalt"] = previous["encryptionsalt"]
    settings_file.write_text(yaml.safe_dump(document, sort_keys=False))
    command = auto.PulumiCommand(root=str(backend.pulumi_root)) if backend.pulumi_root is not None else None
    options = auto.LocalWorkspaceOptions(
        work_dir=str(backend.workspace_dir),
        pulumi_home=str(backend.pulumi_home) if backend.pulumi_home is not None else None,
        env_vars=backend.environment(),
        secrets_provider="passphrase",
        pulumi_command=command,
    )
    return auto.create_or_select_stack(stack_name=stack, project_name=PROJECT, program=program, opts=options)
