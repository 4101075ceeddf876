"""The local trace collector: an OTLP/gRPC receiver that writes spans as JSON lines.

The services export their spans with the standard OTLP exporter
(``OTEL_TRACES_EXPORTER=otlp``, ``OTEL_EXPORTER_OTLP_ENDPOINT``); this server
implements the collector side of that protocol (``TraceService/Export``) and
appends every span it receives to a file, one JSON object per line::

    uv run python scripts/otlp_sink.py --port 4317 --out .run/traces.jsonl

Each line holds ``trace_id``, ``span_id``, ``parent_span_id`` (hex; null for
a root span), ``name``, ``kind`` (SERVER, CLIENT, PRODUCER, CONSUMER,
INTERNAL), ``service`` (the resource's ``service.name``), ``start_ns``,
``end_ns``, ``attributes``, ``status`` (``{"code": "OK|ERROR|UNSET",
"message": ...}``), ``scope`` (the instrumentation's name), ``links`` and
``resource`` (the resource attributes). ``scripts/trace_tree.py`` reads the
file back as trees of spans; tests assert on it.

The file is capped (``--max-mb``, 100 by default): when a write would take it
past the cap it becomes ``<out>.1`` (replacing the one before) and a new file
starts, so the local trace store keeps the last 100-200 MB of spans instead
of growing with every run. ``trace_tree.read_spans`` reads both.

In a cluster the OpenTelemetry Collector plays this part and sends the spans
to Tempo; locally this file is the trace store.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any, TextIO

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from trace_tree import previous_file

log = logging.getLogger("otlp-sink")

_KINDS = {
    trace_pb2.Span.SPAN_KIND_UNSPECIFIED: "UNSPECIFIED",
    trace_pb2.Span.SPAN_KIND_INTERNAL: "INTERNAL",
    trace_pb2.Span.SPAN_KIND_SERVER: "SERVER",
    trace_pb2.Span.SPAN_KIND_CLIENT: "CLIENT",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "PRODUCER",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "CONSUMER",
}
_STATUS = {
    trace_pb2.Status.STATUS_CODE_UNSET: "UNSET",
    trace_pb2.Status.STATUS_CODE_OK: "OK",
    trace_pb2.Status.STATUS_CODE_ERROR: "ERROR",
}


def any_value(value: common_pb2.AnyValue) -> Any:
    """An OTLP AnyValue as plain JSON."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: any_value(pair.value) for pair in pairs}


def span_record(span: trace_pb2.Span, resource: dict[str, Any], scope: str) -> dict[str, Any]:
    """One exported span as the JSON object written to the file."""
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex() or None,
        "name": span.name,
        "kind": _KINDS.get(span.kind, str(span.kind)),
        "service": resource.get("service.name", "unknown"),
        "start_ns": span.start_time_unix_nano,
        "end_ns": span.end_time_unix_nano,
        "attributes": attributes(span.attributes),
        "status": {"code": _STATUS.get(span.status.code, "UNSET"), "message": span.status.message},
        "events": [{"name": event.name, "time_ns": event.time_unix_nano} for event in span.events],
        "links": [
            {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex()} for link in span.links
        ],
        "scope": scope,
        "resource": resource,
    }


def records(request: trace_service_pb2.ExportTraceServiceRequest) -> list[dict[str, Any]]:
    out = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.append(span_record(span, resource, scope_spans.scope.name))
    return out


#: The span file's size cap (``--max-mb``), past which it is rotated.
DEFAULT_MAX_MB = 100


class SpanFile:
    """Appends JSON lines; one lock so concurrent exports never interleave a line.

    A write that would take the file past ``max_bytes`` first moves it to
    :func:`trace_tree.previous_file` (replacing the one there) and starts a new one.
    """

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_MB * 1024 * 1024) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self._file: TextIO = path.open("a", encoding="utf-8")
        self._size = path.stat().st_size
        self._lock = threading.Lock()
        self.spans = 0

    def write(self, lines: list[dict[str, Any]]) -> None:
        if not lines:
            return
        # ASCII only (json.dumps escapes the rest): characters are bytes.
        text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        with self._lock:
            if self._size and self._size + len(text) > self.max_bytes:
                self._rotate()
            self._file.write(text)
            # Readers (tests, trace_tree.py) look at the file right after a
            # request: every export is visible as soon as it is acknowledged.
            self._file.flush()
            self._size += len(text)
            self.spans += len(lines)

    def _rotate(self) -> None:
        self._file.close()
        os.replace(self.path, previous_file(self.path))
        self._file = self.path.open("a", encoding="utf-8")
        self._size = 0

    def close(self) -> None:
        with self._lock:
            self._file.close()


class TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: SpanFile) -> None:
        self._sink = sink

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._sink.write(records(request))
        return trace_service_pb2.ExportTraceServiceResponse()


def serve(
    host: str, port: int, out: Path, max_bytes: int = DEFAULT_MAX_MB * 1024 * 1024
) -> tuple[grpc.Server, SpanFile, int]:
    """Starts the receiver; returns the server, the file and the bound port (0 picks one)."""
    sink = SpanFile(out, max_bytes)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-export"),
        options=[
            # The exporter's batches stay well under this; larger ones are refused by gRPC.
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            # gRPC sets SO_REUSEPORT by default: a second collector on the same
            # port would start "fine" and the kernel would split the services'
            # exports between the two files. Without it the second one fails.
            ("grpc.so_reuseport", 0),
        ],
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceReceiver(sink), server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:  # grpcio raises this when the address cannot be bound
        bound = 0
    if bound == 0:
        sink.close()
        raise OSError(
            f"cannot listen on {host}:{port}: the port is in use"
            " (another trace collector?); stop it or choose another --port"
        )
    server.start()
    return server, sink, bound


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4317)
    parser.add_argument("--out", type=Path, default=Path(".run/traces.jsonl"))
    parser.add_argument(
        "--max-mb", type=float, default=DEFAULT_MAX_MB, help="size at which the file is rotated"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format='{"ts":"%(asctime)s","level":"%(levelname)s","service":"otlp-sink",'
        '"message":"%(message)s"}',
    )
    try:
        server, sink, port = serve(args.host, args.port, args.out, int(args.max_mb * 1024 * 1024))
    except OSError as error:
        print(f"otlp-sink: {error}", file=sys.stderr)
        return 1
    log.info("receiving OTLP/gRPC traces on %s:%d, writing %s", args.host, port, args.out)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    # Exports in progress finish (the services flush on their own shutdown).
    server.stop(grace=2).wait()
    sink.close()
    log.info("stopped after %d spans", sink.spans)
    return 0


if __name__ == "__main__":
    sys.exit(main())
