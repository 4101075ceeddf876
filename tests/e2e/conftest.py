"""The whole system, started once per session by the local runner.

Tests here talk to it the way users and operators do: HTTP to the gateway,
the admin endpoints of each service, the runner's commands to stop and start
real processes and servers, and SQL on the services' own databases to check
that nothing was half-written.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from emporium.contracts import manifest

ROOT = Path(__file__).resolve().parents[2]
# The local runner's ports come from the system manifest (docs/manifest.md).
SYSTEM = manifest.system()
ADMIN_PORTS = {s.name: s.ports.admin for s in SYSTEM.services.values()}
GATEWAY_URL = f"http://127.0.0.1:{SYSTEM.service('gateway').ports.http}"


def platform(*args: str, timeout: float = 180) -> str:
    """Runs a command of the local runner and returns its standard output."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "platformctl.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"platform {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return result.stdout


def wait_until(
    condition: Callable[[], bool], timeout: float, interval: float = 0.1, what: str = ""
) -> float:
    """Polls ``condition`` until it holds; returns the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - started
        except (httpx.HTTPError, OSError):
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


@dataclass
class System:
    http: httpx.Client
    _database_urls: dict[str, str] = field(default_factory=dict)

    def admin(self, service: str, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{ADMIN_PORTS[service]}{path}", timeout=2)

    def ready(self, service: str) -> bool:
        return self.admin(service, "/readyz").status_code == 200

    def healthz(self, service: str) -> dict[str, Any]:
        body: dict[str, Any] = self.admin(service, "/healthz").json()
        return body

    def wait_all_ready(self, timeout: float = 60) -> None:
        for service in ADMIN_PORTS:
            wait_until(lambda s=service: self.ready(s), timeout, what=f"{service} ready")

    def database_url(self, service: str) -> str:
        if service not in self._database_urls:
            env = json.loads(platform("env", service, "--format", "json"))
            self._database_urls[service] = env["DATABASE_URL"]
        return self._database_urls[service]

    def sql(self, service: str, query: str, *args: Any) -> list[dict[str, Any]]:
        """Rows of ``query`` (``$1`` placeholders) on a service's database, as dicts."""
        with (
            psycopg.connect(
                self.database_url(service), connect_timeout=5, autocommit=True
            ) as connection,
            psycopg.RawCursor(connection, row_factory=dict_row) as cursor,
        ):
            cursor.execute(query, args or None)
            return cursor.fetchall()

    def products(self) -> list[dict[str, Any]]:
        response = self.http.get("/api/products", params={"page_size": 50})
        response.raise_for_status()
        products: list[dict[str, Any]] = response.json()["products"]
        return [p for p in products if p["stock_available"] > 0]

    def checkout(
        self, customer_id: str, items: list[dict[str, Any]], key: str | None = None
    ) -> httpx.Response:
        return self.http.post(
            "/api/checkout",
            json={"customer_id": customer_id, "items": items},
            headers={"Idempotency-Key": key or f"test-{uuid.uuid4()}"},
        )

    def order_status(self, order_id: str) -> str:
        response = self.http.get(f"/api/orders/{order_id}")
        response.raise_for_status()
        status: str = response.json()["order"]["status"]
        return status

    def wait_decided(self, order_ids: list[str], timeout: float = 60) -> dict[str, str]:
        statuses: dict[str, str] = {}

        def decided() -> bool:
            for order_id in order_ids:
                statuses[order_id] = self.order_status(order_id)
            return all(s != "pending" for s in statuses.values())

        wait_until(decided, timeout, interval=0.25, what="fraud decisions")
        return statuses


@pytest.fixture(scope="session")
def system() -> Iterator[System]:
    platform("up", timeout=600)
    with httpx.Client(base_url=GATEWAY_URL, timeout=10) as client:
        running = System(client)
        running.wait_all_ready()
        yield running
