"""The system manifest (docs/manifest.md) is whole, consistent and documented.

The shipped ``system.toml`` is checked by its own loader (unique ports, known
dependencies in start order, every consumed topic produced by exactly one
service, Kafka users own a database); these tests prove each of those checks
refuses a broken manifest with a message naming the key, and that the shipped
one agrees with the protos, the services' workspace and docs/configuration.md.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from emporium.contracts import manifest
from emporium.contracts.manifest import ManifestError
from emporium.events.v1 import fraud_events_pb2, order_events_pb2

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()


def raw() -> dict[str, Any]:
    with manifest.PATH.open("rb") as f:
        return tomllib.load(f)


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(ManifestError) as caught:
        manifest.parse(data, "system.toml")
    return str(caught.value)


def test_the_shipped_manifest_loads() -> None:
    system = manifest.system()
    assert system.names == ("catalog", "recommendations", "orders", "fraud", "gateway")
    assert system.data_services == ("catalog", "recommendations", "orders", "fraud")
    assert system.service("gateway").calls == ("catalog", "recommendations", "orders")
    assert system.service("orders").critical == ("catalog",)
    assert system.topic("order-placed").dlq == "orders.order-placed.v1.dlq"
    assert system.produced_names("fraud") == (
        "fraud.decision-made.v1",
        "orders.order-placed.v1.dlq",
    )


def test_unknown_names_are_refused_clearly() -> None:
    system = manifest.system()
    with pytest.raises(
        ManifestError, match="no service 'payments' in the manifest; one of: catalog"
    ):
        system.service("payments")
    with pytest.raises(ManifestError, match="no topic 'order-shipped'"):
        system.topic("order-shipped")


def test_the_loader_needs_only_the_standard_library(tmp_path: Path) -> None:
    """scripts/ and infra/ import it by path, outside this workspace's environment."""
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('m', {str(manifest.__file__)!r})\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['m'] = m\n"
        "spec.loader.exec_module(m)\n"
        "print(','.join(m.system().names))\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in "
        "('google', 'grpc', 'emporium', 'yaml')))\n"
    )
    # -I -S: no site-packages, no user site, no PYTHONPATH.
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert result.stdout.splitlines() == ["catalog,recommendations,orders,fraud,gateway", "[]"]


def test_every_payload_is_a_generated_message() -> None:
    generated = {
        message.full_name
        for module in (fraud_events_pb2, order_events_pb2)
        for message in module.DESCRIPTOR.message_types_by_name.values()
    }
    for topic in manifest.system().topics.values():
        assert topic.payload in generated, topic.key


def test_every_service_is_a_workspace_member() -> None:
    for name in manifest.system().names:
        project = ROOT / "services" / name / "pyproject.toml"
        assert project.is_file(), f"{name}: no {project.relative_to(ROOT)}"
        assert f'emporium-{name} = "emporium.{name}.main:' in project.read_text(), name


# --- each consistency rule refuses a broken manifest -----------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["services"]["fraud"]["ports"].update(admin=8181),
            "services.fraud.ports.admin: 8181 is also services.catalog.ports.admin",
        ),
        (
            lambda d: d["services"]["gateway"]["optional"].append("payments"),
            "services.gateway: calls 'payments', which is not a service",
        ),
        (
            lambda d: d["services"]["orders"]["critical"].append("gateway"),
            "services.orders: calls 'gateway', which must come before it (start order)",
        ),
        (
            lambda d: d["services"]["gateway"]["optional"].append("catalog"),
            "services.gateway: catalog both critical and optional",
        ),
        (
            lambda d: d["services"].pop("fraud"),
            "topics.fraud-decision-made must have exactly one producer, has none",
        ),
        (
            lambda d: d["services"]["fraud"]["produces"].append("order-placed"),
            "topics.order-placed must have exactly one producer, has orders, fraud",
        ),
        (
            lambda d: d["services"]["catalog"]["consumes"].append("order-shipped"),
            "services.catalog.consumes: 'order-shipped' is not a topic",
        ),
        (
            lambda d: d["services"]["gateway"]["consumes"].append("order-placed"),
            "services.gateway: uses Kafka, so it needs database = true",
        ),
        (
            lambda d: d["services"]["catalog"].update(datbase=True),
            "services.catalog: unknown key(s) datbase",
        ),
        (
            lambda d: d["services"]["catalog"].pop("ports"),
            "services.catalog: missing key(s) ports",
        ),
        (
            lambda d: d["services"].update(Payments=d["services"]["catalog"]),
            "services.Payments: a service name is 2 to 31 lowercase letters and digits",
        ),
        (
            lambda d: d["topics"]["order-placed"].update(partitions=0),
            "topics.order-placed.partitions: must be an integer from 1 to 1000",
        ),
        (
            lambda d: d["topics"]["order-placed"].update(name="OrderPlaced"),
            "topics.order-placed.name: 'OrderPlaced' is not <owner>.<event>.v<N>",
        ),
        (
            lambda d: d["services"]["recommendations"].update(consumer_group="fraud"),
            "two services share a consumer group",
        ),
        (
            lambda d: d["services"]["catalog"]["ports"].update(grpc=80),
            "services.catalog.ports.grpc: must be an integer from 1024 to 32767",
        ),
    ],
)
def test_a_broken_manifest_is_refused_naming_the_key(change: Any, message: str) -> None:
    data = copy.deepcopy(raw())
    change(data)
    assert message in refused(data)


def test_a_manifest_that_is_not_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "system.toml"
    path.write_text("[services.catalog\n")
    with pytest.raises(ManifestError, match=re.escape(str(path))):
        manifest.load(path)


def test_removing_a_consumer_only_service_leaves_a_valid_manifest() -> None:
    """docs/forking.md's example: recommendations goes, nothing else has to."""
    data = copy.deepcopy(raw())
    del data["services"]["recommendations"]
    data["services"]["gateway"]["optional"].remove("recommendations")
    system = manifest.parse(data)
    assert "recommendations" not in system.names
    assert system.topic_names() == manifest.system().topic_names()


# --- docs/configuration.md agrees ------------------------------------------------


def _section(title: str) -> str:
    start = CONFIGURATION.index(f"## {title}")
    end = CONFIGURATION.find("\n## ", start + 1)
    return CONFIGURATION[start : end if end != -1 else None]


def _rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] not in ("service",) and set(cells[0]) - {"-"}:
            rows[cells[0]] = cells[1:]
    return rows


def test_the_local_ports_table_is_the_manifest() -> None:
    table = _rows(_section("Local ports"))
    expected = {
        s.name: [str(s.ports.grpc), str(s.ports.admin), str(s.ports.http or "–")]
        for s in manifest.system().services.values()
    }
    assert table == expected


def test_the_topic_table_is_the_manifest() -> None:
    system = manifest.system()
    section = _section("Kafka topics")
    assert re.findall(r"`([a-z][a-z.-]+\.v\d)`", section.split("\n\n")[1]) == list(
        system.topic_names(dead_letters=False)
    )
    table = _rows(section)
    assert list(table) == list(system.names)
    for service, (produces, consumes) in table.items():
        codes = set(re.findall(r"`([^`]+)`", produces)) - {"*.dlq"}
        if "`*.dlq` of what it consumes" in produces:
            codes |= {f"{t}.dlq" for t in system.consumed_names(service)}
        assert codes == set(system.produced_names(service)), service
        assert set(re.findall(r"`([^`]+)`", consumes)) == set(system.consumed_names(service))
