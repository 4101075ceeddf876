"""A started service keeps what start-up built out of the garbage collector's full passes."""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable

import pytest

from emporium.kit.config import ServiceSettings, parse_settings
from emporium.kit.service import Service
from emporium.testing.pytest_plugin import RunningService, service_env

pytestmark = pytest.mark.unit


async def test_start_up_objects_are_frozen_once_the_service_runs(
    run_service: Callable[..., Awaitable[RunningService]],
) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    service = Service("example", parse_settings(ServiceSettings, service_env("example")))
    built = ["made at start-up"]  # a container, so the collector tracks it
    assert any(tracked is built for tracked in gc.get_objects())
    await run_service(service)
    assert gc.get_freeze_count() > 0
    # Frozen objects are in no generation: full collections no longer walk them.
    assert not any(tracked is built for tracked in gc.get_objects())
