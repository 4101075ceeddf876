"""The Secrets and settings this code creates match, by name and key, what the
chart consumes: against docs/configuration.md always, and against the chart in
charts/emporium when it is in the tree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from emporium.infra import contract, model
from emporium.infra.settings import INFRA_DIR

from . import harness

pytestmark = pytest.mark.unit

REPO = INFRA_DIR.parent
CONFIGURATION = REPO / "docs" / "configuration.md"
CHART = REPO / "charts" / "emporium"


def _section(title: str) -> str:
    text = CONFIGURATION.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _codes(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def test_secret_and_configmap_names_and_keys_follow_the_document():
    section = _section("Secrets and settings in a cluster")
    secret_part, _, config_part = section.partition("ConfigMap")
    assert "emporium-<service>" in _codes(secret_part)
    services = re.search(r"each service that owns data \(([^)]+)\)", secret_part.replace("\n", " "))
    assert services is not None
    assert tuple(s.strip() for s in services.group(1).split(",")) == contract.DATA_SERVICES
    assert [c for c in _codes(secret_part) if c.isupper()] == list(contract.SERVICE_SECRET_KEYS)
    config_codes = _codes(config_part)
    assert config_codes[0] == contract.PLATFORM_CONFIGMAP
    assert [c for c in config_codes if c.isupper()] == list(contract.PLATFORM_CONFIG_KEYS)
    assert contract.app_namespace("<env>") in _codes(section)


def test_every_variable_the_infrastructure_sets_is_a_documented_variable():
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", CONFIGURATION.read_text(), re.MULTILINE))
    assert set(contract.SERVICE_SECRET_KEYS) <= documented
    assert set(contract.PLATFORM_CONFIG_KEYS) <= documented


def _topic_table() -> dict[str, tuple[set[str], set[str]]]:
    rows = {}
    for line in _section("Kafka topics").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("service", "") or set(cells[0]) <= {"-"}:
            continue
        service, produces, consumes = cells
        consumed = set(_codes(consumes))
        produced = {c for c in _codes(produces) if c != "*.dlq"}
        if "`*.dlq` of what it consumes" in produces:
            produced |= {contract.dlq(t) for t in consumed}
        rows[service] = (produced, consumed)
    return rows


def test_topics_and_who_uses_them_follow_the_document():
    section = _section("Kafka topics")
    first_line = section.split("\n\n")[1]
    assert tuple(_codes(first_line)[: len(contract.TOPICS)]) == contract.TOPICS
    table = _topic_table()
    assert table.pop("gateway") == (set(), set())
    assert sorted(table) == sorted(contract.DATA_SERVICES)
    for service, (produced, consumed) in table.items():
        access = contract.TOPIC_ACCESS[service]
        assert produced == set(access.produces), service
        assert consumed == set(access.consumes), service


def test_consumer_groups_are_named_after_the_service():
    assert "group = service name" in _section("Kafka topics")
    for service in contract.DATA_SERVICES:
        groups = [
            a["resource"]["name"] for a in model.kafka_acls(service) if a["resource"]["type"] == "group"
        ]
        assert groups == [service]


def _chart_text() -> str:
    files = [CHART / "values.yaml", *sorted((CHART / "templates").rglob("*"))]
    return "\n".join(p.read_text(errors="replace") for p in files if p.is_file())


def _names_in_values(values: object) -> set[str]:
    found: set[str] = set()
    if isinstance(values, dict):
        for item in values.values():
            found |= _names_in_values(item)
    elif isinstance(values, list):
        for item in values:
            found |= _names_in_values(item)
    elif isinstance(values, str):
        found.add(values)
    return found


@pytest.mark.skipif(not (CHART / "Chart.yaml").is_file(), reason="charts/emporium is not in the tree yet")
def test_the_chart_consumes_the_names_this_code_creates():
    text = _chart_text()
    values_file = CHART / "values.yaml"
    values = yaml.safe_load(values_file.read_text()) if values_file.is_file() else {}
    strings = _names_in_values(values)
    assert contract.PLATFORM_CONFIGMAP in text, "the chart never mentions the platform ConfigMap"
    for service in contract.DATA_SERVICES:
        name = contract.service_secret_name(service)
        # Either spelled out in values, or built from a prefix in a template.
        assert (
            name in strings
            or name in text
            or ("emporium-" in text and service in text and "secretRef" in text)
        ), f"the chart does not consume Secret {name}"
    assert "envFrom" in text, "the chart does not load Secrets and settings with envFrom"


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_the_stack_creates_exactly_the_documented_objects(stack_runs, stack):
    run: harness.Run = stack_runs[stack]
    namespace = contract.app_namespace(stack)
    created = {
        (r.type.rsplit(":", 1)[-1], r.get("metadata.name"))
        for r in run.resources
        if r.get("metadata.namespace") == namespace and r.type.endswith((":Secret", ":ConfigMap"))
    }
    expected = {("ConfigMap", contract.PLATFORM_CONFIGMAP)} | {
        ("Secret", contract.service_secret_name(s)) for s in contract.DATA_SERVICES
    }
    assert created == expected


def test_the_infra_readme_paths_exist():
    assert (INFRA_DIR / "__main__.py").is_file()
    assert Path(CONFIGURATION).is_file()


def _paths(value: object, prefix: str = "") -> set[str]:
    if isinstance(value, dict) and value:
        found: set[str] = set()
        for key, item in value.items():
            found |= _paths(item, f"{prefix}.{key}" if prefix else str(key))
        return found
    return {prefix}


@pytest.mark.skipif(not (CHART / "values.yaml").is_file(), reason="charts/emporium is not in the tree yet")
@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_the_values_overlay_uses_only_keys_the_chart_has(stack_runs, stack):
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    overlay = stack_runs[stack].exports["chartValues"]
    for path in sorted(_paths(overlay)):
        node: object = chart_values
        for part in path.split("."):
            assert isinstance(node, dict), f"chart values have no {path}"
            assert part in node, f"chart values have no {path}"
            node = node[part]
    assert overlay["platform"]["configMapName"] == contract.PLATFORM_CONFIGMAP
    # The chart's default Secret name is the one this code creates.
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert 'printf "emporium-%s"' in helpers
