"""The local collector (scripts/otlp_sink.py) and the trace printer (scripts/trace_tree.py).

The sink runs as its own process, as the runner starts it; spans reach it
through the SDK's real OTLP/gRPC exporter.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import otlp_sink
import pytest
import trace_tree
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from emporium.testing.pytest_plugin import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    out = tmp_path / "traces.jsonl"
    command = [sys.executable, str(ROOT / "scripts" / "otlp_sink.py")]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the sink did not listen"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", out
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert process.returncode == 0, output
    assert "stopped after" in output


def provider(endpoint: str, service: str) -> TracerProvider:
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": service}))
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), schedule_delay_millis=50)
    )
    return tracer_provider


@pytest.mark.unit
def test_spans_exported_over_otlp_are_written_as_json_lines(sink: tuple[str, Path]) -> None:
    endpoint, out = sink
    gateway, orders = provider(endpoint, "gateway"), provider(endpoint, "orders")
    with gateway.get_tracer("t").start_as_current_span(
        "POST /api/checkout", kind=SpanKind.SERVER, attributes={"http.route": "/api/checkout"}
    ) as root:
        context = root.get_span_context()
        with orders.get_tracer("t").start_as_current_span(
            "emporium.orders.v1.OrderService/PlaceOrder",
            context=trace.set_span_in_context(root),
            kind=SpanKind.SERVER,
            attributes={"count": 3, "ratio": 0.5, "ok": True, "items": ["a", "b"]},
        ) as child:
            child.set_status(Status(StatusCode.ERROR, "boom"))
    gateway.shutdown()
    orders.shutdown()

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by_name = {line["name"]: line for line in lines}
    assert set(by_name) == {"POST /api/checkout", "emporium.orders.v1.OrderService/PlaceOrder"}
    server = by_name["POST /api/checkout"]
    place = by_name["emporium.orders.v1.OrderService/PlaceOrder"]
    assert server["trace_id"] == format(context.trace_id, "032x")
    assert server["span_id"] == format(context.span_id, "016x")
    assert server["parent_span_id"] is None
    assert server["kind"] == "SERVER"
    assert server["service"] == "gateway"
    assert server["attributes"] == {"http.route": "/api/checkout"}
    assert place["parent_span_id"] == server["span_id"]
    assert place["trace_id"] == server["trace_id"]
    assert place["service"] == "orders"
    assert place["attributes"] == {"count": 3, "ratio": 0.5, "ok": True, "items": ["a", "b"]}
    assert place["status"] == {"code": "ERROR", "message": "boom"}
    assert server["start_ns"] <= place["start_ns"] <= place["end_ns"] <= server["end_ns"]

    printed = io.StringIO()
    assert trace_tree.print_trace(out, server["trace_id"], printed) == 2
    text = printed.getvalue()
    assert "2 spans, 2 services (gateway, orders)" in text
    rows = text.splitlines()[2:]
    assert rows[0].split()[2:] == ["gateway", "POST", "/api/checkout", "(server)"]
    # The child is indented under its parent and marked as failed.
    assert rows[1].split()[2:] == [
        "orders",
        "emporium.orders.v1.OrderService/PlaceOrder",
        "(server)",
        "[ERROR]",
    ]
    assert rows[1].index("emporium.orders") == rows[0].index("POST") + 2
    assert trace_tree.find_checkout_trace(out) == server["trace_id"]
    assert trace_tree.find_checkout_trace(out, since=time.time() + 60) is None


@pytest.mark.unit
def test_a_second_sink_on_a_taken_port_fails_at_start(
    sink: tuple[str, Path], tmp_path: Path
) -> None:
    endpoint, _ = sink
    port = endpoint.rsplit(":", 1)[1]
    second = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "otlp_sink.py"),
            "--port",
            port,
            "--out",
            str(tmp_path / "second.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in second.stderr


@pytest.mark.unit
def test_trace_tree_finds_a_checkout_by_order_id_and_orders_children(tmp_path: Path) -> None:
    spans = [
        {"trace_id": "t1", "span_id": "a", "parent_span_id": None, "name": "POST /api/checkout",
         "kind": "SERVER", "service": "gateway", "start_ns": 1_000_000, "end_ns": 9_000_000,
         "attributes": {}, "status": {"code": "UNSET", "message": ""}},
        {"trace_id": "t1", "span_id": "c", "parent_span_id": "a", "name": "second",
         "kind": "CLIENT", "service": "gateway", "start_ns": 5_000_000, "end_ns": 6_000_000,
         "attributes": {}, "status": {"code": "UNSET", "message": ""}},
        {"trace_id": "t1", "span_id": "b", "parent_span_id": "a", "name": "first",
         "kind": "PRODUCER", "service": "orders", "start_ns": 2_000_000, "end_ns": 3_000_000,
         "attributes": {"messaging.kafka.message.key": "order-42"},
         "status": {"code": "UNSET", "message": ""}},
        {"trace_id": "t2", "span_id": "z", "parent_span_id": None, "name": "other",
         "kind": "SERVER", "service": "catalog", "start_ns": 1, "end_ns": 2,
         "attributes": {}, "status": {"code": "UNSET", "message": ""}},
    ]  # fmt: skip
    path = tmp_path / "traces.jsonl"
    # A retried export writes a span twice; a crash may leave half a line.
    path.write_text("".join(json.dumps(s) + "\n" for s in [*spans, spans[1]]) + '{"trace_id"')
    assert trace_tree.find_checkout_trace(path, order_id="order-42") == "t1"
    assert trace_tree.find_checkout_trace(path, order_id="order-43") is None
    tree = trace_tree.spans_of_trace(path, "t1")
    assert [s["span_id"] for s in tree] == ["a", "b", "c"]
    text = trace_tree.format_trace(tree)
    assert [line.split()[-2] for line in text.splitlines()[2:]] == [
        "/api/checkout",
        "first",
        "second",
    ]
    assert "3 spans, 2 services (gateway, orders), 8.0 ms" in text


@pytest.mark.unit
def test_print_checkout_waits_for_the_trace_and_says_when_there_is_none(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    span = {"trace_id": "t9", "span_id": "a", "parent_span_id": None,
            "name": "POST /api/checkout", "kind": "SERVER", "service": "gateway",
            "start_ns": 1_000_000, "end_ns": 2_000_000, "attributes": {},
            "status": {"code": "UNSET", "message": ""}}  # fmt: skip
    out = io.StringIO()
    assert trace_tree.print_checkout(path, timeout=0.3, out=out) == 0
    assert "no checkout trace" in out.getvalue()
    path.write_text(json.dumps(span) + "\n")
    out = io.StringIO()
    assert trace_tree.print_checkout(path, timeout=0.5, services=["gateway"], out=out) == 1
    assert out.getvalue().startswith("trace t9: 1 spans, 1 services (gateway)")


def _span(number: int) -> dict[str, object]:
    return {"trace_id": f"t{number}", "span_id": f"s{number:03d}", "parent_span_id": None,
            "name": "work", "kind": "INTERNAL", "service": "orders", "start_ns": number,
            "end_ns": number + 1, "attributes": {},
            "status": {"code": "UNSET", "message": ""}}  # fmt: skip


@pytest.mark.unit
def test_the_span_file_is_rotated_at_its_cap_and_read_back_with_the_one_before(
    tmp_path: Path,
) -> None:
    path = tmp_path / "traces.jsonl"
    # A file left by an earlier run, already past the cap, moves aside on the first write.
    path.write_text("".join(json.dumps(_span(n)) + "\n" for n in range(20)))
    sink = otlp_sink.SpanFile(path, max_bytes=3_000)
    for number in range(20, 60):
        sink.write([_span(number)])
    sink.close()

    assert path.stat().st_size <= 3_000
    assert trace_tree.previous_file(path).stat().st_size <= 3_000
    kept = [span["span_id"] for span in trace_tree.read_spans(path)]
    # The newest spans, oldest first, none missing where the two files meet.
    assert kept == [f"s{n:03d}" for n in range(60 - len(kept), 60)]
    assert 15 < len(kept) < 40
