"""The Strimzi operator (component ``Kafka``): watches every namespace and runs
its operands under the restricted security provider."""

from __future__ import annotations

from emporium.infra import model, versions
from emporium.infra.releases.spec import ReleaseSpec, resources


def release() -> ReleaseSpec:
    return ReleaseSpec(
        "strimzi",
        model.STRIMZI_NAMESPACE,
        versions.STRIMZI,
        {
            "watchAnyNamespace": True,
            "resources": resources("200m", "384Mi", "1"),
            # Operands (Kafka, entity operator) get restricted security contexts.
            "extraEnvs": [{"name": "STRIMZI_POD_SECURITY_PROVIDER_CLASS", "value": "restricted"}],
        },
        "kafka",
    )
