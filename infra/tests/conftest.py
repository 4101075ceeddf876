from __future__ import annotations

import os
from collections.abc import Callable
from typing import NoReturn

import pytest

from emporium.infra.contract import ENVIRONMENTS
from emporium.infra.settings import INFRA_DIR

from . import harness


@pytest.fixture(scope="session")
def stack_runs() -> dict[str, harness.Run]:
    """Each stack's program run once under the mocks, shared by the tests."""
    return {stack: harness.run_stack(stack) for stack in ENVIRONMENTS}


@pytest.fixture(scope="session")
def pins() -> dict[str, str]:
    """The tool versions pinned in scripts/versions.env."""
    found = {}
    for line in (INFRA_DIR.parent / "scripts" / "versions.env").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            found[name.strip()] = value.strip()
    return found


@pytest.fixture(scope="session")
def unavailable() -> Callable[[str], NoReturn]:
    """An engine the tests need is missing: skip, or fail under
    EMPORIUM_REQUIRE_PLATFORM=1 (as `make test` sets it)."""

    def missing(reason: str) -> NoReturn:
        if os.environ.get("EMPORIUM_REQUIRE_PLATFORM") == "1":
            pytest.fail(f"{reason} (EMPORIUM_REQUIRE_PLATFORM=1)", pytrace=False)
        pytest.skip(reason)

    return missing
