"""Telemetry overhead on the product page: tracing off (none) against on (otlp), same run.

Starts two private copies of the product page's path (gateway, catalog,
recommendations) beside the running system, on their own ports, against the
same databases: one with ``OTEL_TRACES_EXPORTER=none``, one exporting every
span over OTLP to a collector of its own (scripts/otlp_sink.py). Requests
alternate between the two in small rounds, so both see the same machine
load, and the figures are printed; nothing here passes or fails on time.

    python3 scripts/platformctl.py up          # PostgreSQL, Kafka, seeded databases
    uv run python bench/product_page.py --requests 400

The copies do not join Kafka (they point at a closed port): their consumers
only retry in the background, so the running system's consumer groups and
data are left alone. The gateway's read cache is effectively off
(``CACHE_TTL_SECONDS=0.001``) so every page really calls the catalog and
recommendations, the path with the most spans. Metrics are on in both copies
(they always are); the difference measured is tracing and its export.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PATH_SERVICES = ("catalog", "recommendations", "gateway")
CLOSED_KAFKA = "127.0.0.1:9"  # discard port: nothing listens, the copies never consume


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def runner_env(service: str) -> dict[str, str]:
    command = [sys.executable, str(ROOT / "scripts" / "platformctl.py"), "env", service]
    output = subprocess.run(
        [*command, "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=ROOT,
    ).stdout
    env: dict[str, str] = json.loads(output)
    return env


@dataclass
class Stack:
    """gateway, catalog and recommendations on private ports, one exporter setting."""

    name: str
    exporter: str
    workdir: Path
    otlp_endpoint: str = ""
    ports: dict[str, dict[str, int]] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']['HTTP_PORT']}"

    def start(self) -> None:
        for service in PATH_SERVICES:
            self.ports[service] = {"GRPC_PORT": free_port(), "ADMIN_PORT": free_port()}
        self.ports["gateway"]["HTTP_PORT"] = free_port()
        for service in PATH_SERVICES:
            env = {
                key: value
                for key, value in os.environ.items()
                if not key.startswith(("OTEL_", "KAFKA_", "DATABASE_"))
            }
            env.update(runner_env(service))
            env.update({key: str(port) for key, port in self.ports[service].items()})
            env.update(
                OTEL_SERVICE_NAME=service,
                OTEL_TRACES_EXPORTER=self.exporter,
                LOG_LEVEL="WARNING",
                DATABASE_MIGRATE_ON_START="false",
            )
            if self.exporter == "otlp":
                env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.otlp_endpoint
            if "KAFKA_BOOTSTRAP_SERVERS" in env:
                env["KAFKA_BOOTSTRAP_SERVERS"] = CLOSED_KAFKA
            if service == "gateway":
                env["CATALOG_ADDR"] = f"127.0.0.1:{self.ports['catalog']['GRPC_PORT']}"
                env["RECOMMENDATIONS_ADDR"] = (
                    f"127.0.0.1:{self.ports['recommendations']['GRPC_PORT']}"
                )
                env["CACHE_TTL_SECONDS"] = "0.001"
            log = (self.workdir / f"{self.name}-{service}.log").open("wb")
            self.processes.append(
                subprocess.Popen(
                    [str(BIN / f"emporium-{service}")],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def wait_serving(self, client: httpx.Client, product_id: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{self.name}: a service exited; see {self.workdir}")
            try:
                page = client.get(f"{self.url}/api/products/{product_id}")
                if page.status_code == 200 and page.json().get("recommendations_available"):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name}: the product page did not serve within {timeout}s")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def measure(client: httpx.Client, stack: Stack, product_ids: list[str], count: int) -> list[float]:
    timings = []
    for i in range(count):
        product_id = product_ids[i % len(product_ids)]
        started = time.perf_counter()
        response = client.get(f"{stack.url}/api/products/{product_id}")
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        timings.append(elapsed * 1000)
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="per setting")
    parser.add_argument("--round", type=int, default=20, help="requests per turn")
    parser.add_argument("--warmup", type=int, default=50, help="per setting, not counted")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-product-page-"))
    spans_file = workdir / "traces.jsonl"
    sink_port = free_port()
    sink = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "otlp_sink.py"), "--port", str(sink_port),
         "--out", str(spans_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    stacks = [
        Stack("none", "none", workdir),
        Stack("otlp", "otlp", workdir, otlp_endpoint=f"http://127.0.0.1:{sink_port}"),
    ]
    try:
        with httpx.Client(timeout=10) as client:
            catalog = client.get("http://127.0.0.1:8080/api/products", params={"page_size": 50})
            catalog.raise_for_status()
            product_ids = [p["product_id"] for p in catalog.json()["products"]]
            for stack in stacks:
                stack.start()
            for stack in stacks:
                stack.wait_serving(client, product_ids[0])
                measure(client, stack, product_ids, args.warmup)
            timings: dict[str, list[float]] = {stack.name: [] for stack in stacks}
            while len(timings["none"]) < args.requests:
                for stack in stacks:
                    turn = min(args.round, args.requests - len(timings[stack.name]))
                    timings[stack.name] += measure(client, stack, product_ids, turn)
            time.sleep(1.0)  # the last batch of spans reaches the collector
    finally:
        for stack in stacks:
            stack.stop()
        sink.send_signal(signal.SIGTERM)
        sink.wait(10)

    spans = sum(1 for _ in spans_file.open()) if spans_file.exists() else 0
    print(f"product page, {args.requests} requests per setting, one at a time, interleaved")
    print(f"{'tracing':<16}{'median ms':>11}{'p90 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    rows = {}
    for name, values in timings.items():
        rows[name] = (statistics.median(values), percentile(values, 99))
        label = "none" if name == "none" else "otlp (exported)"
        print(
            f"{label:<16}{statistics.median(values):>11.2f}{percentile(values, 90):>10.2f}"
            f"{percentile(values, 99):>10.2f}{statistics.fmean(values):>10.2f}"
        )
    (none_median, none_p99), (otlp_median, otlp_p99) = rows["none"], rows["otlp"]
    print(
        f"overhead: median {otlp_median - none_median:+.2f} ms "
        f"({(otlp_median / none_median - 1) * 100:+.1f}%), "
        f"p99 {otlp_p99 - none_p99:+.2f} ms ({(otlp_p99 / none_p99 - 1) * 100:+.1f}%)"
    )
    exported = args.requests + args.warmup
    print(f"spans exported by the traced copy: {spans} ({spans / exported:.1f} per page)")
    print(f"service logs: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
