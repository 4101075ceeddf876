"""Turn a stack's outputs into the chart's values for that environment.

    pulumi stack output --stack dev --json \\
      | uv run --project infra python -m emporium.infra.chart_values > values-dev.infra.yaml
    helm upgrade --install emporium charts/emporium -n emporium-dev \\
      -f charts/emporium/values-dev.yaml -f values-dev.infra.yaml

The overlay names the Secrets and the ConfigMap the infrastructure created; it never
carries a credential (the chart reads them from the Secrets with envFrom).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml

from emporium.infra import contract, model
from emporium.infra.settings import StackSettings


def otlp_endpoint() -> str:
    return model.otlp_endpoint()


def chart_values(settings: StackSettings) -> dict[str, Any]:
    """Values overlay for ``charts/emporium``; exported by the stack as ``chartValues``."""
    return {
        "environment": settings.environment,
        "platform": {
            "configMapName": contract.PLATFORM_CONFIGMAP,
            "createConfigMap": False,
        },
        "services": {
            service: {"existingSecret": contract.service_secret_name(service)}
            for service in contract.DATA_SERVICES
        },
    }


def from_stack_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    values = outputs.get("chartValues")
    if not isinstance(values, dict):
        raise SystemExit("stack outputs have no chartValues: run `pulumi up` on the stack first")
    return values


def main() -> None:
    outputs = json.load(sys.stdin)
    yaml.safe_dump(from_stack_outputs(outputs), sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
