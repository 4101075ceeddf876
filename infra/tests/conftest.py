from __future__ import annotations

import pytest

from emporium.infra import testing
from emporium.infra.contract import ENVIRONMENTS


@pytest.fixture(scope="session")
def stack_runs() -> dict[str, testing.Run]:
    """Each stack's program run once under the mocks, shared by the tests."""
    return {stack: testing.run_stack(stack) for stack in ENVIRONMENTS}
