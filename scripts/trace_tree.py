"""Prints one trace from the local trace file as a tree of spans.

The local collector (``scripts/otlp_sink.py``) writes every exported span as
one JSON line; this reads them back and shows a trace the way a tracing UI
would, one span per line, indented under its parent, with the service, the
start offset from the beginning of the trace and the duration::

    python3 scripts/trace_tree.py --order-id 6f1c...      # the checkout of an order
    python3 scripts/trace_tree.py --last-checkout         # the latest checkout
    python3 scripts/trace_tree.py --trace-id 4bf92f35...  # any trace

Spans arrive in batches, and the fraud decision comes after the checkout
answered, so ``--wait SECONDS`` keeps reading until the trace stops growing.
Standard library only: it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

DEFAULT_PATH = Path(__file__).resolve().parents[1] / ".run" / "traces.jsonl"

#: The gateway's server span of a checkout (``METHOD /route/template``).
CHECKOUT_SPAN = "POST /api/checkout"


def previous_file(path: str | Path) -> Path:
    """Where the collector moves its span file when it reaches its size cap."""
    file = Path(path)
    return file.with_name(file.name + ".1")


def read_spans(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every span in the file and the one it was rotated from; half-written lines are skipped."""
    for file in (previous_file(path), Path(path)):
        try:
            handle = file.open(encoding="utf-8")
        except FileNotFoundError:
            continue
        with handle:
            for line in handle:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue


def spans_of_trace(path: str | Path, trace_id: str) -> list[dict[str, Any]]:
    """The spans of one trace, each once (an exporter retry may write a span twice)."""
    unique: dict[str, dict[str, Any]] = {}
    for span in read_spans(path):
        if span.get("trace_id") == trace_id:
            unique.setdefault(span["span_id"], span)
    return sorted(unique.values(), key=lambda s: s["start_ns"])


@dataclass
class Node:
    span: dict[str, Any]
    children: list[Node] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.span["end_ns"] - self.span["start_ns"]) / 1e6


def build_tree(spans: Iterable[dict[str, Any]]) -> list[Node]:
    """The roots of the trace: spans whose parent is absent (normally one)."""
    nodes = {span["span_id"]: Node(span) for span in spans}
    roots: list[Node] = []
    for node in sorted(nodes.values(), key=lambda n: n.span["start_ns"]):
        parent = nodes.get(node.span.get("parent_span_id") or "")
        (parent.children if parent else roots).append(node)
    return roots


def walk(roots: list[Node], depth: int = 0) -> Iterator[tuple[int, Node]]:
    for node in roots:
        yield depth, node
        yield from walk(node.children, depth + 1)


def format_trace(spans: list[dict[str, Any]], trace_id: str = "") -> str:
    """The tree as text: offset from the trace's start, duration, service, indented name."""
    if not spans:
        return f"trace {trace_id}: no spans found\n"
    roots = build_tree(spans)
    start = min(s["start_ns"] for s in spans)
    end = max(s["end_ns"] for s in spans)
    services = sorted({s["service"] for s in spans})
    width = max(len(s) for s in services)
    lines = [
        f"trace {spans[0]['trace_id']}: {len(spans)} spans, {len(services)} services "
        f"({', '.join(services)}), {(end - start) / 1e6:.1f} ms",
        f"{'start ms':>9} {'duration':>9}  {'service':<{width}}  span",
    ]
    for depth, node in walk(roots):
        span = node.span
        error = "  [ERROR]" if span.get("status", {}).get("code") == "ERROR" else ""
        lines.append(
            f"{(span['start_ns'] - start) / 1e6:9.1f} {node.duration_ms:9.1f}  "
            f"{span['service']:<{width}}  {'  ' * depth}{span['name']}"
            f" ({span['kind'].lower()}){error}"
        )
    if len(roots) > 1:
        lines.append(f"note: {len(roots)} roots; some parents were not exported (yet)")
    return "\n".join(lines) + "\n"


def print_trace(path: str | Path, trace_id: str, out: TextIO | None = None) -> int:
    """Prints the trace as a tree; returns its number of spans."""
    spans = spans_of_trace(path, trace_id)
    (out or sys.stdout).write(format_trace(spans, trace_id))
    return len(spans)


def find_checkout_trace(
    path: str | Path, order_id: str | None = None, since: float | None = None
) -> str | None:
    """The trace id of a checkout.

    With ``order_id``: the trace in which a span carries that order id (the
    outbox relay's and the consumers' spans have it as the message key, the
    gateway and orders spans as ``emporium.order_id``). Otherwise the latest
    checkout (the gateway's ``POST /api/checkout`` server span) that started
    at or after ``since`` (Unix seconds; any time when None).
    """
    since_ns = int(since * 1e9) if since is not None else 0
    latest: tuple[int, str] | None = None
    for span in read_spans(path):
        if order_id is not None:
            values = span.get("attributes", {}).values()
            if order_id in values:
                return str(span["trace_id"])
            continue
        if (
            span.get("name") == CHECKOUT_SPAN
            and span.get("kind") == "SERVER"
            and span["start_ns"] >= since_ns
            and (latest is None or span["start_ns"] > latest[0])
        ):
            latest = (span["start_ns"], span["trace_id"])
    return latest[1] if latest else None


def wait_for_trace(
    path: str | Path,
    trace_id: str,
    *,
    timeout: float = 10.0,
    settle: float = 1.5,
    min_services: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Reads the trace until it has ``min_services`` and stopped growing for ``settle`` s."""
    wanted = set(min_services)
    deadline = time.monotonic() + timeout
    last_count, stable_since = -1, time.monotonic()
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        spans = spans_of_trace(path, trace_id)
        if len(spans) != last_count:
            last_count, stable_since = len(spans), time.monotonic()
        complete = wanted <= {s["service"] for s in spans}
        if spans and complete and time.monotonic() - stable_since >= settle:
            break
        time.sleep(0.25)
    return spans


def print_checkout(
    path: str | Path,
    order_id: str | None = None,
    since: float | None = None,
    *,
    timeout: float = 10.0,
    services: Iterable[str] = ("gateway", "orders", "catalog", "fraud"),
    out: TextIO | None = None,
) -> int:
    """Finds a checkout's trace, waits until it is complete, prints it; returns its span count.

    What ``make demo`` calls last. Prints a line saying so (and returns 0)
    when no trace turns up within ``timeout`` seconds.
    """
    out = out or sys.stdout
    deadline = time.monotonic() + timeout
    trace_id = find_checkout_trace(path, order_id=order_id, since=since)
    while trace_id is None and time.monotonic() < deadline:
        time.sleep(0.25)
        trace_id = find_checkout_trace(path, order_id=order_id, since=since)
    if trace_id is None:
        out.write(f"no checkout trace in {path} (are the services exporting to the collector?)\n")
        return 0
    left = max(0.5, deadline - time.monotonic())
    spans = wait_for_trace(path, trace_id, timeout=left, min_services=services)
    out.write(format_trace(spans, trace_id))
    return len(spans)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print one trace as a tree of spans.")
    parser.add_argument("--file", type=Path, default=DEFAULT_PATH, help="the span file")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--trace-id")
    which.add_argument("--order-id", help="the checkout trace of this order")
    which.add_argument("--last-checkout", action="store_true", help="the latest checkout")
    parser.add_argument(
        "--wait", type=float, default=0.0, help="seconds to wait for the trace to complete"
    )
    args = parser.parse_args(argv)

    deadline = time.monotonic() + args.wait
    trace_id = args.trace_id
    while trace_id is None:
        trace_id = find_checkout_trace(args.file, order_id=args.order_id)
        if trace_id is None and time.monotonic() >= deadline:
            print(f"no checkout trace found in {args.file}", file=sys.stderr)
            return 1
        if trace_id is None:
            time.sleep(0.25)
    if args.wait:
        wait_for_trace(args.file, trace_id, timeout=max(0.5, deadline - time.monotonic()))
    return 0 if print_trace(args.file, trace_id) else 1


if __name__ == "__main__":
    sys.exit(main())
