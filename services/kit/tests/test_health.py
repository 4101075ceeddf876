import asyncio

import pytest

from emporium.kit.health import HealthRegistry

pytestmark = pytest.mark.unit


class Switch:
    """A dependency whose state the test flips."""

    def __init__(self) -> None:
        self.up = True
        self.calls = 0

    async def check(self) -> str:
        self.calls += 1
        if not self.up:
            raise ConnectionError("connection refused")
        return "ok"


async def test_not_ready_until_first_round_then_ready() -> None:
    registry = HealthRegistry()
    registry.add_check("db", Switch().check, critical=True)
    assert not registry.ready
    await registry.run_once()
    assert registry.ready


async def test_readiness_hysteresis() -> None:
    db = Switch()
    registry = HealthRegistry(fail_threshold=2, pass_threshold=2)
    registry.add_check("db", db.check, critical=True)
    await registry.run_once()
    db.up = False
    await registry.run_once()
    assert registry.ready, "one failed round must not flip readiness"
    await registry.run_once()
    assert not registry.ready
    db.up = True
    await registry.run_once()
    assert not registry.ready, "one good round must not flip it back"
    await registry.run_once()
    assert registry.ready


async def test_non_critical_failure_keeps_ready_and_is_reported() -> None:
    registry = HealthRegistry()
    broker = Switch()
    broker.up = False
    registry.add_check("db", Switch().check, critical=True)
    registry.add_check("kafka", broker.check, critical=False)
    registry.add_info("breakers", lambda: {"catalog": "closed"})
    for _ in range(3):
        await registry.run_once()
    healthy, body = registry.report()
    assert registry.ready
    assert healthy
    assert body["dependencies"]["kafka"]["status"] == "down"
    assert "connection refused" in body["dependencies"]["kafka"]["detail"]
    assert body["dependencies"]["db"]["latency_ms"] is not None
    assert body["breakers"] == {"catalog": "closed"}


async def test_hung_check_times_out_instead_of_hanging() -> None:
    async def hang() -> str:
        await asyncio.sleep(30)
        return "never"

    registry = HealthRegistry(check_timeout_seconds=0.05)
    registry.add_check("slow", hang, critical=True)
    await asyncio.wait_for(registry.run_once(), 1)
    healthy, body = registry.report()
    assert not healthy
    assert body["dependencies"]["slow"]["detail"].startswith("TimeoutError")


async def test_draining_turns_unready_at_once() -> None:
    registry = HealthRegistry()
    seen: list[bool] = []
    registry.on_readiness_change(seen.append)
    registry.add_check("db", Switch().check, critical=True)
    await registry.run_once()
    registry.start_draining()
    assert not registry.ready
    assert seen[-1] is False
    assert registry.report()[1]["status"] == "draining"
