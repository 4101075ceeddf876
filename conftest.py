"""Repository-wide pytest rules.

Every test says how much it touches with exactly one marker (unit,
integration, e2e, cluster), so a run can be chosen by cost and nothing
slips through unclassified.
"""

from __future__ import annotations

import pytest

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
