"""A real Prometheus server for the local system: generated config, private port.

It scrapes every service's admin port (docs/configuration.md, local ports)
once a second, labels the targets the way the chart's ServiceMonitors do in a
cluster (``namespace``, ``service`` = the Kubernetes Service name, ``job``),
and evaluates the SLO rules of charts/emporium/rules/. The tests use its HTTP
API; a person can run it beside ``make up`` to explore the metrics::

    uv run python tests/observability/prometheus.py --port 9091

The binary is Debian's (installed by `make setup`). Its data lives under
the given directory and is thrown away on start.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from emporium.contracts import manifest
from emporium.testing.pytest_plugin import free_port

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "charts" / "emporium" / "rules"

#: Admin ports of the local runner, from the system manifest (docs/manifest.md).
ADMIN_PORTS = {s.name: s.ports.admin for s in manifest.system().services.values()}
#: The namespace label the local targets get (``emporium-<environment>``).
LOCAL_NAMESPACE = "emporium-local"


def config(rule_files: list[Path]) -> dict[str, Any]:
    """The generated prometheus.yml (JSON is valid YAML)."""
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": service,
                "metrics_path": "/metrics",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{port}"],
                        "labels": {"namespace": LOCAL_NAMESPACE, "service": f"emporium-{service}"},
                    }
                ],
            }
            for service, port in ADMIN_PORTS.items()
        ],
    }


class PrometheusServer:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed: run make setup")
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        config_file = self.workdir / "prometheus.yml"
        config_file.write_text(json.dumps(config(sorted(RULES_DIR.glob("*.yaml"))), indent=2))
        log = (self.workdir / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                "--storage.tsdb.retention.time=2h",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {self._process.returncode}: "
                    + (self.workdir / "prometheus.log").read_text()[-2000:]
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prometheus not ready on {self.url} within {timeout}s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    # -- HTTP API ------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns ``data`` or raises with Prometheus' error."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; each result has ``metric`` (labels) and ``value``."""
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for(self, expr: str, timeout: float = 20.0, interval: float = 0.5) -> list[Any]:
        """Polls an instant query until it returns something."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(interval)

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.api("targets")["activeTargets"]
        return active

    def metric_names(self) -> set[str]:
        names: list[str] = self.api("label/__name__/values")
        return set(names)


def main() -> int:
    parser = argparse.ArgumentParser(description="Prometheus scraping the local system.")
    parser.add_argument("--port", type=int, default=9091)
    parser.add_argument("--dir", type=Path, default=ROOT / ".run" / "prometheus")
    args = parser.parse_args()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    server = PrometheusServer(args.dir, args.port)
    server.start()
    print(f"Prometheus on {server.url}, scraping {', '.join(ADMIN_PORTS)}; Ctrl-C stops it")
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
