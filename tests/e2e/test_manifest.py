"""The running system is the one the manifest describes (docs/manifest.md).

Each service's /healthz lists the dependencies it really checks; they must be
what its manifest entry declares, with the same criticality: its database
(critical), Kafka when it produces or consumes (not critical: the outbox and
the consumers wait it out), and every service it calls, critical or optional.
"""

from __future__ import annotations

import pytest

from .conftest import SYSTEM, System

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("name", SYSTEM.names)
def test_healthz_reports_the_manifest_dependencies(system: System, name: str) -> None:
    service = SYSTEM.service(name)
    expected = {callee: True for callee in service.critical}
    expected |= {callee: False for callee in service.optional}
    if service.database:
        expected["postgres"] = True
    if service.kafka:
        expected["kafka"] = False
    dependencies = system.healthz(name)["dependencies"]
    reported = {dep: status["critical"] for dep, status in dependencies.items()}
    assert reported == expected, name
