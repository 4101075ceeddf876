"""The pinned charts and operands live in ``versions.py`` alone; the tables in
docs/infrastructure.md must say exactly the same, and every release the program
or the Terraform path installs uses one of those pins."""

from __future__ import annotations

import re

import pytest

from emporium.infra import releases, versions
from emporium.infra.contract import ENVIRONMENTS
from emporium.infra.settings import INFRA_DIR, StackSettings, stack_file

pytestmark = pytest.mark.unit

DOC = INFRA_DIR.parent / "docs" / "infrastructure.md"
EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+$")


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _tables(section: str) -> list[list[list[str]]]:
    """Each markdown table of the section as rows of cells, header and rule dropped."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in section.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if current is None:
            current = []
            tables.append(current)
            continue  # header
        if all(set(cell) <= {"-", ":"} for cell in cells):
            continue
        current.append(cells)
    return tables


def _code(value: str) -> str:
    return f"`{value}`"


def _documented() -> tuple[list[list[str]], list[list[str]]]:
    charts, operands = _tables(_section(DOC.read_text(), "## Versions"))
    return charts, operands


def test_the_docs_list_exactly_the_pinned_charts():
    charts, _ = _documented()
    expected = [
        [
            pin.title,
            _code(pin.chart),
            pin.version,
            pin.app_version,
            _code(pin.repository) if pin.repository else "(OCI)",
            _code(pin.index),
        ]
        for pin in versions.ALL_CHARTS
    ]
    assert charts == expected


def test_the_docs_list_the_pinned_operands():
    _, operands = _documented()
    assert [row[1] for row in operands] == [versions.KAFKA_VERSION, _code(versions.POSTGRES_IMAGE)]


def test_every_pin_is_exact_and_names_its_index():
    titles = [pin.title for pin in versions.ALL_CHARTS]
    assert len(set(titles)) == len(titles)
    for pin in versions.ALL_CHARTS:
        assert EXACT_VERSION.match(pin.version), pin
        assert pin.index.startswith("https://"), pin
        assert pin.index.endswith("/index.yaml"), pin
        if pin.repository is None:
            assert pin.chart.startswith("oci://"), pin
        else:
            assert pin.index == pin.repository.rstrip("/") + "/index.yaml", pin
            assert "/" not in pin.chart, pin


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_release_uses_a_pin_from_the_table(env):
    specs = releases.all_releases(StackSettings.from_stack_file(stack_file(env)))
    assert specs
    for spec in specs:
        assert spec.pin in versions.ALL_CHARTS, spec.name
