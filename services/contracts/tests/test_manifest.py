"""The system manifest (docs/manifest.md) is whole, consistent and documented.

The shipped ``system.toml`` is checked by its own loader (unique ports, known
dependencies in start order, every consumed topic produced by exactly one
service, Kafka users own a database); these tests prove each of those checks
refuses a broken manifest with a message naming the key, and that the shipped
one agrees with the protos, the services' workspace and docs/configuration.md.
The rules are tested on a small example system of their own, so the tests
hold for whatever services a fork ships.
"""

from __future__ import annotations

import copy
import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from emporium.contracts import manifest
from emporium.contracts.manifest import ManifestError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()


#: A small system of its own, so the rules are tested whatever a fork ships.
EXAMPLE = """
[topics.order-made]
name = "orders.order-made.v1"
payload = "shop.events.v1.OrderMade"
partitions = 3
dlq_partitions = 1

[topics.stock-low]
name = "stock.stock-low.v1"
payload = "shop.events.v1.StockLow"
partitions = 3
dlq_partitions = 1

[services.stock]
database = true
critical = []
optional = []
produces = ["stock-low"]
consumes = ["order-made"]
ports = { grpc = 20001, admin = 8101 }

[services.orders]
database = true
critical = ["stock"]
optional = []
produces = ["order-made"]
consumes = []
ports = { grpc = 20002, admin = 8102 }

[services.web]
database = false
critical = ["stock"]
optional = ["orders"]
produces = []
consumes = []
ports = { grpc = 20003, admin = 8103, http = 8080 }
"""


def raw() -> dict[str, Any]:
    return tomllib.loads(EXAMPLE)


def test_the_example_is_valid() -> None:
    system = manifest.parse(raw())
    assert system.names == ("stock", "orders", "web")
    assert system.data_services == ("stock", "orders")
    assert system.kafka_services == ("stock", "orders")
    assert system.service("web").calls == ("stock", "orders")
    assert system.service("web").serves_http
    assert system.produced_names("stock") == ("stock.stock-low.v1", "orders.order-made.v1.dlq")
    assert system.consumed_names("stock") == ("orders.order-made.v1",)
    assert system.topic_names() == (
        "orders.order-made.v1",
        "orders.order-made.v1.dlq",
        "stock.stock-low.v1",
        "stock.stock-low.v1.dlq",
    )


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(ManifestError) as caught:
        manifest.parse(data, "system.toml")
    return str(caught.value)


def test_the_shipped_manifest_loads() -> None:
    system = manifest.system()
    assert system.names
    assert set(system.data_services) <= set(system.names)
    for service in system.services.values():
        for name in system.produced_names(service.name):
            assert name in system.topic_names()
        assert service.consumer_group


def test_unknown_names_are_refused_clearly() -> None:
    system = manifest.system()
    with pytest.raises(ManifestError, match="no service 'no-such' in the manifest; one of: "):
        system.service("no-such")
    with pytest.raises(ManifestError, match="no topic 'no-such'"):
        system.topic("no-such")


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
    assert result.stdout.splitlines() == [",".join(manifest.system().names), "[]"]


def test_every_payload_is_a_generated_message() -> None:
    # Every generated module, whatever services and events the system has.
    src = ROOT / "services/contracts/src"
    modules = [
        importlib.import_module(".".join(path.relative_to(src).with_suffix("").parts))
        for path in sorted(src.glob("emporium/*/v*/*_pb2.py"))
    ]
    assert modules, "no generated code: run make protos"
    generated = {
        message.full_name
        for module in modules
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
            lambda d: d["services"]["orders"]["ports"].update(admin=8101),
            "services.orders.ports.admin: 8101 is also services.stock.ports.admin",
        ),
        (
            lambda d: d["services"]["web"]["optional"].append("payments"),
            "services.web: calls 'payments', which is not a service",
        ),
        (
            lambda d: d["services"]["orders"]["critical"].append("web"),
            "services.orders: calls 'web', which must come before it (start order)",
        ),
        (
            lambda d: d["services"]["web"]["optional"].append("stock"),
            "services.web: stock both critical and optional",
        ),
        (
            lambda d: d["services"]["orders"].update(produces=[]),
            "topics.order-made must have exactly one producer, has none",
        ),
        (
            lambda d: d["services"]["stock"]["produces"].append("order-made"),
            "topics.order-made must have exactly one producer, has stock, orders",
        ),
        (
            lambda d: d["services"]["stock"]["consumes"].append("order-shipped"),
            "services.stock.consumes: 'order-shipped' is not a topic",
        ),
        (
            lambda d: d["services"]["web"]["consumes"].append("stock-low"),
            "services.web: uses Kafka, so it needs database = true",
        ),
        (
            lambda d: d["services"]["stock"].update(datbase=True),
            "services.stock: unknown key(s) datbase",
        ),
        (
            lambda d: d["services"]["stock"].pop("ports"),
            "services.stock: missing key(s) ports",
        ),
        (
            lambda d: d["services"].update(Payments=d["services"]["web"]),
            "services.Payments: a service name is 2 to 31 lowercase letters and digits",
        ),
        (
            lambda d: d["topics"]["order-made"].update(partitions=0),
            "topics.order-made.partitions: must be an integer from 1 to 1000",
        ),
        (
            lambda d: d["topics"]["order-made"].update(name="OrderMade"),
            "topics.order-made.name: 'OrderMade' is not <owner>.<event>.v<N>",
        ),
        (
            lambda d: d["services"]["orders"].update(
                consumes=["stock-low"], consumer_group="stock"
            ),
            "two services share a consumer group",
        ),
        (
            lambda d: d["services"]["stock"]["ports"].update(grpc=80),
            "services.stock.ports.grpc: must be an integer from 1024 to 32767",
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
