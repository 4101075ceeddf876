"""What a Helm release of the platform is, for both renderers (the Pulumi
components and the CDK Terrain stack)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emporium.infra import versions


@dataclass(frozen=True)
class ReleaseSpec:
    name: str
    namespace: str
    pin: versions.ChartPin
    values: dict[str, Any]
    concern: str  # tls | kafka | postgres | observability
    # Releases (by name) installed before this one: their CRDs or webhooks are used here.
    needs: tuple[str, ...] = ()


def resources(cpu: str, memory: str, cpu_limit: str | None = None) -> dict[str, Any]:
    """Requests and limits of one container (the memory limit equals its request)."""
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit or cpu, "memory": memory}}
