"""Repository-wide pytest rules and fixtures.

Every test says how much it touches with exactly one marker (unit,
integration, e2e, cluster), so a run can be chosen by cost and nothing
slips through unclassified.

The local platform's fixtures for its real servers (throwaway databases and
topics, ...) come from one plugin, testing/src/emporium/testing/pytest_plugin.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Appended, not prepended: nothing in scripts/ may shadow an installed module.
sys.path.append(str(Path(__file__).resolve().parent / "scripts"))

pytest_plugins = ["emporium.testing.pytest_plugin"]

KINDS = ("unit", "integration", "e2e", "cluster")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unclassified = [
        item.nodeid for item in items if sum(1 for k in KINDS if item.get_closest_marker(k)) != 1
    ]
    if unclassified:
        raise pytest.UsageError(
            "each test needs exactly one of the markers "
            + ", ".join(KINDS)
            + ":\n  "
            + "\n  ".join(unclassified[:20])
        )
