"""Every log line written inside a traced request or message carries its trace id.

Reads the JSON lines the local runner collects from each service
(``.run/logs/<service>.log``) after one checkout with a known trace id.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import journey
import observability_tools as tools
import pytest

from emporium.contracts import manifest

pytestmark = pytest.mark.e2e

SERVICES = manifest.system().names
HEX = {"trace_id": re.compile(r"[0-9a-f]{32}"), "span_id": re.compile(r"[0-9a-f]{16}")}


def read_lines(since: float) -> list[dict[str, Any]]:
    """JSON log lines of every service written at or after ``since`` (Unix seconds)."""
    cutoff = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since - 1))
    lines = []
    for service in SERVICES:
        path = tools.state_dir() / "logs" / f"{service}.log"
        if not path.exists():
            continue
        for raw in path.read_text(errors="replace").splitlines():
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                continue  # not ours (a crash trace, a tool's output)
            if isinstance(line, dict) and line.get("ts", "") >= cutoff:
                lines.append(line)
    return lines


def wait_for_lines(
    since: float, condition: Callable[[list[dict[str, Any]]], bool], timeout: float = 10
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        lines = read_lines(since)
        if condition(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.25)


def test_every_line_of_a_traced_checkout_carries_its_trace_id(system: Any) -> None:
    placed = journey.checkout(system, customer="logs")

    def in_trace(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [line for line in lines if line.get("trace_id") == placed.trace_id]

    def complete(lines: list[dict[str, Any]]) -> bool:
        return any(line.get("message") == "order status changed" for line in in_trace(lines))

    lines = wait_for_lines(placed.started, complete)
    traced = in_trace(lines)
    shown = "\n".join(json.dumps(line)[:300] for line in traced)

    def found(what: str, **fields: Any) -> None:
        assert any(all(line.get(k) == v for k, v in fields.items()) for line in traced), (
            f"no {what} line with the checkout's trace id; its lines:\n{shown}"
        )

    # The request, the RPCs it made, and the work of the messages it caused.
    found("gateway access", service="gateway", http_route="/api/checkout", http_method="POST")
    found("orders RPC", service="orders", rpc_method="PlaceOrder", code="OK")
    found("catalog RPC", service="catalog", logger="emporium.kit.grpc.access")
    found("order placed", service="orders", message="order placed", order_id=placed.order_id)
    found("fraud decision", service="fraud", order_id=placed.order_id)
    found("status change", service="orders", message="order status changed")
    assert {line["service"] for line in traced} >= {"gateway", "orders", "catalog", "fraud"}
    for line in traced:
        assert HEX["span_id"].fullmatch(line.get("span_id", "")), line

    # Every line about this order was written inside a trace: the checkout's, or
    # the trace of a later status request (the test polls GET /api/orders/{id}).
    about_order = [line for line in lines if placed.order_id in json.dumps(line)]
    assert about_order
    for line in about_order:
        assert HEX["trace_id"].fullmatch(line.get("trace_id", "")), line
        assert HEX["span_id"].fullmatch(line.get("span_id", "")), line
        if line.get("http_route") != "/api/orders/{order_id}":
            assert line["trace_id"] == placed.trace_id, line


def test_log_files_are_json_lines_with_the_contract_fields(system: Any) -> None:
    """The JSON lines of every service carry the service, a level and a UTC time."""
    for service in SERVICES:
        path: Path = tools.state_dir() / "logs" / f"{service}.log"
        assert path.exists(), path
        tail = path.read_text(errors="replace").splitlines()[-500:]
        parsed = [json.loads(raw) for raw in tail if raw.startswith("{")]
        assert parsed, f"{service}: no JSON lines"
        for line in parsed:
            assert line["service"] == service
            assert line["level"] in {"debug", "info", "warning", "error", "critical"}
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"]), line
