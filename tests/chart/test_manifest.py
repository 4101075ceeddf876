"""The chart's values agree with the system manifest (docs/manifest.md).

A Helm chart cannot read files outside itself, so the `services` entries and
the topic list of values.yaml repeat what the manifest says; this test keeps
them equal, and names the values key to change when they are not.
"""

from __future__ import annotations

from typing import Any

import chartlib
import pytest
import yaml
from chartlib import CHART, SYSTEM, by_kind

pytestmark = pytest.mark.unit

VALUES: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
# Ports every service listens on in a cluster (docs/configuration.md).
CLUSTER_HTTP_PORT = 8080


def test_the_chart_has_an_entry_for_each_service_and_no_other() -> None:
    assert sorted(VALUES["services"]) == sorted(SYSTEM.names), (
        "charts/emporium/values.yaml services must be the manifest's services"
    )


@pytest.mark.parametrize("name", SYSTEM.names)
def test_each_service_entry_says_what_the_manifest_says(name: str) -> None:
    service = SYSTEM.service(name)
    entry = {**VALUES["defaults"], **VALUES["services"].get(name, {})}
    where = f"charts/emporium/values.yaml services.{name}"
    assert entry["database"] == service.database, f"{where}.database"
    assert entry["kafka"] == service.kafka, f"{where}.kafka"
    assert sorted(entry["calls"]) == sorted(service.calls), f"{where}.calls"
    expected_http = CLUSTER_HTTP_PORT if service.serves_http else 0
    assert entry["httpPort"] == expected_http, f"{where}.httpPort"


@pytest.mark.parametrize(
    "path", sorted([*CHART.glob("values-*.yaml"), *CHART.glob("ci/*.yaml")]), ids=lambda p: p.name
)
def test_environment_and_scenario_files_name_only_manifest_services(path: Any) -> None:
    values = yaml.safe_load(path.read_text()) or {}
    unknown = set(values.get("services") or {}) - set(SYSTEM.names)
    assert not unknown, (
        f"{path.relative_to(CHART)}: services {sorted(unknown)} are not in the manifest"
    )


def test_the_topic_list_is_the_manifest() -> None:
    topics = VALUES["kafkaTopics"]
    where = "charts/emporium/values.yaml kafkaTopics"
    assert topics["topics"] == list(SYSTEM.topic_names(dead_letters=False)), f"{where}.topics"
    # The chart sizes every topic alike; the manifest may not differ per topic.
    assert {t.partitions for t in SYSTEM.topics.values()} == {topics["partitions"]}, (
        f"{where}.partitions"
    )
    assert {t.dlq_partitions for t in SYSTEM.topics.values()} == {topics["dlqPartitions"]}, (
        f"{where}.dlqPartitions"
    )


def test_every_environment_renders_exactly_the_manifest_services(environment: str) -> None:
    objects = chartlib.render(environment)
    deployments = {chartlib.service_of(d) for d in by_kind(objects, "Deployment").values()}
    jobs = {chartlib.service_of(j) for j in by_kind(objects, "Job").values()}
    assert deployments == set(SYSTEM.names)
    assert jobs == set(SYSTEM.data_services)
