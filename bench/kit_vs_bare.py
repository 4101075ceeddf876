"""Cost of the kit per call: a bare grpc.aio server against a kit server, same message.

    uv run python bench/kit_vs_bare.py --rounds 6 --seconds 3 --concurrency 50

Starts two server processes on loopback ports, each answering
``CatalogService/GetProduct`` with the same pre-built response:

- ``bare``: ``grpc.aio.server()`` and the servicer, nothing else;
- ``kit``: the kit's ``build_server`` (tracing, access log, metrics, error
  mapping, deadlines, health, reflection) in a process set up like a service
  (JSON logging at INFO to a file, a tracer provider with a batch processor
  exporting nowhere by default, or over OTLP with ``--otlp``).

Both freeze what start-up built out of the garbage collector's reach once
started, as the kit's ``Service.run`` does.

The kit server records every trace, as the local platform does. A second
kit server, ``kit-sampled``, runs with the sampling the docs give for a
deployment that does not need every trace (``OTEL_TRACES_SAMPLER=
parentbased_traceidratio``, ``OTEL_TRACES_SAMPLER_ARG`` = ``--sampled``,
0.1 by default; ``--sampled 0`` leaves it out), so one run shows both.
With ``--baseline-kit DIR`` (the kit's ``src`` directory of another commit,
e.g. from ``git worktree add``), a ``kit-baseline`` server runs that kit,
always-on, in the same turns: a before/after in one run.

A load process (grpc.aio, ``--concurrency`` calls in flight, each with a 1 s
deadline, as a service calls another) drives them in turns, bare then kit
(then kit-sampled), ``--rounds`` times, so all see the same machine load.
For each turn it records the calls completed and the server process's CPU
time (user + system, from /proc); it prints throughput, CPU per call and the
kit/bare ratios. Figures only: nothing passes or fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from emporium.catalog.v1 import catalog_pb2, catalog_pb2_grpc

CATALOG = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cached_response() -> catalog_pb2.GetProductResponse:
    product = catalog_pb2.Product(
        product_id="bench-product",
        name="A benchmark product",
        description="The same message every time, built once.",
        stock_available=100,
    )
    return catalog_pb2.GetProductResponse(product=product)


class CachedCatalog(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self) -> None:
        self.response = cached_response()

    async def GetProduct(
        self, request: catalog_pb2.GetProductRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.GetProductResponse:
        return self.response


async def serve(kind: str, port: int, otlp: str | None, log_all: bool) -> None:
    if kind == "bare":
        server = grpc.aio.server()
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server(CachedCatalog(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
    else:
        from emporium.kit.config import ServiceSettings
        from emporium.kit.grpc import build_server, set_serving
        from emporium.kit.logging import AccessLogSampler, configure_logging
        from emporium.kit.telemetry import configure_tracing

        # A service's defaults (ACCESS_LOG_*, GRPC_MAX_CONCURRENT_RPCS), as Service sets up.
        settings = ServiceSettings()
        configure_logging("bench-kit", "INFO", "local")
        sampler = (
            AccessLogSampler(rate=1.0) if log_all else AccessLogSampler.from_settings(settings)
        )
        provider = configure_tracing(
            "bench-kit", "local", exporter="otlp" if otlp else "none", endpoint=otlp
        )
        if not otlp:
            # What a service with an exporter pays per span, minus the network.
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
            from opentelemetry.sdk.trace.export import SpanExportResult as Result

            class Discard(SpanExporter):
                def export(self, spans: object) -> Result:
                    return Result.SUCCESS

            provider.add_span_processor(BatchSpanProcessor(Discard()))
        built = build_server(
            host="127.0.0.1",
            port=port,
            servicers=[(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, CachedCatalog())],
            service_names=[CATALOG],
            tracer_provider=provider,
            access_log=sampler,
            max_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
        )
        server = built.server
        set_serving(built.health, [CATALOG], True)
    await server.start()
    # As Service.run does once a service has started (both servers alike): what
    # start-up built goes to the permanent generation, full collections skip it.
    gc.collect()
    gc.freeze()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)


async def load(port: int, concurrency: int, seconds: float) -> None:
    """Closed-loop load for ``seconds``; prints JSON {calls, errors} on stdout."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        request = catalog_pb2.GetProductRequest(product_id="bench-product")
        await stub.GetProduct(request, timeout=5)
        calls = errors = 0
        end = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal calls, errors
            while time.monotonic() < end:
                try:
                    await stub.GetProduct(request, timeout=1)
                    calls += 1
                except grpc.aio.AioRpcError:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    print(json.dumps({"calls": calls, "errors": errors}), flush=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0, help="per turn")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--otlp", help="export the kit server's spans to this OTLP endpoint")
    parser.add_argument(
        "--sampled",
        type=float,
        default=0.1,
        help="root sampling ratio of the kit-sampled server (0: no such server)",
    )
    parser.add_argument(
        "--log-all", action="store_true", help="the kit server logs every success (rate 1)"
    )
    parser.add_argument(
        "--baseline-kit",
        type=Path,
        metavar="DIR",
        help="also run a kit server with the kit package found in DIR (services/kit/src)",
    )
    parser.add_argument("--serve", choices=["bare", "kit"], help=argparse.SUPPRESS)
    parser.add_argument("--load", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.port, args.otlp, args.log_all))
        return 0
    if args.load:
        asyncio.run(load(args.load, args.concurrency, args.seconds))
        return 0

    if not 0 <= args.sampled <= 1:
        parser.error("--sampled is a ratio between 0 and 1")
    # name -> (server kind, environment of the server process)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_TRACES_SAMPLER")}
    kinds: dict[str, tuple[str, dict[str, str]]] = {
        "bare": ("bare", environment),
        "kit": ("kit", environment),
    }
    if args.baseline_kit:
        if not (args.baseline_kit / "emporium" / "kit" / "__init__.py").is_file():
            parser.error(f"--baseline-kit: no emporium/kit package in {args.baseline_kit}")
        path = [str(args.baseline_kit.resolve()), environment.get("PYTHONPATH", "")]
        kinds["kit-baseline"] = (
            "kit",
            environment | {"PYTHONPATH": os.pathsep.join(filter(None, path))},
        )
    if args.sampled:
        kinds["kit-sampled"] = (
            "kit",
            environment
            | {
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": f"{args.sampled:g}",
            },
        )
    workdir = Path(tempfile.mkdtemp(prefix="bench-kit-vs-bare-"))
    servers: dict[str, tuple[subprocess.Popen[str], int]] = {}
    drains: list[subprocess.Popen[bytes]] = []
    try:
        for name, (kind, env) in kinds.items():
            port = free_port()
            command = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
            if args.otlp:
                command += ["--otlp", args.otlp]
            if args.log_all:
                command.append("--log-all")
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=(workdir / f"{name}.err").open("w"),
                text=True,
                start_new_session=True,
                env=env,
            )
            servers[name] = (process, port)
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{name} server did not start; see {workdir}")
            # Everything else it writes (the kit's JSON log) goes to a file.
            if kind == "kit":
                log_file = (workdir / f"{name}.log").open("w")
                drains.append(subprocess.Popen(["cat"], stdin=process.stdout, stdout=log_file))
        results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in servers}
        sampled = (
            f"; kit-sampled: 1 trace in {1 / args.sampled:g} at the root" if args.sampled else ""
        )
        print(
            f"kit vs bare grpc.aio, GetProduct with a cached answer, "
            f"{args.concurrency} in flight, {args.rounds} rounds of {args.seconds:g} s each, "
            f"interleaved; kit: every trace recorded{sampled}; load average {loadavg()}"
        )
        for round_ in range(args.rounds + 1):  # round 0 warms all up, not counted
            for kind in servers:
                process, port = servers[kind]
                cpu_before = cpu_seconds(process.pid)
                started = time.monotonic()
                output = subprocess.run(
                    [sys.executable, __file__, "--load", str(port),
                     "--concurrency", str(args.concurrency), "--seconds", str(args.seconds)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                elapsed = time.monotonic() - started
                cpu = cpu_seconds(process.pid) - cpu_before
                counts = json.loads(output.stdout.strip().splitlines()[-1])
                if round_ == 0:
                    continue
                rate = counts["calls"] / args.seconds
                results[kind].append((rate, cpu / max(counts["calls"], 1), counts["errors"]))
                print(
                    f"  round {round_} {kind:<11} {rate:8.0f} calls/s  "
                    f"{cpu / max(counts['calls'], 1) * 1e6:6.0f} us CPU/call  "
                    f"server CPU {cpu / elapsed * 100:4.0f}%  errors {counts['errors']}"
                )
        print(f"{'server':<11}{'calls/s (median)':>18}{'us CPU/call (median)':>22}{'errors':>8}")
        medians = {}
        for kind, rows in results.items():
            rate = statistics.median(row[0] for row in rows)
            per_call = statistics.median(row[1] for row in rows)
            medians[kind] = (rate, per_call)
            print(f"{kind:<11}{rate:>18.0f}{per_call * 1e6:>22.0f}{sum(r[2] for r in rows):>8}")
        for name in servers:
            if name == "bare":
                continue
            pairs = list(zip(results[name], results["bare"], strict=True))
            ratios = [k[0] / b[0] for k, b in pairs]
            cpu_ratios = [k[1] / b[1] for k, b in pairs]
            print(
                f"{name}/bare throughput {medians[name][0] / medians['bare'][0]:.2f}x "
                f"(median of the rounds' ratios {statistics.median(ratios):.2f}x, "
                f"per round {min(ratios):.2f}-{max(ratios):.2f}x), "
                f"CPU per call {medians[name][1] / medians['bare'][1]:.2f}x "
                f"(median of the rounds' {statistics.median(cpu_ratios):.2f}x)"
            )
        print(f"load average {loadavg()}; kit server logs in {workdir}")
    finally:
        for drain in drains:
            drain.terminate()
        for process, _ in servers.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process, _ in servers.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
